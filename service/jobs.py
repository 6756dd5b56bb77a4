"""The job store: every write to `jobs` and `job_attempts`.

Every transition is one conditional UPDATE (`WHERE id = :id AND status = :expected ...`); a write
that matches no row lost a race and changes nothing. Writes made on behalf of a running attempt
are fenced by `current_attempt_id`, so a worker that lost its job cannot overwrite the row.
Writes a message causes are fenced by the job's `life` the message was published for, so a
message of an earlier life cannot claim, fail or hide a life started since (README: "Lives,
and what fences each write").
"""

import contextlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.broker import Dispatch
from service.errors import Conflict, NotFound
from service.models import Job, JobAttempt, JobStatus

jobs = Job.__table__
attempts = JobAttempt.__table__


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
}
_JSON_COLUMNS = ("payload", "retry")

# One array parameter per column: the statement is the same text for any number of rows, so
# a batch of 1,000 costs one round trip and no per-batch statement compilation.
_INSERT = sa.text(
    f"""
    INSERT INTO jobs ({", ".join(_INSERT_COLUMNS)})
    SELECT * FROM unnest({", ".join(f"CAST(:{c} AS {t}[])" for c, t in _INSERT_COLUMNS.items())})
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
    """
)


def insert(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[tuple[uuid.UUID, bool]]:
    """Insert job rows; return `(id, created)` per row, in order. A row whose idempotency key
    was seen before is not inserted: it gets the first job's id and `created=False`."""
    if not rows:
        return []
    columns = {
        name: [_json_text(r[name]) if name in _JSON_COLUMNS else r[name] for r in rows]
        for name in _INSERT_COLUMNS
    }
    inserted = set(conn.scalars(_INSERT, columns))
    missing = [r["idempotency_key"] for r in rows if r["id"] not in inserted]
    existing = {}
    if missing:
        existing = dict(
            conn.execute(
                sa.select(jobs.c.idempotency_key, jobs.c.id).where(
                    jobs.c.idempotency_key.in_(missing)
                )
            ).all()
        )
    return [
        (r["id"], True) if r["id"] in inserted else (existing[r["idempotency_key"]], False)
        for r in rows
    ]


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


_MARK_PUBLISHED = """
    UPDATE jobs SET published_at = now()
     WHERE id = %(id)s AND status = 'pending' AND life = %(life)s AND attempts = %(attempts)s
"""


def mark_published(conn: Connection, published: Sequence[Dispatch]) -> None:
    """Record that RabbitMQ confirmed these jobs' messages. A mark lands only while the job
    still waits for the run it was published for (the same life, no attempt since): a mark
    that arrives late, after that run started or a person retried the job, must not hide
    the job's next run from the dispatcher."""
    params = [
        {"id": job.id, "life": job.life, "attempts": job.attempts}
        for job in sorted(published, key=lambda job: job.id)
    ]
    _pipelined(conn, _MARK_PUBLISHED, params)


@dataclass(frozen=True)
class Claim:
    """A job this worker now runs: the fence for every write about the attempt."""

    job_id: uuid.UUID
    attempt_id: int
    number: int
    max_attempts: int
    type: str
    priority: int
    payload: dict[str, Any]
    timeout_seconds: int
    retry: dict[str, Any] | None
    life: int


_CLAIM = (
    "SELECT * FROM warren_claim_jobs(%(ids)s::uuid[], %(lives)s::integer[], %(worker)s, %(lease)s)"
)
_COMPLETE = (
    "SELECT warren_complete_attempts(%(ids)s::uuid[], %(attempt_ids)s::bigint[],"
    " %(results)s::text[])"
)


#: A job a message asks to run: its id and the life the message was published for.
Wanted = tuple[uuid.UUID, int]


def claim_many(
    conn: Connection, wanted: Sequence[Wanted], worker: str, lease: float
) -> dict[uuid.UUID, Claim]:
    """Take the due pending jobs among `wanted` that are still in the life asked for: each
    becomes `processing` with one more attempt and a lease. Jobs missing from the answer were
    not claimable. (The work is done by `warren_claim_jobs`, migrations 0005 and 0006: one
    call for the batch, one statement per job.)"""
    rows = conn.exec_driver_sql(_CLAIM, _claim_params(wanted, worker, lease))
    return {row[0]: Claim(*row) for row in rows}


def _claim_params(wanted: Sequence[Wanted], worker: str, lease: float) -> dict[str, Any]:
    ordered = sorted(set(wanted))  # rows are always locked in the same order
    return {
        "ids": [job_id for job_id, _ in ordered],
        "lives": [life for _, life in ordered],
        "worker": worker,
        "lease": lease,
    }


def claim(
    conn: Connection, job_id: uuid.UUID, life: int, worker: str, lease: float
) -> Claim | None:
    """Take one due pending job in this life, as `claim_many` does. None if not claimable."""
    return claim_many(conn, [(job_id, life)], worker, lease).get(job_id)


def _pipelined(conn: Connection, statement: str, params: list[dict[str, Any]]) -> None:
    """Run `statement` once per parameter set, all in one round trip (psycopg's pipeline
    mode), inside `conn`'s transaction.

    One statement per job rather than one statement for all: a row matched by its primary
    key is the plan PostgreSQL picks whatever it knows of the table, while a set of ids is
    planned from statistics that a queue table, filled in a burst, often does not have yet
    (a walk over every pending job, milliseconds per batch)."""
    if not params:
        return
    try:
        with conn.connection.driver_connection.cursor() as cursor:
            cursor.executemany(statement, params)
    except psycopg.Error as exc:
        # Raised as SQLAlchemy would have, so callers handle one family of errors.
        raise sa.exc.DBAPIError.instance(statement, params, exc, psycopg.Error) from exc


@dataclass(frozen=True)
class State:
    """Where a job stands, as seen by a worker that could not claim it."""

    status: JobStatus
    life: int
    attempt_id: int | None
    lease_left: float | None
    due_in: float


def state(conn: Connection, job_id: uuid.UUID) -> State | None:
    row = conn.execute(
        sa.text(
            """
            SELECT status, life, current_attempt_id,
                   extract(epoch FROM lease_until - now()),
                   extract(epoch FROM coalesce(next_attempt_at, scheduled_at, created_at) - now())
              FROM jobs WHERE id = :id
            """
        ),
        {"id": job_id},
    ).first()
    if row is None:
        return None
    status, life, attempt_id, lease_left, due_in = row
    return State(
        JobStatus(status),
        life,
        attempt_id,
        float(lease_left) if lease_left is not None else None,
        float(due_in),
    )


def forget_publication(conn: Connection, job_id: uuid.UUID, life: int) -> None:
    """A pending job's message came too early: let the dispatcher publish it when due."""
    conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == job_id, jobs.c.life == life, jobs.c.status == JobStatus.PENDING)
        .values(published_at=None)
    )


