"""The job store's verbs for `jobs` and `job_attempts`.

Every transition is one conditional UPDATE (`sql.move`) that names the status it expects; a
write that matches no row lost a race and changes nothing. Writes made on behalf of a running
attempt are fenced by `current_attempt_id`, so a worker that lost its job cannot overwrite
the row. Writes a message causes are fenced by the job's `life` the message was published
for, so a message of an earlier life cannot claim, fail or hide a life started since (README:
"Lives, and what fences each write").

The job's row holds its current attempt (`current_attempt_id`, `attempts`, `worker`,
`started_at`); the attempt gets a row of its own when the job moves on from it: a failure, a
cancel, a lost lease. A success, the job's last attempt, writes none (`queries.attempts` reads
it from the job's row).
"""

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from service.broker import Dispatch
from service.errors import Conflict, NotFound
from service.models import AttemptStatus, Job, JobStatus
from service.store.sql import DUE_AT, move

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
}
_JSON_COLUMNS = ("payload", "retry")

# One array parameter per column: the statement is the same text for any number of rows, so
# a batch of 1,000 costs one round trip and no per-batch statement compilation.
_INSERT = f"""
    INSERT INTO jobs ({", ".join(_INSERT_COLUMNS)})
    SELECT * FROM unnest({", ".join(f"%({c})s::{t}[]" for c, t in _INSERT_COLUMNS.items())})
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
"""
_FIRST_WITH_KEY = sa.text(
    "SELECT idempotency_key, id FROM jobs WHERE idempotency_key = ANY(CAST(:keys AS text[]))"
)


