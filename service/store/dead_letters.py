"""The job store's verbs for `dead_letters`: record, resolve, replay and purge.

A job has at most one dead letter: a newer one replaces the older. The inspector
(`service.deadletters`) reads them and builds the `Selection` these verbs take.
"""

import hashlib
import re
import uuid
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from service.broker import Dispatch
from service.errors import Conflict, NotFound
from service.models import JobStatus
from service.store import jobs
from service.store.sql import status_in

_VARIABLE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # uuids
    r"|0x[0-9a-f]+|\b[0-9a-f]{12,}\b"  # hex ids
    r"|\d+(?:\.\d+)?",  # numbers
    re.IGNORECASE,
)


def fingerprint(error: dict[str, Any]) -> str:
    """Errors that differ only in ids and numbers share a fingerprint."""
    normalized = _VARIABLE.sub("#", str(error.get("message", "")))[:500]
    raw = f"{error.get('type', '')}\n{normalized}".encode()
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest()[:16]


class Selection(Protocol):
    """Which dead letters a verb applies to: these jobs', one fingerprint's, or (neither) all."""

    job_ids: list[uuid.UUID] | None
    fingerprint: str | None


_RECORD = sa.text(
    """
    INSERT INTO dead_letters (job_id, type, queue, message, x_death, error, fingerprint, dead_at)
    VALUES (:job_id, :type, :queue, :message, :x_death, :error, :fingerprint, now())
    ON CONFLICT (job_id) WHERE job_id IS NOT NULL DO UPDATE
       SET type = excluded.type, queue = excluded.queue, message = excluded.message,
           x_death = excluded.x_death, error = excluded.error,
           fingerprint = excluded.fingerprint, dead_at = excluded.dead_at
    """
).bindparams(*(sa.bindparam(name, type_=JSONB) for name in ("message", "x_death", "error")))


def record(
    conn: Connection,
    *,
    job_id: uuid.UUID | None,
    type: str | None,
    queue: str,
    message: dict[str, Any],
    error: dict[str, Any],
    x_death: Any = None,
) -> None:
    """Store one dead letter, fingerprinted; a job's earlier one is replaced."""
    conn.execute(
        _RECORD,
        {
            "job_id": job_id,
            "type": type,
            "queue": queue,
            "message": message,
            "x_death": x_death,
            "error": error,
            "fingerprint": fingerprint(error),
        },
    )


_RESOLVE = sa.text("DELETE FROM dead_letters WHERE job_id = ANY(CAST(:ids AS uuid[]))")


def resolve(conn: Connection, job_ids: list[uuid.UUID]) -> None:
    """Remove the dead letters of jobs that a person started again."""
    conn.execute(_RESOLVE, {"ids": job_ids})


def _where(selection: Selection) -> tuple[str, dict[str, Any]]:
    if selection.job_ids is not None:
        return "job_id = ANY(CAST(:ids AS uuid[]))", {"ids": selection.job_ids}
    if selection.fingerprint is not None:
        return "fingerprint = :fingerprint", {"fingerprint": selection.fingerprint}
    return "true", {}


# A letter whose job retention deleted, or that a person already started again, stays put.
_REPLAYABLE = (
    "EXISTS (SELECT FROM jobs WHERE jobs.id = dead_letters.job_id"
    f" AND {status_in(JobStatus.FAILED)})"
)


# The jobs before their letters, in key order: the drain and a failing worker lock a job, then
# write its letter, and a replay that took the letters first deadlocked with them.
_LOCK_JOBS = (
    f"SELECT FROM jobs WHERE {status_in(JobStatus.FAILED)}"
    " AND id IN (SELECT job_id FROM dead_letters WHERE {where}) ORDER BY id FOR UPDATE"
)


def take_for_replay(
    conn: Connection, selection: Selection, *, for_relay: bool = False
) -> list[Dispatch]:
    """Remove the selected dead letters whose jobs are still `failed` and start a new life of
    each of those jobs. Returns the jobs to publish, or with `for_relay` flags them for the
    scheduler's relay (`jobs.revive`). A letter whose job is gone (deleted by retention) is
    kept. Raises `NotFound` naming ids not in the DLQ, `Conflict` naming those whose jobs are
    gone; nothing is replayed then."""
    where, params = _where(selection)
    conn.execute(sa.text(_LOCK_JOBS.format(where=where)), params)
    if selection.job_ids is not None:  # once locked: a replay that ran meanwhile took them
        _check_named(conn, selection.job_ids, where, params)
    taken = conn.scalars(
        sa.text(f"DELETE FROM dead_letters WHERE {where} AND {_REPLAYABLE} RETURNING job_id"),
        params,
    )
    return jobs.revive(conn, list(taken), for_relay=for_relay)


def _check_named(
    conn: Connection, job_ids: list[uuid.UUID], where: str, params: dict[str, Any]
) -> None:
    selected = sa.text(f"SELECT job_id, {_REPLAYABLE} FROM dead_letters WHERE {where}")
    replayable = dict(conn.execute(selected, params).all())
    if missing := [str(i) for i in job_ids if i not in replayable]:
        raise NotFound(f"not in the dead-letter queue: {', '.join(missing)}")
    if gone := [str(i) for i in job_ids if not replayable[i]]:
        raise Conflict(
            f"the jobs of these dead letters are no longer failed or were deleted by retention,"
            f" so they cannot be replayed (purge the letters): {', '.join(gone)}"
        )


def purge(conn: Connection, selection: Selection) -> int:
    """Delete the selected dead letters; their jobs stay `failed`. Returns how many."""
    where, params = _where(selection)
    return conn.execute(sa.text(f"DELETE FROM dead_letters WHERE {where}"), params).rowcount


_OLDER_THAN = "dead_at < now() - make_interval(secs => :age)"
_PRUNE = sa.text(
    f"""
    DELETE FROM dead_letters WHERE id IN (
        SELECT id FROM dead_letters WHERE {_OLDER_THAN} ORDER BY id LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id
    """
)
_PRUNABLE = sa.text(f"SELECT count(*) FROM dead_letters WHERE {_OLDER_THAN}")


def prune(conn: Connection, age: float, limit: int) -> list[int]:
    """Delete up to `limit` dead letters recorded more than `age` seconds ago; their ids."""
    return list(conn.scalars(_PRUNE, {"age": age, "limit": limit}))


def prunable(conn: Connection, age: float) -> int:
    """How many dead letters `prune` would delete, in all."""
    return conn.scalar(_PRUNABLE, {"age": age})