def _finish_attempt(
    conn: Connection,
    attempt_id: int,
    status: str,
    error: dict[str, Any] | None = None,
    traceback: str | None = None,
) -> None:
    conn.execute(
        sa.update(attempts)
        .where(attempts.c.id == attempt_id, attempts.c.status == "running")
        .values(status=status, finished_at=sa.func.now(), error=error, traceback=traceback)
    )


def _fenced(claim: Claim) -> sa.Update:
    return sa.update(jobs).where(
        jobs.c.id == claim.job_id,
        jobs.c.status == JobStatus.PROCESSING,
        jobs.c.current_attempt_id == claim.attempt_id,
    )


def claim_and_complete(
    conn: psycopg.Connection,
    wanted: Sequence[Wanted],
    outcomes: Sequence[tuple[Claim, str | None]],
    worker: str,
    lease: float,
) -> tuple[dict[uuid.UUID, Claim], set[int]]:
    """Claim the due pending jobs among `wanted` (as `claim_many`) and record the success of
    the attempts in `outcomes`, each with its result as JSON text (None for no result), in one
    transaction and one round trip. Returns the claims made and the attempts recorded; an
    attempt missing had lost its job.

    `conn` is a psycopg connection in autocommit mode: BEGIN and COMMIT travel in the same
    pipeline as the two calls, where a transaction opened by the driver would cost a round
    trip of its own for BEGIN and another for COMMIT. On an error the transaction is rolled
    back and the error raised as SQLAlchemy's."""
    ordered = sorted(outcomes, key=lambda outcome: outcome[0].job_id)
    completions = {
        "ids": [claim.job_id for claim, _ in ordered],
        "attempt_ids": [claim.attempt_id for claim, _ in ordered],
        "results": [result for _, result in ordered],
    }
    try:
        with conn.pipeline() as pipeline:
            conn.execute("BEGIN")
            claimed = conn.execute(_CLAIM, _claim_params(wanted, worker, lease))
            completed = conn.execute(_COMPLETE, completions)
            conn.execute("COMMIT")
            pipeline.sync()
        claims = {row[0]: Claim(*row) for row in claimed.fetchall()}
        return claims, {row[0] for row in completed.fetchall()}
    except psycopg.Error as exc:
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
        statements = f"{_CLAIM}; {_COMPLETE}"
        raise sa.exc.DBAPIError.instance(statements, completions, exc, psycopg.Error) from exc


