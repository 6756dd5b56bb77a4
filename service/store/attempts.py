"""The job store's verbs for a worker's attempts: claim and complete in batches, fail, honour
a cancel, renew and take back leases.

Writes made on behalf of a running attempt are fenced by `current_attempt_id`, so a worker
that lost its job cannot overwrite the row; a claim is fenced by the job's `life` the
message was published for. The job's row holds its current attempt (`current_attempt_id`,
`attempts`, `worker`, `started_at`, unset until a thread starts a claim made at delivery);
the attempt gets a row of its own when the job moves on from it: a failure, a cancel, a lost
lease. A success, the job's last attempt, writes none (`queries.attempts` reads it from the
job's row).
"""

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from service.models import AttemptStatus, Job, JobStatus
from service.store.sql import (
    CANCELLED,
    DUE_AT,
    FAILED,
    IS_PENDING,
    IS_PROCESSING,
    PENDING,
    PROCESSING,
    array_text,
    driven,
    job_of,
    json_text,
    move,
)


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
    #: How often a worker died holding this job claimed with no start mark.
    unstarted_losses: int = 0


#: A job a message asks to run: its id, the life the message was published for, and whether
#: it starts at once (a thread's claim) or waits for a thread (a claim at delivery).
Wanted = tuple[uuid.UUID, int, bool]


@dataclass(frozen=True)
class Worked:
    """What one `work` call wrote: the claims made, and the attempts marked started and
    recorded as successes. A job missing from `claimed` was not claimable; an attempt missing
    from `started` or `recorded` had lost its job."""

    claimed: dict[uuid.UUID, Claim]
    started: set[int]
    recorded: set[int]


_WORK = """
    SELECT * FROM warren_work(
        %(claim_ids)s::uuid[], %(claim_lives)s::integer[], %(claim_starts)s::boolean[],
        %(worker)s, %(lease)s, %(start_ids)s::uuid[], %(start_attempts)s::bigint[],
        %(done_ids)s::uuid[], %(done_attempts)s::bigint[], %(results)s::jsonb)
"""


def work(
    conn: Connection,
    wanted: Sequence[Wanted],
    starts: Sequence[Claim],
    outcomes: Sequence[tuple[Claim, str | None]],
    worker: str,
    lease: float,
) -> Worked:
    """Record the success of the attempts in `outcomes` (each with its result as JSON text,
    None for none; a JSON `null` is stored as none too), mark the attempts in `starts` as
    started, then claim the due pending jobs among `wanted` that are still in the life asked
    for: each becomes `processing` with one more attempt and a lease. One statement
    (`warren_work`), in `conn`'s transaction.

    A claim made at delivery is not started: its job waits for a thread with `started_at`
    unset, and its attempt is not spent until the thread's start mark is committed (a
    completion marks it too). A worker killed meanwhile loses the claim, and taking it back
    gives the attempt back (`release_expired`).

    The function locks the batch's rows in id order, as every writer of several rows does
    (docs/architecture.md, "Locks"). Sent as `sql.driven`: SQLAlchemy's execution added about
    80 % to the client's time per job. The arrays go as text literals and the results as one
    JSON array: psycopg's list adaptation cost the writer thread more than the rest of the
    call."""
    claims = sorted(set(wanted))
    marks = sorted(starts, key=lambda claim: claim.job_id)
    done = sorted(outcomes, key=lambda outcome: outcome[0].job_id)
    params = {
        "claim_ids": array_text(job_id for job_id, _, _ in claims),
        "claim_lives": array_text(life for _, life, _ in claims),
        "claim_starts": array_text(str(start).lower() for _, _, start in claims),
        "worker": worker,
        "lease": lease,
        "start_ids": array_text(claim.job_id for claim in marks),
        "start_attempts": array_text(claim.attempt_id for claim in marks),
        "done_ids": array_text(claim.job_id for claim, _ in done),
        "done_attempts": array_text(claim.attempt_id for claim, _ in done),
        "results": "[" + ",".join("null" if r is None else r for _, r in done) + "]",
    }
    worked = Worked({}, set(), set())
    for recorded_attempt, started_attempt, *claim in driven(conn, _WORK, params):
        if recorded_attempt is not None:
            worked.recorded.add(recorded_attempt)
        elif started_attempt is not None:
            worked.started.add(started_attempt)
        else:
            worked.claimed[claim[0]] = Claim(*claim)
    return worked


def claim(
    conn: Connection, job_id: uuid.UUID, life: int, worker: str, lease: float
) -> Claim | None:
    """Take one due pending job in this life and start it, as `work` does. None if not
    claimable."""
    return work(conn, [(job_id, life, True)], [], [], worker, lease).claimed.get(job_id)


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


_FORGET_PUBLICATION = sa.text(
    f"UPDATE jobs SET published_at = NULL WHERE id = :id AND life = :life AND {IS_PENDING}"
)