def insert(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[tuple[uuid.UUID, bool]]:
    """Insert job rows; return `(id, created)` per row, in order. A row whose idempotency key
    was seen before is not inserted: it gets the first job's id and `created=False`.

    Every enqueue waits for this statement, so it goes to the driver directly, as a prepared
    statement (see `_driven`)."""
    if not rows:
        return []
    columns = {
        name: [_json_text(r[name]) if name in _JSON_COLUMNS else r[name] for r in rows]
        for name in _INSERT_COLUMNS
    }
    inserted = {job_id for (job_id,) in _driven(conn, _INSERT, columns)}
    missing = [r["idempotency_key"] for r in rows if r["id"] not in inserted]
    existing = dict(conn.execute(_FIRST_WITH_KEY, {"keys": missing}).all()) if missing else {}
    return [
        (r["id"], True) if r["id"] in inserted else (existing[r["idempotency_key"]], False)
        for r in rows
    ]


def _driven(conn: Connection, statement: str, params: dict[str, Any]) -> list[tuple]:
    """Run one of the store's two hot statements (an enqueue's insert, a worker's batch) on
    `conn`'s driver connection, in its transaction, as a prepared statement: SQLAlchemy's
    execution cost about as much client time as the statement itself. Driver errors are
    raised as SQLAlchemy's, so callers handle one family of errors."""
    try:
        return conn.connection.driver_connection.execute(statement, params, prepare=True).fetchall()
    except psycopg.Error as exc:
        raise sa.exc.DBAPIError.instance(statement, params, exc, psycopg.Error) from exc


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


_MARK_PUBLISHED = sa.text(
    """
    UPDATE jobs SET published_at = now()
     WHERE id = :id AND status = 'pending' AND life = :life AND attempts = :attempts
    """
)


def mark_published(conn: Connection, published: Sequence[Dispatch]) -> None:
    """Record that RabbitMQ confirmed these jobs' messages. A mark lands only while the job
    still waits for the run it was published for (the same life, no attempt since): a mark
    that arrives late, after that run started or a person retried the job, must not hide
    the job's next run from the scheduler.

    One statement per job, sent together (psycopg pipelines an executemany): a row matched by
    its primary key is the plan PostgreSQL picks whatever it knows of the table, while a set
    of ids is planned from statistics that a queue table, filled in a burst, often lacks."""
    if published:
        params = [
            {"id": job.id, "life": job.life, "attempts": job.attempts}
            for job in sorted(published, key=lambda job: job.id)
        ]
        conn.execute(_MARK_PUBLISHED, params)


# -- a worker's claims and completions --------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A job this worker now runs: the fence for every write about the attempt."""

    job_id: uuid.UUID
    attempt_id: int
    number: int
    max_attempts: int
    type: str
    priority: int
    timeout_seconds: int
    retry: dict[str, Any] | None
    life: int


#: A job a message asks to run: its id and the life the message was published for.
Wanted = tuple[uuid.UUID, int]

_WORK = """
    SELECT * FROM warren_work(
        %(claim_ids)s::uuid[], %(claim_lives)s::integer[], %(worker)s, %(lease)s,
        %(done_ids)s::uuid[], %(done_attempts)s::bigint[], %(results)s::text[])
"""


def work(
    conn: Connection,
    wanted: Sequence[Wanted],
    outcomes: Sequence[tuple[Claim, str | None]],
    worker: str,
    lease: float,
) -> tuple[dict[uuid.UUID, Claim], set[int]]:
    """Record the success of the attempts in `outcomes` (each with its result as JSON text,
    None for none), then claim the due pending jobs among `wanted` that are still in the life
    asked for: each becomes `processing` with one more attempt and a lease. One statement
    (`warren_work`), in `conn`'s transaction. Returns the claims made and the attempts
    recorded; a job missing from the claims was not claimable, an attempt missing from the
    recorded had lost its job.

    Ids are sent sorted, so two batches always lock rows in the same order. Sent as
    `_driven`: SQLAlchemy's execution added about 80 % to the client's time per job."""
    claims = sorted(set(wanted))
    done = sorted(outcomes, key=lambda outcome: outcome[0].job_id)
    params = {
        "claim_ids": [job_id for job_id, _ in claims],
        "claim_lives": [life for _, life in claims],
        "worker": worker,
        "lease": lease,
        "done_ids": [claim.job_id for claim, _ in done],
        "done_attempts": [claim.attempt_id for claim, _ in done],
        "results": [result for _, result in done],
    }
    rows = _driven(conn, _WORK, params)
    claimed: dict[uuid.UUID, Claim] = {}
    recorded: set[int] = set()
    for recorded_attempt, *claim in rows:
        if recorded_attempt is None:
            claimed[claim[0]] = Claim(*claim)
        else:
            recorded.add(recorded_attempt)
    return claimed, recorded


def claim(
    conn: Connection, job_id: uuid.UUID, life: int, worker: str, lease: float
) -> Claim | None:
    """Take one due pending job in this life, as `work` does. None if not claimable."""
    return work(conn, [(job_id, life)], [], worker, lease)[0].get(job_id)


@dataclass(frozen=True)
class State:
    """Where a job stands, as seen by a worker that could not claim it."""

    status: JobStatus
    life: int
    attempt_id: int | None
    lease_left: float | None
    due_in: float


_STATE = sa.text(
    f"""
    SELECT status, life, current_attempt_id, extract(epoch FROM lease_until - now()),
           extract(epoch FROM {DUE_AT} - now())
      FROM jobs WHERE id = :id
    """
)


def state(conn: Connection, job_id: uuid.UUID) -> State | None:
    row = conn.execute(_STATE, {"id": job_id}).first()
    if row is None:
        return None
    status, life, attempt_id, lease_left, due_in = row
    lease = float(lease_left) if lease_left is not None else None
    return State(JobStatus(status), life, attempt_id, lease, float(due_in))


_LOCKED = sa.text("SELECT * FROM jobs WHERE id = :id FOR UPDATE")


def locked(conn: Connection, job_id: uuid.UUID) -> Job | None:
    """The job, locked until the end of `conn`'s transaction; None if there is none."""
    row = conn.execute(_LOCKED, {"id": job_id}).first()
    return _job(row) if row is not None else None


_FORGET_PUBLICATION = sa.text(
    "UPDATE jobs SET published_at = NULL WHERE id = :id AND life = :life AND status = 'pending'"
)


def forget_publication(conn: Connection, job_id: uuid.UUID, life: int) -> None:
    """A pending job's message came too early: let the scheduler publish it when due."""
    conn.execute(_FORGET_PUBLICATION, {"id": job_id, "life": life})


# -- the end of an attempt other than success --------------------------------------------------

_OF_ATTEMPT = "id = :id AND status = 'processing' AND current_attempt_id = :attempt"

_FAIL = sa.text(
    move(
        _OF_ATTEMPT,
        """
        status = CASE WHEN :retry_at IS NULL THEN 'failed'
                      WHEN cancel_requested_at IS NOT NULL THEN 'cancelled'
                      ELSE 'pending' END,
        next_attempt_at = CASE WHEN :retry_at IS NOT NULL AND cancel_requested_at IS NULL
                               THEN CAST(:retry_at AS timestamptz) END,
        completed_at = CASE WHEN :retry_at IS NULL OR cancel_requested_at IS NOT NULL
                            THEN now() END,
        published_at = NULL, lease_until = NULL, error = CAST(:error AS jsonb)
        """,
    )
).bindparams(sa.bindparam("retry_at", type_=sa.DateTime(timezone=True)))

_FINISH_ATTEMPT = sa.text(
    """
    INSERT INTO job_attempts (id, job_id, number, life, status, worker, started_at, finished_at,
                              error, traceback)
    VALUES (:id, :job_id, :number, :life, :status, :worker, :started_at, now(),
            CAST(:error AS jsonb), :traceback)
    """
)


def _finish_attempt(
    conn: Connection,
    job: Row,
    status: AttemptStatus,
    error: dict[str, Any] | None = None,
    traceback: str | None = None,
) -> None:
    """Write the row of the attempt that `job` (as the move returned it) just ended."""
    conn.execute(
        _FINISH_ATTEMPT,
        {
            "id": job.current_attempt_id,
            "job_id": job.id,
            "number": job.attempts,
            "life": job.life,
            "status": status,
            "worker": job.worker,
            "started_at": job.started_at,
            "error": _json_text(error),
            "traceback": traceback,
        },
    )


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
    job = conn.execute(
        _FAIL,
        {
            "id": claim.job_id,
            "attempt": claim.attempt_id,
            "retry_at": retry_at,
            "error": _json_text(error),
        },
    ).first()
    if job is None:
        return None
    _finish_attempt(conn, job, AttemptStatus.FAILED, error, traceback)
    return JobStatus(job.status)


_CANCELLED = sa.text(
    move(_OF_ATTEMPT, "status = 'cancelled', completed_at = now(), lease_until = NULL")
)

_CANCELLED_ERROR = {
    "type": "JobCancelled",
    "message": "cancelled while running",
    "retryable": False,
}


def cancelled(conn: Connection, claim: Claim) -> bool:
    """Record that a running job honoured its cancellation."""
    job = conn.execute(_CANCELLED, {"id": claim.job_id, "attempt": claim.attempt_id}).first()
    if job is not None:
        _finish_attempt(conn, job, AttemptStatus.CANCELLED, _CANCELLED_ERROR)
    return job is not None


WORKER_LOST = {
    "type": "WorkerLost",
    "message": "worker lost: its lease expired while the job was processing",
    "retryable": True,
}

_RELEASE_EXPIRED = sa.text(
    move(
        _OF_ATTEMPT + " AND lease_until < now()",
        """
        status = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled'
                      WHEN attempts >= max_attempts THEN 'failed'
                      ELSE 'pending' END,
        completed_at = CASE WHEN cancel_requested_at IS NOT NULL
                              OR attempts >= max_attempts THEN now() END,
        error = CAST(:error AS jsonb), published_at = NULL, lease_until = NULL
        """,
    )
)


def release_expired(conn: Connection, job_id: uuid.UUID, attempt_id: int) -> Job | None:
    """Take back a `processing` job whose worker stopped renewing the lease of this attempt:
    the attempt is recorded `lost`, and the job is `pending` again, `failed` if no attempts
    remain, or `cancelled` if a person had asked it to stop. Returns the job as it is now, or
    None if the lease had not expired or the job had moved on from this attempt."""
    job = conn.execute(
        _RELEASE_EXPIRED,
        {"id": job_id, "attempt": attempt_id, "error": json.dumps(WORKER_LOST)},
    ).first()
    if job is None:
        return None
    _finish_attempt(conn, job, AttemptStatus.LOST, WORKER_LOST)
    return _job(job)


_EXPIRED_LEASES = sa.text(
    """
    SELECT id, current_attempt_id FROM jobs
     WHERE status = 'processing' AND lease_until < now() - make_interval(secs => :grace)
     ORDER BY lease_until LIMIT :limit FOR UPDATE SKIP LOCKED
    """
)


def expired_leases(conn: Connection, grace: float, limit: int = 100) -> list[tuple[uuid.UUID, int]]:
    """Processing jobs whose lease ran out more than `grace` seconds ago, locked for release:
    `(job id, attempt id)` pairs."""
    rows = conn.execute(_EXPIRED_LEASES, {"grace": grace, "limit": limit})
    return [(job_id, attempt_id) for job_id, attempt_id in rows]


_RENEW_LEASES = sa.text(
    """
    UPDATE jobs SET lease_until = now() + make_interval(secs => :lease)
     WHERE current_attempt_id = ANY(CAST(:ids AS bigint[])) AND status = 'processing'
    RETURNING current_attempt_id, cancel_requested_at IS NOT NULL
    """
)


def renew_leases(conn: Connection, attempt_ids: Sequence[int], lease: float) -> dict[int, bool]:
    """Extend the leases of running attempts. Returns, for each attempt still holding its job,
    whether the job was asked to cancel; an attempt missing from the answer lost its job."""
    if not attempt_ids:
        return {}
    rows = conn.execute(_RENEW_LEASES, {"ids": list(attempt_ids), "lease": lease})
    return dict(rows.all())


# -- a person's verbs -----------------------------------------------------------------------------

_CANCEL = sa.text(
    move(
        "id = :id AND status IN ('pending', 'processing')",
        """
        status = CASE status WHEN 'pending' THEN 'cancelled' ELSE status END,
        completed_at = CASE status WHEN 'pending' THEN now() END,
        next_attempt_at = NULL,
        cancel_requested_at = CASE status WHEN 'processing' THEN now() END
        """,
        returning="jobs.type, jobs.status",
    )
)
_STATUS = sa.text("SELECT status FROM jobs WHERE id = :id")


def cancel(conn: Connection, job_id: uuid.UUID) -> JobStatus:
    """Cancel a job: a pending one becomes `cancelled` and never starts; a processing one is
    asked to stop. Returns the status it had. Raises `NotFound` or `Conflict` (already final)."""
    row = conn.execute(_CANCEL, {"id": job_id}).first()
    if row is not None:
        return JobStatus(row.was)
    raise Conflict(f"job {job_id} is already {_current_status(conn, job_id)}")


def _current_status(conn: Connection, job_id: uuid.UUID) -> str:
    """The status of a job a verb could not change, to say why; `NotFound` if none."""
    status = conn.scalar(_STATUS, {"id": job_id})
    if status is None:
        raise NotFound(f"job {job_id} not found")
    return status


# A new life: fresh attempts, due now; messages of the old life no longer match it.
_NEW_LIFE = """
    status = 'pending', life = life + 1, attempts = 0, scheduled_at = NULL,
    next_attempt_at = NULL, published_at = NULL, completed_at = NULL,
    cancel_requested_at = NULL, current_attempt_id = NULL, result = NULL
"""
_RETRY = sa.text(move("id = :id AND status IN ('failed', 'cancelled')", _NEW_LIFE))
_REVIVE = sa.text(move("id = ANY(CAST(:ids AS uuid[])) AND status = 'failed'", _NEW_LIFE))


def retry(conn: Connection, job_id: uuid.UUID) -> Job:
    """Start a new life of a failed or cancelled job: fresh attempts, `pending`, due now, to
    be published. Returns the job. Raises `NotFound`, or `Conflict` for any other status."""
    row = conn.execute(_RETRY, {"id": job_id}).first()
    if row is not None:
        return _job(row)
    status = _current_status(conn, job_id)
    raise Conflict(f"job {job_id} is {status}; only failed or cancelled jobs can be retried")


_RESCHEDULE = sa.text(
    move(
        "id = :id AND status = 'pending'",
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
        return _job(row)
    status = _current_status(conn, job_id)
    raise Conflict(f"job {job_id} is {status}; only pending jobs can be rescheduled")


def revive(conn: Connection, job_ids: Sequence[uuid.UUID]) -> list[Job]:
    """Start a new life of each of these jobs that is still `failed`. Returns those revived."""
    if not job_ids:
        return []
    return [_job(row) for row in conn.execute(_REVIVE, {"ids": list(job_ids)})]


_FAIL_UNDELIVERABLE = sa.text(
    move(
        "id = :id AND life = :life AND status = 'pending'",
        "status = 'failed', error = CAST(:error AS jsonb), completed_at = now()",
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


# -- what the scheduler publishes -----------------------------------------------------------------

_DUE_UNPUBLISHED = sa.text(
    f"""
    SELECT * FROM jobs
     WHERE status = 'pending' AND published_at IS NULL
       AND {DUE_AT} <= now() + make_interval(secs => :horizon)
       AND updated_at < now() - make_interval(secs => :stranded_after)
     ORDER BY {DUE_AT} LIMIT :limit FOR UPDATE SKIP LOCKED
    """
)


def due_unpublished(
    conn: Connection, horizon: float, stranded_after: float, limit: int = 500
) -> list[Job]:
    """Pending jobs with no message in RabbitMQ that are due within `horizon` seconds, locked
    for publishing. Fresh rows (younger than `stranded_after`) are left to their enqueuer."""
    params = {"horizon": horizon, "stranded_after": stranded_after, "limit": limit}
    return [_job(row) for row in conn.execute(_DUE_UNPUBLISHED, params)]


def lost_messages(
    conn: Connection, priorities: Sequence[tuple[int, int]], older_than: float, limit: int = 500
) -> list[Job]:
    """Pending jobs in these priority ranges, published and due at least `older_than` seconds
    ago, locked for publishing again. Asked only of tiers whose queues hold no message: such a
    job should have run long ago, so its message was lost."""
    tiers = (
        " OR ".join(f"priority BETWEEN :low{i} AND :high{i}" for i in range(len(priorities)))
        or "false"
    )
    statement = sa.text(
        f"""
        SELECT * FROM jobs
         WHERE status = 'pending'
           AND published_at < now() - make_interval(secs => :older_than)
           AND {DUE_AT} < now() - make_interval(secs => :older_than)
           AND ({tiers})
         ORDER BY created_at LIMIT :limit FOR UPDATE SKIP LOCKED
        """
    )
    params: dict[str, Any] = {"older_than": older_than, "limit": limit}
    for i, (low, high) in enumerate(priorities):
        params |= {f"low{i}": low, f"high{i}": high}
    return [_job(row) for row in conn.execute(statement, params)]


def _job(row: Row) -> Job:
    """A `Job` from a row of `jobs.*` (a move's `was` column left out)."""
    mapping = dict(row._mapping)
    mapping.pop("was", None)
    return Job.model_validate(mapping)


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
    """
)
_PRUNABLE = sa.text(f"SELECT count(*) FROM jobs WHERE {_FINISHED_BEFORE}")


def prune(conn: Connection, status: JobStatus, age: float, limit: int) -> int:
    """Delete up to `limit` jobs in this final status that finished more than `age` seconds
    ago, with their attempts. Returns how many. The kept counts follow (a statement trigger
    records every delete)."""
    if not status.is_final:
        raise ValueError(f"{status} jobs are never pruned")
    return conn.execute(_PRUNE, {"status": status, "age": age, "limit": limit}).rowcount


def prunable(conn: Connection, status: JobStatus, age: float) -> int:
    """How many jobs `prune` would delete, in all."""
    return conn.scalar(_PRUNABLE, {"status": status, "age": age})
