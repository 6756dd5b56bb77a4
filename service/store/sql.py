"""SQL the store's verbs share: the due-time rule, the status move, and the PL/pgSQL that
claims and completes a worker's batch inside PostgreSQL.

`warren_work` claims, marks started and completes a worker's batch in one call: one
set-based UPDATE over the whole batch (completions, start marks and claims as one list in id
order, so that it locks its rows in that order, as every writer of several rows does), and
its count deltas netted per type (three rows at most), in one statement whose plan PL/pgSQL
keeps. One UPDATE per job in a PL/pgSQL loop cost PostgreSQL more a job than this set-based
shape at a worker's batch size (`bench.claimcost`); the deltas through a SQL function planned
again at every call cost as much as the updates themselves.

The UPDATE finds its rows by `jobs.id = ANY(ids)` as well as by the join with the batch: an
index condition that bounds any plan to the batch's own rows. Sequential scans being off (the
function sets it) was not enough: a writer keeps the plan it made first, and one made while
the table held a job or two joined the batch to a walk over every entry of the key index,
which for a burst queued after it read the whole index for each job of each batch.

Migrations create these functions from the text here (`FUNCTIONS`); a change to them comes
with a migration that creates them again.
"""

import json
import uuid
from collections.abc import Iterable
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from service.models import DUE_AT, Job, JobStatus

# Each status as an SQL literal (`JobStatus.sql`), for the statements that name one.
PENDING = JobStatus.PENDING.sql
PROCESSING = JobStatus.PROCESSING.sql
COMPLETED = JobStatus.COMPLETED.sql
FAILED = JobStatus.FAILED.sql
CANCELLED = JobStatus.CANCELLED.sql


def status_in(*statuses: JobStatus) -> str:
    """The row's status is one of `statuses`: the guard of a statement that finds its row by
    key (a job's id, an attempt's id).

    Written as `(status IN (...)) IS TRUE` so that PostgreSQL applies it as a filter after the
    key's lookup and never as an index condition. As a plain comparison the planner took the
    status index whenever its statistics saw no row in that status (a drain's `processing`,
    just after a backlog was queued) and walked, per row, every entry the status ever had, dead
    ones included: 0.33 against 0.085 ms of PostgreSQL per job, claimed and completed."""
    listed = ", ".join(status.sql for status in statuses)
    return f"(status IN ({listed})) IS TRUE"


IS_PENDING = status_in(JobStatus.PENDING)

#: What publishing a job needs, as a RETURNING list of `jobs`: `broker.Dispatch`'s fields in
#: its order, so `Dispatch(*row[:8])` reads a row of it.
DISPATCH = """
    jobs.id, jobs.type, jobs.payload, jobs.priority, jobs.timeout_seconds,
    coalesce(jobs.next_attempt_at, jobs.scheduled_at), jobs.life, jobs.attempts
"""
IS_PROCESSING = status_in(JobStatus.PROCESSING)


def move(where: str, assignments: str, returning: str = "jobs.*") -> str:
    """One status change as one statement: lock the rows `where` selects (in id order, so two
    moves never deadlock), apply `assignments` to them, record each change of status in the
    kept counts, and return `returning` of every row changed plus its old status as `was`.

    `where` and `assignments` name the columns of `jobs` unqualified."""
    return f"""
    WITH old AS (
        SELECT id AS job_id, status AS was FROM jobs WHERE {where} ORDER BY id FOR UPDATE
    ), moved AS (
        UPDATE jobs SET {assignments}, updated_at = now()
          FROM old WHERE jobs.id = old.job_id
        RETURNING {returning}, old.was
    ), counted AS (
        SELECT warren_count_moves(array_agg(type), array_agg(was), array_agg(status)) FROM moved
    )
    SELECT moved.* FROM moved, counted
    """


FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION warren_count_moves(types text[], froms text[], tos text[])
RETURNS void LANGUAGE sql AS $$
    INSERT INTO job_count_deltas (type, status, delta)
    SELECT type, status, sum(delta) FROM (
        SELECT t, f, -1 FROM unnest(types, froms, tos) AS m(t, f, n) WHERE f <> n
        UNION ALL
        SELECT t, n, 1 FROM unnest(types, froms, tos) AS m(t, f, n) WHERE f <> n
    ) AS d(type, status, delta)
    GROUP BY type, status HAVING sum(delta) <> 0
$$;

CREATE OR REPLACE FUNCTION warren_work(
    claim_ids uuid[], claim_lives integer[], claim_starts boolean[], claimer text,
    lease double precision, start_ids uuid[], start_attempts bigint[],
    done_ids uuid[], done_attempts bigint[], results jsonb)
RETURNS TABLE (done bigint, started bigint, id uuid, attempt_id bigint, number integer,
               max_attempts integer, type text, priority integer, timeout_seconds integer,
               retry jsonb, life integer, unstarted_losses integer)
