"""The job store's verbs for `jobs`: enqueue, a person's verbs (cancel, retry, reschedule,
replay, park), and retention. What needs publishing and the marks of what was published are in
`store.publishing`; a worker's verbs are in `store.attempts`.

Every transition is one conditional UPDATE (`sql.move`) that names the status it expects; a
write that matches no row lost a race and changes nothing. Writes a message causes are fenced
by the job's `life` the message was published for, so a message of an earlier life cannot
claim, fail or hide a life started since (docs/architecture.md: "Lives, and what fences each
write").
"""

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.broker import Dispatch
from service.errors import Conflict, NotFound
from service.models import Job, JobStatus
from service.store.sql import (
    CANCELLED,
    DISPATCH,
    FAILED,
    IS_PENDING,
    PENDING,
    PROCESSING,
    driven,
    job_of,
    json_text,
    move,
    status_in,
)

_INSERT_COLUMNS = {
    "id": "uuid",
    "type": "text",
    "status": "text",
    "priority": "int",
    "payload": "jsonb",
    "attempts": "int",
    "max_attempts": "int",
    "timeout_seconds": "int",
    "retry": "jsonb",
    "idempotency_key": "text",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
    "scheduled_at": "timestamptz",
    "schedule_name": "text",
    "scheduled_for": "timestamptz",
    "for_relay": "boolean",
}
_JSON_COLUMNS = ("payload", "retry")

_ON_CONFLICT = """
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
"""


# One array parameter per column: the statement is the same text for any number of rows, so
# a batch of 1,000 costs one round trip and no per-batch statement compilation.
_INSERT_ROWS = f"""
    INSERT INTO jobs ({", ".join(_INSERT_COLUMNS)})
    SELECT * FROM unnest({", ".join(f"%({c})s::{t}[]" for c, t in _INSERT_COLUMNS.items())})
"""
_INSERT = _INSERT_ROWS + _ON_CONFLICT
# One job (every `POST /jobs`): plain parameters, about 0.1 ms less than arrays of one.
_INSERT_ONE = f"""
    INSERT INTO jobs ({", ".join(_INSERT_COLUMNS)})
    VALUES ({", ".join(f"%({c})s::{t}" for c, t in _INSERT_COLUMNS.items())})
    {_ON_CONFLICT}
"""
# A schedule's slots: one job each, whoever fires it and however often.
_INSERT_SLOTS = (
    _INSERT_ROWS
    + """
    ON CONFLICT (schedule_name, scheduled_for) WHERE schedule_name IS NOT NULL DO NOTHING
    RETURNING id
"""
)
_FIRST_WITH_KEY = sa.text(
    "SELECT idempotency_key, id FROM jobs WHERE idempotency_key = ANY(CAST(:keys AS text[]))"
)


def insert(
    conn: Connection, rows: Sequence[dict[str, Any]], *, for_relay: bool = False
) -> list[tuple[uuid.UUID, bool]]:
    """Insert job rows; return `(id, created)` per row, in order. A row whose idempotency key
    was seen before is not inserted: it gets the first job's id and `created=False`. With
    `for_relay`, the rows wait for the scheduler's relay to publish them (`relaying`).

    Every enqueue waits for this statement, so it goes to the driver directly, as a prepared
    statement (see `sql.driven`)."""
    if not rows:
        return []
    columns = _columns(rows, for_relay)
    if len(rows) == 1:
        statement, params = _INSERT_ONE, {name: values[0] for name, values in columns.items()}
    else:
        statement, params = _INSERT, columns
    inserted = {job_id for (job_id,) in driven(conn, statement, params)}
    missing = [r["idempotency_key"] for r in rows if r["id"] not in inserted]
    existing = dict(conn.execute(_FIRST_WITH_KEY, {"keys": missing}).all()) if missing else {}
    return [
        (r["id"], True) if r["id"] in inserted else (existing[r["idempotency_key"]], False)
        for r in rows
    ]