def fail(
    conn: Connection,
    claim: Claim,
    error: dict[str, Any],
    traceback: str | None,
    retry_at: datetime | None,
) -> JobStatus | None:
    """Record a failed attempt: back to `pending` until `retry_at`, or `failed` for good when
    `retry_at` is None; `cancelled` instead of a retry when a person asked the attempt to
    stop. Returns the job's new status, or None if the job was no longer this attempt's."""
    cancel_asked = jobs.c.cancel_requested_at.is_not(None)
    if retry_at is not None:
        values: dict[str, Any] = {
            "status": sa.case((cancel_asked, JobStatus.CANCELLED.value), else_="pending"),
            "next_attempt_at": sa.case(
                (cancel_asked, sa.null()), else_=sa.cast(retry_at, jobs.c.next_attempt_at.type)
            ),
            "completed_at": sa.case((cancel_asked, sa.func.now()), else_=sa.null()),
            "published_at": None,
        }
    else:
        values = {"status": JobStatus.FAILED, "completed_at": sa.func.now()}
    status = conn.scalar(
        _fenced(claim)
        .values(**values, error=error, updated_at=sa.func.now(), lease_until=None)
        .returning(jobs.c.status)
    )
    if status is None:
        return None
    _finish_attempt(conn, claim.attempt_id, "failed", error, traceback)
    return JobStatus(status)


def cancelled(conn: Connection, claim: Claim) -> bool:
    """Record that a running job honoured its cancellation."""
    error = {"type": "JobCancelled", "message": "cancelled while running", "retryable": False}
    done = conn.execute(
        _fenced(claim).values(
            status=JobStatus.CANCELLED,
            completed_at=sa.func.now(),
            updated_at=sa.func.now(),
            lease_until=None,
        )
    ).rowcount
    if done:
        _finish_attempt(conn, claim.attempt_id, "cancelled", error)
    return bool(done)


WORKER_LOST = {
    "type": "WorkerLost",
    "message": "worker lost: its lease expired while the job was processing",
    "retryable": True,
}


def release_expired(conn: Connection, job_id: uuid.UUID, attempt_id: int) -> JobStatus | None:
    """Take back a `processing` job whose worker stopped renewing the lease of this attempt:
    the attempt is recorded `lost`, and the job is `pending` again, `failed` if no attempts
    remain, or `cancelled` if a person had asked it to stop. Returns the new status, or None
    if the lease had not expired or the job had moved on from this attempt."""
    status = conn.scalar(
        sa.text(
            """
            UPDATE jobs SET
                   status = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled'
                                 WHEN attempts >= max_attempts THEN 'failed'
                                 ELSE 'pending' END,
                   completed_at = CASE WHEN cancel_requested_at IS NOT NULL
                                         OR attempts >= max_attempts THEN now() END,
                   error = CAST(:error AS jsonb), published_at = NULL, lease_until = NULL,
                   updated_at = now()
             WHERE id = :id AND status = 'processing' AND current_attempt_id = :attempt
               AND lease_until < now()
            RETURNING status
            """
        ),
        {"id": job_id, "attempt": attempt_id, "error": json.dumps(WORKER_LOST)},
    )
    if status is None:
        return None
    _finish_attempt(conn, attempt_id, "lost", WORKER_LOST)
    return JobStatus(status)


def expired_leases(conn: Connection, grace: float, limit: int = 100) -> list[tuple[uuid.UUID, int]]:
    """Processing jobs whose lease ran out more than `grace` seconds ago, locked for release:
    `(job id, attempt id)` pairs."""
    rows = conn.execute(
        sa.text(
            """
            SELECT id, current_attempt_id FROM jobs
             WHERE status = 'processing' AND lease_until < now() - make_interval(secs => :g)
             ORDER BY lease_until LIMIT :limit FOR UPDATE SKIP LOCKED
            """
        ),
        {"g": grace, "limit": limit},
    )
    return [(job_id, attempt_id) for job_id, attempt_id in rows]


def renew_leases(conn: Connection, attempt_ids: Sequence[int], lease: float) -> dict[int, bool]:
    """Extend the leases of running attempts. Returns, for each attempt still holding its job,
    whether the job was asked to cancel; an attempt missing from the answer lost its job."""
    if not attempt_ids:
        return {}
    rows = conn.execute(
        sa.text(
            """
            UPDATE jobs SET lease_until = now() + make_interval(secs => :lease)
             WHERE current_attempt_id = ANY(:ids) AND status = 'processing'
            RETURNING current_attempt_id, cancel_requested_at IS NOT NULL
            """
        ),
        {"ids": list(attempt_ids), "lease": lease},
    )
    return dict(rows.all())