def forget_publication(conn: Connection, job_id: uuid.UUID, life: int) -> None:
    """A pending job's message came too early: let the scheduler publish it when due."""
    conn.execute(_FORGET_PUBLICATION, {"id": job_id, "life": life})


# -- the end of an attempt other than success --------------------------------------------------

_OF_ATTEMPT = f"id = :id AND {IS_PROCESSING} AND current_attempt_id = :attempt"

_FAIL = sa.text(
    move(
        _OF_ATTEMPT,
        f"""
        status = CASE WHEN :retry_at IS NULL THEN {FAILED}
                      WHEN cancel_requested_at IS NOT NULL THEN {CANCELLED}
                      ELSE {PENDING} END,
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
    VALUES (:id, :job_id, :number, :life, :status, :worker,
            coalesce(CAST(:started_at AS timestamptz), now()), now(), CAST(:error AS jsonb),
            :traceback)
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
            "error": json_text(error),
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
            "error": json_text(error),
        },
    ).first()
    if job is None:
        return None
    _finish_attempt(conn, job, AttemptStatus.FAILED, error, traceback)
    return JobStatus(job.status)


_CANCELLED = sa.text(
    move(_OF_ATTEMPT, f"status = {CANCELLED}, completed_at = now(), lease_until = NULL")
)

_CANCELLED_ERROR = {
    "type": "JobCancelled",
    "message": "cancelled while running",
    "retryable": False,
}


_CANCELLED_BEFORE_START = {
    "type": "JobCancelled",
    "message": "cancelled before it started",
    "retryable": False,
}


def cancelled(conn: Connection, claim: Claim, *, started: bool = True) -> bool:
    """Record that a running job honoured its cancellation, or, with `started` false, that a
    job claimed at delivery was cancelled before a thread started it."""
    job = conn.execute(_CANCELLED, {"id": claim.job_id, "attempt": claim.attempt_id}).first()
    if job is not None:
        error = _CANCELLED_ERROR if started else _CANCELLED_BEFORE_START
        _finish_attempt(conn, job, AttemptStatus.CANCELLED, error)
    return job is not None


_UNCLAIM = sa.text(
    move(
        f"""id = ANY(CAST(:ids AS uuid[])) AND current_attempt_id = ANY(CAST(:attempts AS bigint[]))
            AND {IS_PROCESSING}""",
        f"""
        status = CASE WHEN cancel_requested_at IS NULL THEN {PENDING} ELSE {CANCELLED} END,
        completed_at = CASE WHEN cancel_requested_at IS NULL THEN NULL ELSE now() END,
        attempts = attempts - 1, current_attempt_id = NULL, worker = NULL, started_at = NULL,
        lease_until = NULL
        """,
        returning="jobs.type, jobs.status",
    )
)


def unclaim(conn: Connection, claims: Sequence[Claim]) -> int:
    """Give back jobs claimed at delivery that no thread started (the worker stops): each is
    `pending` again with the attempt not spent, or `cancelled` if a person asked it to stop
    meanwhile. Their messages go back to RabbitMQ, which delivers them again. Returns how
    many jobs were given back; a job that moved on from its claim is left alone."""
    if not claims:
        return 0
    params = {
        "ids": [claim.job_id for claim in claims],
        "attempts": [claim.attempt_id for claim in claims],
    }
    return len(conn.execute(_UNCLAIM, params).all())


WORKER_LOST = {
    "type": "WorkerLost",
    "message": "worker lost: its lease expired while the job was processing",
    "retryable": True,
}

_RELEASE_EXPIRED = sa.text(
    move(
        _OF_ATTEMPT + " AND lease_until < now()",
        f"""
        status = CASE WHEN cancel_requested_at IS NOT NULL THEN {CANCELLED}
                      WHEN started_at IS NOT NULL AND attempts >= max_attempts THEN {FAILED}
                      ELSE {PENDING} END,
        completed_at = CASE WHEN cancel_requested_at IS NOT NULL
                              OR (started_at IS NOT NULL AND attempts >= max_attempts)
                            THEN now() END,
        error = CASE WHEN started_at IS NULL THEN error ELSE CAST(:error AS jsonb) END,
        attempts = attempts - CASE WHEN started_at IS NULL THEN 1 ELSE 0 END,
        unstarted_losses = unstarted_losses + CASE WHEN started_at IS NULL THEN 1 ELSE 0 END,
        current_attempt_id = CASE WHEN started_at IS NOT NULL THEN current_attempt_id END,
        worker = CASE WHEN started_at IS NOT NULL THEN worker END,
        published_at = NULL, lease_until = NULL
        """,
    )
)


@dataclass(frozen=True)
class TakenBack:
    """A job `release_expired` took back from a worker that stopped renewing its lease."""

    #: The job as it is now.
    job: Job
    #: Whether the attempt counts: it had started, and is recorded `lost`. An attempt that
    #: never started was given back unspent, and counted in the job's `unstarted_losses`.
    spent: bool


def release_expired(conn: Connection, job_id: uuid.UUID, attempt_id: int) -> TakenBack | None:
    """Take back a `processing` job whose worker stopped renewing the lease of this attempt.
    An attempt that had started is recorded `lost`, and the job is `pending` again, `failed`
    if no attempts remain, or `cancelled` if a person had asked it to stop. A claim with no
    start mark (its worker died with it prefetched) is given back unspent, as `unclaim` does,
    and counted in `unstarted_losses`. Returns None if the lease had not expired or the job
    had moved on from this attempt."""
    row = conn.execute(
        _RELEASE_EXPIRED,
        {"id": job_id, "attempt": attempt_id, "error": json.dumps(WORKER_LOST)},
    ).first()
    if row is None:
        return None
    spent = row.started_at is not None  # the update leaves started_at as it was
    if spent:
        _finish_attempt(conn, row, AttemptStatus.LOST, WORKER_LOST)
    return TakenBack(job_of(row), spent)


_EXPIRED_LEASES = sa.text(
    f"""
    SELECT id, current_attempt_id FROM jobs
     WHERE status = {PROCESSING} AND lease_until < now() - make_interval(secs => :grace)
     ORDER BY lease_until LIMIT :limit FOR UPDATE SKIP LOCKED
    """
)


def expired_leases(conn: Connection, grace: float, limit: int = 100) -> list[tuple[uuid.UUID, int]]:
    """Processing jobs whose lease ran out more than `grace` seconds ago, locked for release:
    `(job id, attempt id)` pairs."""
    rows = conn.execute(_EXPIRED_LEASES, {"grace": grace, "limit": limit})
    return [(job_id, attempt_id) for job_id, attempt_id in rows]


# `status = 'processing'` as the partial index `jobs_lease_idx` says it, so that the index
# finds the rows: `IS_PROCESSING`'s `IS TRUE` form would make this a scan of the table.
_HELD = f"current_attempt_id = ANY(CAST(:ids AS bigint[])) AND status = {PROCESSING}"
_RENEW_LEASES = sa.text(
    f"""
    WITH free AS (
        SELECT id FROM jobs WHERE {_HELD} FOR NO KEY UPDATE SKIP LOCKED
    ), renewed AS (
        UPDATE jobs SET lease_until = now() + make_interval(secs => :lease)
          FROM free WHERE jobs.id = free.id
        RETURNING jobs.current_attempt_id, jobs.cancel_requested_at IS NOT NULL AS cancel
    )
    SELECT current_attempt_id, cancel FROM renewed
    UNION ALL
    SELECT current_attempt_id, NULL FROM jobs WHERE {_HELD} AND id NOT IN (SELECT id FROM free)
    """
)


def renew_leases(
    conn: Connection, attempt_ids: Sequence[int], lease: float
) -> dict[int, bool | None]:
    """Extend the leases of running attempts. Returns, for each attempt still holding its job,
    whether the job was asked to cancel; an attempt missing from the answer lost its job.

    A renewal never waits for a row another transaction holds (most often the worker's own
    writer, completing or starting the job, which locks its rows in another order: waiting
    could deadlock the two). Such an attempt is answered None: it still held its job when the
    statement began, and its lease is renewed at the next beat, long before it runs out. The
    rows renewed stay locked by `conn`'s transaction, so its other writes to them never wait."""
    if not attempt_ids:
        return {}
    rows = conn.execute(_RENEW_LEASES, {"ids": list(attempt_ids), "lease": lease})
    return dict(rows.all())


_PROGRESS = sa.text(
    f"""
    UPDATE jobs SET progress = CAST(:progress AS jsonb)
     WHERE current_attempt_id = :attempt AND status = {PROCESSING}
    """
)


def write_progress(conn: Connection, reports: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """Store what running attempts last reported, `(attempt id, progress)` each; an attempt
    that no longer holds its job changes nothing."""
    if reports:
        params = [{"attempt": a, "progress": json.dumps(p)} for a, p in reports]
        conn.execute(_PROGRESS, params)


_HOLD = sa.text(
    f"""
    SELECT 1 FROM jobs WHERE id = :job AND current_attempt_id = :attempt AND status = {PROCESSING}
       FOR KEY SHARE
    """
)


def hold(conn: Connection, job_id: uuid.UUID, attempt_id: int) -> bool:
    """Whether the attempt still holds its job. If it does, the job stays with it until
    `conn`'s transaction ends: every move (`sql.move`: a takeover, a cancel) locks the row
    `FOR UPDATE`, which waits for this lock, while the heartbeat's renewals, which lock
    `FOR NO KEY UPDATE` and skip rows they would wait for, go on renewing the lease."""
    return conn.execute(_HOLD, {"job": job_id, "attempt": attempt_id}).first() is not None
