"""SQL the store's verbs share: the due-time rule, the status move, and the PL/pgSQL that
claims and completes a worker's batch inside PostgreSQL.

`warren_work` is PL/pgSQL because it pays: a worker's group commit sends one call per batch,
and the function runs one primary-key UPDATE per job inside PostgreSQL. Sent as one statement
per job, each cost the client a send and a parse of its own; a set-based UPDATE over an array
of ids was planned as a walk over every pending job when the table's statistics were stale.
It also writes the batch's count deltas itself, netted per type (three rows at most), where
`warren_count_moves`, a SQL function planned again at every call, cost as much as the two
updates of a job.
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
    claim_ids uuid[], claim_lives integer[], claimer text, lease double precision,
    done_ids uuid[], done_attempts bigint[], results jsonb)
RETURNS TABLE (done bigint, id uuid, attempt_id bigint, number integer, max_attempts integer,
               type text, priority integer, timeout_seconds integer, retry jsonb, life integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    i integer;
    k integer;
    finished record;
    kinds text[] := '{{}}';
    claimed integer[] := '{{}}';
    completed integer[] := '{{}}';
BEGIN
    FOR i IN 1 .. coalesce(array_length(done_ids, 1), 0) LOOP
        UPDATE jobs SET status = {COMPLETED}, result = nullif(results -> (i - 1), 'null'),
               error = NULL, completed_at = now(), updated_at = now(), lease_until = NULL
         WHERE jobs.id = done_ids[i] AND {IS_PROCESSING}
           AND current_attempt_id = done_attempts[i]
        RETURNING jobs.type INTO finished;
        IF FOUND THEN
            k := array_position(kinds, finished.type);
            IF k IS NULL THEN
                kinds := kinds || finished.type;
                claimed := claimed || 0;
                completed := completed || 1;
            ELSE
                completed[k] := completed[k] + 1;
            END IF;
            done := done_attempts[i];
            id := done_ids[i];
            RETURN NEXT;
        END IF;
    END LOOP;
    done := NULL;
    FOR i IN 1 .. coalesce(array_length(claim_ids, 1), 0) LOOP
        UPDATE jobs SET status = {PROCESSING}, attempts = attempts + 1, started_at = now(),
               updated_at = now(), worker = claimer, next_attempt_at = NULL,
               lease_until = now() + make_interval(secs => lease),
               current_attempt_id = nextval(pg_get_serial_sequence('job_attempts', 'id'))
         WHERE jobs.id = claim_ids[i] AND jobs.life = claim_lives[i] AND {IS_PENDING}
           AND {DUE_AT} <= now() + interval '1 second'
        RETURNING jobs.id, jobs.current_attempt_id, jobs.attempts, jobs.max_attempts,
                  jobs.type, jobs.priority, jobs.timeout_seconds, jobs.retry, jobs.life
             INTO id, attempt_id, number, max_attempts, type, priority, timeout_seconds,
                  retry, life;
        IF FOUND THEN
            k := array_position(kinds, type);
            IF k IS NULL THEN
                kinds := kinds || type;
                claimed := claimed || 1;
                completed := completed || 0;
            ELSE
                claimed[k] := claimed[k] + 1;
            END IF;
            RETURN NEXT;
        END IF;
    END LOOP;
    -- The batch's moves, netted per type: claims go pending -> processing, completions
    -- processing -> completed.
    FOR k IN 1 .. coalesce(array_length(kinds, 1), 0) LOOP
        INSERT INTO job_count_deltas (type, status, delta)
        SELECT kinds[k], moved.status, moved.delta
          FROM (VALUES ({PENDING}, -claimed[k]),
                       ({PROCESSING}, claimed[k] - completed[k]),
                       ({COMPLETED}, completed[k])) AS moved(status, delta)
         WHERE moved.delta <> 0;
    END LOOP;
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


def array_text(values: Iterable[uuid.UUID | int]) -> str:
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
