"""SQL the store's verbs share: the due-time rule, the status move, and the PL/pgSQL that
claims and completes a worker's batch inside PostgreSQL.

`warren_work` claims, marks started and completes a worker's batch in one call: one
set-based UPDATE for the completions, one for the start marks, one for the claims, and their
count deltas netted per type (three rows at most), in one statement whose plan PL/pgSQL
keeps. Measured against the earlier shapes at 8 claims a transaction (`bench.claimcost`):
one primary-key UPDATE per job in a PL/pgSQL loop cost 0.20-0.21 ms of PostgreSQL a job,
this 0.12-0.15; the deltas through `warren_count_moves`, a SQL function planned again at
every call, cost as much as the two updates.

Each UPDATE finds its rows by `jobs.id = ANY(ids)` as well as by the join with the batch: an
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

from service.models import Job, JobStatus

#: When a job may start next: its retry time, its schedule, or its creation.
DUE_AT = "coalesce(next_attempt_at, scheduled_at, created_at)"

PENDING = f"'{JobStatus.PENDING}'"
PROCESSING = f"'{JobStatus.PROCESSING}'"
COMPLETED = f"'{JobStatus.COMPLETED}'"


def status_in(*statuses: JobStatus) -> str:
    """The row's status is one of `statuses`: the guard of a statement that finds its row by
    key (a job's id, an attempt's id).

    Written as `(status IN (...)) IS TRUE` so that PostgreSQL applies it as a filter after the
    key's lookup and never as an index condition. As a plain comparison the planner took the
    status index whenever its statistics saw no row in that status (a drain's `processing`,
    just after a backlog was queued) and walked, per row, every entry the status ever had, dead
    ones included: 0.33 against 0.085 ms of PostgreSQL per job, claimed and completed."""
    listed = ", ".join(f"'{status}'" for status in statuses)
    return f"(status IN ({listed})) IS TRUE"


IS_PENDING = status_in(JobStatus.PENDING)
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
LANGUAGE plpgsql SET enable_seqscan = off AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH finished AS (
        UPDATE jobs SET status = {COMPLETED}, error = NULL, completed_at = now(),
               updated_at = now(), lease_until = NULL,
               started_at = coalesce(started_at, now()),
               result = nullif(results -> (w.n::integer - 1), 'null')
          FROM unnest(done_ids, done_attempts) WITH ORDINALITY AS w(id, attempt, n)
         WHERE jobs.id = ANY(done_ids) AND jobs.id = w.id AND {IS_PROCESSING}
           AND jobs.current_attempt_id = w.attempt
        RETURNING w.attempt, jobs.id, jobs.type
    ), marked AS (
        UPDATE jobs SET started_at = now()
          FROM unnest(start_ids, start_attempts) AS w(id, attempt)
         WHERE jobs.id = ANY(start_ids) AND jobs.id = w.id AND {IS_PROCESSING}
           AND jobs.current_attempt_id = w.attempt
        RETURNING w.attempt, jobs.id, jobs.type
    ), claimed AS (
        UPDATE jobs SET status = {PROCESSING}, attempts = attempts + 1,
               started_at = CASE WHEN w.start THEN now() END,
               updated_at = now(), worker = claimer, next_attempt_at = NULL,
               lease_until = now() + make_interval(secs => lease),
               current_attempt_id = nextval(pg_get_serial_sequence('job_attempts', 'id'))
          FROM unnest(claim_ids, claim_lives, claim_starts) AS w(id, life, start)
         WHERE jobs.id = ANY(claim_ids) AND jobs.id = w.id AND jobs.life = w.life
           AND {IS_PENDING}
           AND {DUE_AT} <= now() + interval '1 second'
        RETURNING jobs.id, jobs.current_attempt_id, jobs.attempts, jobs.max_attempts,
                  jobs.type, jobs.priority, jobs.timeout_seconds, jobs.retry, jobs.life,
                  jobs.unstarted_losses
    ), counted AS (
        -- The batch's moves, netted per type: claims go pending -> processing, completions
        -- processing -> completed. A start mark moves nothing.
        INSERT INTO job_count_deltas (type, status, delta)
        SELECT moved.type, moved.status, sum(moved.delta) FROM (
            SELECT f.type, {PROCESSING}, -1 FROM finished AS f
            UNION ALL SELECT f.type, {COMPLETED}, 1 FROM finished AS f
            UNION ALL SELECT c.type, {PENDING}, -1 FROM claimed AS c
            UNION ALL SELECT c.type, {PROCESSING}, 1 FROM claimed AS c
        ) AS moved(type, status, delta)
        GROUP BY moved.type, moved.status HAVING sum(moved.delta) <> 0
    )
    SELECT f.attempt, NULL::bigint, f.id, NULL::bigint, NULL::integer, NULL::integer, f.type,
           NULL::integer, NULL::integer, NULL::jsonb, NULL::integer, NULL::integer
      FROM finished AS f
    UNION ALL
    SELECT NULL::bigint, m.attempt, m.id, NULL::bigint, NULL::integer, NULL::integer, m.type,
           NULL::integer, NULL::integer, NULL::jsonb, NULL::integer, NULL::integer
      FROM marked AS m
    UNION ALL
    SELECT NULL::bigint, NULL::bigint, c.id, c.current_attempt_id, c.attempts, c.max_attempts,
           c.type, c.priority, c.timeout_seconds, c.retry, c.life, c.unstarted_losses
      FROM claimed AS c;
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