def cancel(conn: Connection, job_id: uuid.UUID) -> JobStatus:
    """Cancel a job: a pending one becomes `cancelled` and never starts; a processing one is
    asked to stop. Returns the status it had. Raises `NotFound` or `Conflict` (already final)."""
    row = conn.execute(
        sa.text(
            """
            WITH old AS (
                SELECT id, status FROM jobs
                 WHERE id = :id AND status IN ('pending', 'processing') FOR UPDATE
            )
            UPDATE jobs SET
                   status = CASE old.status WHEN 'pending' THEN 'cancelled' ELSE 'processing' END,
                   completed_at = CASE old.status WHEN 'pending' THEN now() END,
                   next_attempt_at = NULL,
                   cancel_requested_at = CASE old.status WHEN 'processing' THEN now() END,
                   updated_at = now()
              FROM old WHERE jobs.id = old.id
            RETURNING old.status
            """
        ),
        {"id": job_id},
    ).first()
    if row is not None:
        return JobStatus(row[0])
    current = conn.scalar(sa.select(jobs.c.status).where(jobs.c.id == job_id))
    if current is None:
        raise NotFound(f"job {job_id} not found")
    raise Conflict(f"job {job_id} is already {current}")


# A new life: fresh attempts, due now; messages of the old life no longer match it.
_NEW_LIFE = {
    "status": JobStatus.PENDING,
    "life": jobs.c.life + 1,
    "attempts": 0,
    "scheduled_at": None,
    "next_attempt_at": None,
    "published_at": None,
    "completed_at": None,
    "cancel_requested_at": None,
    "current_attempt_id": None,
    "result": None,
    "updated_at": sa.func.now(),
}


def retry(conn: Connection, job_id: uuid.UUID) -> Job:
    """Start a new life of a failed or cancelled job: fresh attempts, `pending`, due now, to
    be published. Returns the job. Raises `NotFound`, or `Conflict` for any other status."""
    row = conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status.in_([JobStatus.FAILED, JobStatus.CANCELLED]))
        .values(**_NEW_LIFE)
        .returning(*jobs.c)
    ).first()
    if row is not None:
        return Job.model_validate(row._mapping)
    current = conn.scalar(sa.select(jobs.c.status).where(jobs.c.id == job_id))
    if current is None:
        raise NotFound(f"job {job_id} not found")
    raise Conflict(f"job {job_id} is {current}; only failed or cancelled jobs can be retried")


def revive(conn: Connection, job_ids: Sequence[uuid.UUID]) -> list[Job]:
    """Start a new life of each of these jobs that is still `failed`. Returns those revived."""
    if not job_ids:
        return []
    rows = conn.execute(
        sa.update(jobs)
        .where(jobs.c.id.in_(job_ids), jobs.c.status == JobStatus.FAILED)
        .values(**_NEW_LIFE)
        .returning(*jobs.c)
    )
    return [Job.model_validate(row._mapping) for row in rows]


def fail_undeliverable(
    conn: Connection, job_id: uuid.UUID, life: int, error: dict[str, Any]
) -> bool:
    """Fail a pending job whose message, published for this life, no worker could process (it
    reached the dead-letter queue). False, and nothing changed, when the job has moved on:
    a newer life, or a run in progress whose own outcome will be recorded."""
    return bool(
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == job_id, jobs.c.life == life, jobs.c.status == JobStatus.PENDING)
            .values(
                status=JobStatus.FAILED,
                error=error,
                completed_at=sa.func.now(),
                updated_at=sa.func.now(),
            )
        ).rowcount
    )


def due_unpublished(
    conn: Connection, horizon: float, stranded_after: float, limit: int = 500
) -> list[Job]:
    """Pending jobs with no message in RabbitMQ that are due within `horizon` seconds, locked
    for publishing. Fresh rows (younger than `stranded_after`) are left to their enqueuer."""
    statement = (
        sa.select(jobs)
        .where(
            jobs.c.status == JobStatus.PENDING,
            jobs.c.published_at.is_(None),
            sa.func.coalesce(jobs.c.next_attempt_at, jobs.c.scheduled_at, jobs.c.created_at)
            <= sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, horizon),
            jobs.c.updated_at
            < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, stranded_after),
        )
        .order_by(sa.func.coalesce(jobs.c.next_attempt_at, jobs.c.scheduled_at, jobs.c.created_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [Job.model_validate(row._mapping) for row in conn.execute(statement)]


def lost_messages(
    conn: Connection, priorities: Sequence[tuple[int, int]], older_than: float, limit: int = 500
) -> list[Job]:
    """Pending jobs in these priority ranges, published and due at least `older_than` seconds
    ago, locked for publishing again. Asked only of tiers whose queues hold no message: such a
    job should have run long ago, so its message was lost."""
    long_ago = sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, older_than)
    statement = (
        sa.select(jobs)
        .where(
            jobs.c.status == JobStatus.PENDING,
            jobs.c.published_at < long_ago,
            sa.func.coalesce(jobs.c.next_attempt_at, jobs.c.scheduled_at, jobs.c.created_at)
            < long_ago,
            sa.or_(*(jobs.c.priority.between(low, high) for low, high in priorities)),
        )
        .order_by(jobs.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [Job.model_validate(row._mapping) for row in conn.execute(statement)]