def insert_slots(conn: Connection, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Insert the jobs of schedules' slots; return the ids inserted. A slot that has its job
    already is skipped: a schedule moved back onto a slot it fired (enabled again, re-timed,
    or deleted and created again, all within the lead it fires ahead) fires it once."""
    if not rows:
        return set()
    return {job_id for (job_id,) in driven(conn, _INSERT_SLOTS, _columns(rows, False))}


def _columns(rows: Sequence[dict[str, Any]], for_relay: bool) -> dict[str, list[Any]]:
    """The rows as one list of values per column, JSON columns as text."""
    columns = {
        name: [json_text(r[name]) if name in _JSON_COLUMNS else r[name] for r in rows]
        for name in _INSERT_COLUMNS
        if name != "for_relay"
    }
    columns["for_relay"] = [for_relay] * len(rows)
    return columns


_LOCKED = sa.text("SELECT * FROM jobs WHERE id = :id FOR UPDATE")


def locked(conn: Connection, job_id: uuid.UUID) -> Job | None:
    """The job, locked until the end of `conn`'s transaction; None if there is none."""
    row = conn.execute(_LOCKED, {"id": job_id}).first()
    return job_of(row) if row is not None else None


# -- a person's verbs -----------------------------------------------------------------------------

# A pending job ends `cancelled`; a processing one is asked to stop.
_CANCEL_SET = f"""
    status = CASE status WHEN {PENDING} THEN {CANCELLED} ELSE status END,
    completed_at = CASE status WHEN {PENDING} THEN now() END,
    next_attempt_at = NULL,
    cancel_requested_at = CASE status WHEN {PROCESSING} THEN now() END
"""
_CANCEL = sa.text(
    move(
        f"id = :id AND {status_in(JobStatus.PENDING, JobStatus.PROCESSING)}",
        _CANCEL_SET,
        returning="jobs.type, jobs.status",
    )
)
_STATUS = sa.text("SELECT status FROM jobs WHERE id = :id")


class Cancelled(NamedTuple):
    """A job a cancel changed: its type and the status it had (`pending`: it is `cancelled`
    now; `processing`: it is asked to stop)."""

    type: str
    was: JobStatus


def cancel(conn: Connection, job_id: uuid.UUID) -> Cancelled:
    """Cancel a job: a pending one becomes `cancelled` and never starts; a processing one is
    asked to stop. Raises `NotFound` or `Conflict` (already final)."""
    row = conn.execute(_CANCEL, {"id": job_id}).first()
    if row is not None:
        return Cancelled(row.type, JobStatus(row.was))
    raise Conflict(f"job {job_id} is already {_current_status(conn, job_id)}")


def _current_status(conn: Connection, job_id: uuid.UUID) -> str:
    """The status of a job a verb could not change, to say why; `NotFound` if none."""
    status = conn.scalar(_STATUS, {"id": job_id})
    if status is None:
        raise NotFound(f"job {job_id} not found")
    return status


# A new life: fresh attempts, due now; messages of the old life no longer match it. What the
# old life ended with (its error, its worker, when it started) stays in its attempts' rows.
_NEW_LIFE = f"""
    status = {PENDING}, life = life + 1, attempts = 0, scheduled_at = NULL,
    next_attempt_at = NULL, published_at = NULL, completed_at = NULL, started_at = NULL,
    cancel_requested_at = NULL, current_attempt_id = NULL, result = NULL, progress = NULL,
    error = NULL, worker = NULL
"""
_RETRY = sa.text(
    move(f"id = :id AND {status_in(JobStatus.FAILED, JobStatus.CANCELLED)}", _NEW_LIFE)
)


def retry(conn: Connection, job_id: uuid.UUID) -> Job:
    """Start a new life of a failed or cancelled job: fresh attempts, `pending`, due now, to
    be published. Returns the job. Raises `NotFound`, or `Conflict` for any other status."""
    row = conn.execute(_RETRY, {"id": job_id}).first()
    if row is not None:
        return job_of(row)
    status = _current_status(conn, job_id)
    raise Conflict(f"job {job_id} is {status}; only failed or cancelled jobs can be retried")


_RESCHEDULE = sa.text(
    move(
        f"id = :id AND {IS_PENDING}",
        """
        life = life + 1, published_at = NULL,
        scheduled_at = CASE WHEN :move_time THEN CAST(:at AS timestamptz) ELSE scheduled_at END,
        next_attempt_at = CASE WHEN :move_time THEN NULL ELSE next_attempt_at END,
        priority = coalesce(CAST(:priority AS integer), priority)
        """,
    )
)


def reschedule(
    conn: Connection, job_id: uuid.UUID, run_at: datetime | None, priority: int | None
) -> Job:
    """Move a pending job to `run_at` (None: keep its time) and/or `priority` (None: keep it),
    in a new life that keeps its attempts, so messages published before cannot run it.
    Returns the job, to be published. Raises `NotFound`, or `Conflict` for any other status."""
    params = {"id": job_id, "move_time": run_at is not None, "at": run_at, "priority": priority}
    row = conn.execute(_RESCHEDULE, params).first()
    if row is not None:
        return job_of(row)
    status = _current_status(conn, job_id)
    raise Conflict(f"job {job_id} is {status}; only pending jobs can be rescheduled")


# -- a person's verbs on many jobs at once (service.controls) -------------------------------------

#: The jobs a bulk cancel changes: pending ones, and processing ones not yet asked to stop
#: (asking again would change nothing). SQL on `jobs`, for the caller's selection too.
CANCELLABLE = f"(status = {PENDING} OR (status = {PROCESSING} AND cancel_requested_at IS NULL))"
#: The jobs a retry changes.
RETRYABLE = f"status IN ({FAILED}, {CANCELLED})"

# Each job in the life it was selected in: a job retried or rescheduled since is left alone.
# The ids alone find the rows (by the primary key); the pairs then fence them.
_IN_THEIR_LIVES = """
    id = ANY(CAST(:ids AS uuid[]))
    AND (id, life) IN (SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:lives AS integer[])))
"""
# The guards are filters after the key's lookup, never index conditions (see `sql.status_in`).
_CANCEL_MANY = sa.text(
    move(
        f"{_IN_THEIR_LIVES} AND ({CANCELLABLE}) IS TRUE",
        _CANCEL_SET,
        returning="jobs.type, jobs.status",
    )
)


def _new_lives(where: str) -> dict[bool, sa.TextClause]:
    """A new life of each job `where` selects, returning what publishing it needs; for `True`,
    flagged for the scheduler's relay as well, which publishes it (`service.relay`)."""
    return {
        relay: sa.text(
            move(
                where,
                _NEW_LIFE + (", for_relay = true" if relay else ""),
                returning=f"{DISPATCH}, jobs.status",  # `move` counts the new status
            )
        )
        for relay in (False, True)
    }


_RETRY_MANY = _new_lives(f"{_IN_THEIR_LIVES} AND ({RETRYABLE}) IS TRUE")
_REVIVE = _new_lives(f"id = ANY(CAST(:ids AS uuid[])) AND {status_in(JobStatus.FAILED)}")


def cancel_many(conn: Connection, selected: Sequence[tuple[uuid.UUID, int]]) -> list[Cancelled]:
    """Cancel each `(id, life)` still in that life and `CANCELLABLE`, as `cancel` does one
    job. Returns those changed."""
    rows = conn.execute(_CANCEL_MANY, _lives(selected))
    return [Cancelled(row.type, JobStatus(row.was)) for row in rows]


def retry_many(
    conn: Connection, selected: Sequence[tuple[uuid.UUID, int]], *, for_relay: bool = False
) -> list[Dispatch]:
    """Start a new life of each `(id, life)` still in that life and `RETRYABLE`, as `retry`
    does one job. Returns the jobs changed, to be published by the caller after its commit,
    or with `for_relay` by the scheduler's relay: what a server wants when a filter selects
    thousands of jobs."""
    rows = conn.execute(_RETRY_MANY[for_relay], _lives(selected))
    return [Dispatch(*row[:8]) for row in rows]


def _lives(selected: Sequence[tuple[uuid.UUID, int]]) -> dict[str, list]:
    return {"ids": [job_id for job_id, _ in selected], "lives": [life for _, life in selected]}


_PARK = sa.text(
    f"""
    WITH held AS (
        SELECT EXISTS (
            SELECT FROM pauses WHERE (kind = 'type' AND name = :type)
                                  OR (kind = 'tier' AND name = CAST(:tier AS text))
        ) AS held
    ), parked AS (
        UPDATE jobs SET life = life + 1, published_at = NULL
         WHERE id = :id AND life = :life AND {IS_PENDING} AND (SELECT held FROM held)
        RETURNING id
    )
    SELECT held, EXISTS (SELECT FROM parked) FROM held
    """
)


class Parking(Enum):
    """What `park` did with the job of a message a worker must not start."""

    PARKED = "parked"
    #: No pause holds the job any longer (it was resumed since the worker read the pause
    #: set): nothing changed, and the message may run the job in its life.
    NOT_HELD = "not held"
    #: The job moved on from the message's life or stopped waiting: nothing changed.
    MOVED_ON = "moved on"


def park(conn: Connection, job_id: uuid.UUID, life: int, type: str, tier: str | None) -> Parking:
    """Leave a waiting job to the scheduler, which publishes it once its tier and type are no
    longer paused: a worker parks the job of a message it must not start. The pause is read
    here, in the statement that parks, so a worker's pause set a moment old never parks a job
    that was resumed since. Fenced by the life the message was published for, and only while
    the job waits (`pending`). The job starts a new life that keeps its attempts, so neither a
    late "published" mark of the old message nor a duplicate of it can hide or run the job."""
    held, parked = conn.execute(
        _PARK, {"id": job_id, "life": life, "type": type, "tier": tier}
    ).one()
    if parked:
        return Parking.PARKED
    return Parking.MOVED_ON if held else Parking.NOT_HELD


def revive(
    conn: Connection, job_ids: Sequence[uuid.UUID], *, for_relay: bool = False
) -> list[Dispatch]:
    """Start a new life of each of these jobs that is still `failed`. Returns those revived,
    to be published as `retry_many`'s are."""
    if not job_ids:
        return []
    rows = conn.execute(_REVIVE[for_relay], {"ids": list(job_ids)})
    return [Dispatch(*row[:8]) for row in rows]


_FAIL_UNDELIVERABLE = sa.text(
    move(
        f"id = :id AND life = :life AND {IS_PENDING}",
        f"status = {FAILED}, error = CAST(:error AS jsonb), completed_at = now()",
        returning="jobs.type, jobs.status",
    )
)


def fail_undeliverable(
    conn: Connection, job_id: uuid.UUID, life: int, error: dict[str, Any]
) -> bool:
    """Fail a pending job whose message, published for this life, no worker could process (it
    reached the dead-letter queue). False, and nothing changed, when the job has moved on:
    a newer life, or a run in progress whose own outcome will be recorded."""
    params = {"id": job_id, "life": life, "error": json.dumps(error)}
    return conn.execute(_FAIL_UNDELIVERABLE, params).first() is not None


# -- retention ----------------------------------------------------------------------------------

# A job finished before `cutoff` was created before it too: the range on (status, created_at)
# finds the candidates on `jobs_status_created_idx`, however large the table.
_FINISHED_BEFORE = """
    status = :status AND created_at < now() - make_interval(secs => :age)
    AND completed_at < now() - make_interval(secs => :age)
"""
_PRUNE = sa.text(
    f"""
    DELETE FROM jobs WHERE id IN (
        SELECT id FROM jobs WHERE {_FINISHED_BEFORE} LIMIT :limit FOR UPDATE SKIP LOCKED
    )
    RETURNING id
    """
)
_PRUNABLE = sa.text(f"SELECT count(*) FROM jobs WHERE {_FINISHED_BEFORE}")


def prune(conn: Connection, status: JobStatus, age: float, limit: int) -> list[uuid.UUID]:
    """Delete up to `limit` jobs in this final status that finished more than `age` seconds
    ago, with their attempts. Returns their ids. The kept counts follow (a statement trigger
    records every delete)."""
    if not status.is_final:
        raise ValueError(f"{status} jobs are never pruned")
    return list(conn.scalars(_PRUNE, {"status": status, "age": age, "limit": limit}))


def prunable(conn: Connection, status: JobStatus, age: float) -> int:
    """How many jobs `prune` would delete, in all."""
    return conn.scalar(_PRUNABLE, {"status": status, "age": age})