LANGUAGE plpgsql
-- By key, and in id order: a bitmap scan or a hash join would lock rows in heap order.
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH wanted AS (
        -- The batch as one list in id order, for one UPDATE that locks its rows in that
        -- order, as every writer of several rows does. Three UPDATEs, one after another,
        -- could hold a completed row while waiting for a claimed one of lower id.
        SELECT d.id, 'done' AS kind, d.attempt, NULL::integer AS life,
               NULL::boolean AS start, d.n
          FROM unnest(done_ids, done_attempts) WITH ORDINALITY AS d(id, attempt, n)
        UNION ALL
        SELECT s.id, 'start', s.attempt, NULL, NULL, NULL
          FROM unnest(start_ids, start_attempts) AS s(id, attempt)
        UNION ALL
        SELECT c.id, 'claim', NULL, c.life, c.start, NULL
          FROM unnest(claim_ids, claim_lives, claim_starts) AS c(id, life, start)
        ORDER BY id
    ), changed AS (
        UPDATE jobs SET
               -- A success after a cancel was asked for ends cancelled, as asked.
               status = CASE w.kind WHEN 'done' THEN CASE WHEN cancel_requested_at IS NULL
                                                          THEN {COMPLETED} ELSE {CANCELLED} END
                                    WHEN 'claim' THEN {PROCESSING} ELSE status END,
               error = CASE w.kind WHEN 'done' THEN NULL ELSE error END,
               completed_at = CASE w.kind WHEN 'done' THEN now() ELSE completed_at END,
               updated_at = CASE w.kind WHEN 'start' THEN updated_at ELSE now() END,
               lease_until = CASE w.kind WHEN 'done' THEN NULL
                                         WHEN 'claim' THEN now() + make_interval(secs => lease)
                                         ELSE lease_until END,
               started_at = CASE w.kind WHEN 'done' THEN coalesce(started_at, now())
                                        WHEN 'start' THEN now()
                                        ELSE CASE WHEN w.start THEN now() END END,
               result = CASE w.kind WHEN 'done' THEN nullif(results -> (w.n::integer - 1), 'null')
                                    ELSE result END,
               attempts = CASE w.kind WHEN 'claim' THEN attempts + 1 ELSE attempts END,
               worker = CASE w.kind WHEN 'claim' THEN claimer ELSE worker END,
               next_attempt_at = CASE w.kind WHEN 'claim' THEN NULL ELSE next_attempt_at END,
               current_attempt_id = CASE w.kind
                   WHEN 'claim' THEN nextval(pg_get_serial_sequence('job_attempts', 'id'))
                   ELSE current_attempt_id END
          FROM wanted AS w
         WHERE jobs.id = ANY(done_ids || start_ids || claim_ids) AND jobs.id = w.id
           AND CASE w.kind
                   WHEN 'claim' THEN jobs.life = w.life AND {IS_PENDING}
                                     AND {DUE_AT} <= now() + interval '1 second'
                   ELSE {IS_PROCESSING} AND jobs.current_attempt_id = w.attempt END
        RETURNING w.kind, w.attempt, jobs.status, jobs.id, jobs.current_attempt_id, jobs.attempts,
                  jobs.max_attempts, jobs.type, jobs.priority, jobs.timeout_seconds,
                  jobs.retry, jobs.life, jobs.unstarted_losses
    ), counted AS (
        -- The batch's moves, netted per type: claims go pending -> processing, completions
        -- processing -> completed (or cancelled). A start mark moves nothing.
        INSERT INTO job_count_deltas (type, status, delta)
        SELECT moved.type, moved.status, sum(moved.delta) FROM (
            SELECT c.type, {PROCESSING}, -1 FROM changed AS c WHERE c.kind = 'done'
            UNION ALL SELECT c.type, c.status, 1 FROM changed AS c WHERE c.kind = 'done'
            UNION ALL SELECT c.type, {PENDING}, -1 FROM changed AS c WHERE c.kind = 'claim'
            UNION ALL SELECT c.type, {PROCESSING}, 1 FROM changed AS c WHERE c.kind = 'claim'
        ) AS moved(type, status, delta)
        GROUP BY moved.type, moved.status HAVING sum(moved.delta) <> 0
    )
    -- `done` or `started` names a completion's or a start mark's attempt; a row with neither
    -- is a claim, described by the other columns.
    SELECT CASE c.kind WHEN 'done' THEN c.attempt END,
           CASE c.kind WHEN 'start' THEN c.attempt END,
           c.id, c.current_attempt_id, c.attempts, c.max_attempts, c.type, c.priority,
           c.timeout_seconds, c.retry, c.life, c.unstarted_losses
      FROM changed AS c;
END $$;
"""


def driven(conn: Connection, statement: str, params: dict[str, Any]) -> list[tuple]:
    """Run one of the store's two hot statements (an enqueue's insert, a worker's batch) on
    `conn`'s driver connection, in its transaction, as a prepared statement: SQLAlchemy's
    execution cost about as much client time as the statement itself. Driver errors are
    raised as SQLAlchemy's, so callers handle one family of errors."""
    try:
        return conn.connection.driver_connection.execute(statement, params, prepare=True).fetchall()
    except psycopg.Error as exc:
        raise sa.exc.DBAPIError.instance(statement, params, exc, psycopg.Error) from exc


def array_text(values: Iterable[uuid.UUID | int | str]) -> str:
    """A PostgreSQL array literal of ids or numbers (`{1,2,3}`), to be cast by the statement:
    their text needs no quoting, and a literal costs the client a join where psycopg's list
    adaptation inspects every element."""
    return "{" + ",".join(map(str, values)) + "}"


def json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def job_of(row: Row) -> Job:
    """A `Job` from a row of `jobs.*` (a move's `was` column left out)."""
    mapping = dict(row._mapping)
    mapping.pop("was", None)
    return Job.model_validate(mapping)
