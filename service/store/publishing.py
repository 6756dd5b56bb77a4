"""The job store's verbs for publishing: which jobs need a message (the relay's flagged rows,
the scheduler's due and stranded ones, the ones whose message was lost), and the mark that
records a message RabbitMQ confirmed.

The marks are fenced like every write a message causes: a mark lands only on the life and
attempt it was published for (docs/architecture.md: "Lives, and what fences each write").
"""

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.broker import Dispatch
from service.store.sql import DISPATCH, DUE_AT, IS_PENDING, PENDING, driven


def _unpublished_and_due(bind: Callable[[str], str]) -> str:
    """Pending, without a message, due within `horizon` seconds and not held by a pause;
    `bind` writes a parameter's placeholder (`:name` for SQLAlchemy, `%(name)s` for psycopg)."""
    return f"""
    status = {PENDING} AND published_at IS NULL
    AND {DUE_AT} <= now() + make_interval(secs => {bind("horizon")})
    AND type <> ALL(CAST({bind("held_types")} AS text[]))
    AND priority <> ALL(CAST({bind("held_priorities")} AS integer[]))
    """


_DUE_UNPUBLISHED = sa.text(
    f"""
    SELECT {DISPATCH} FROM jobs
     WHERE {_unpublished_and_due(lambda name: f":{name}")}
       AND updated_at < now() - make_interval(secs => :stranded_after)
     ORDER BY {DUE_AT} LIMIT :limit FOR UPDATE SKIP LOCKED
    """
)
# The relay's hot path: the rows flagged, found in their partial index; those publishable are
# marked published, the others (held by a pause, due beyond the horizon, published by the
# scheduler meanwhile) are left to the scheduler's tick. The UPDATE keeps the locks the
# subquery took until the caller's transaction ends.
_RELAYING = f"""
    WITH picked AS (
        SELECT id, ({_unpublished_and_due(lambda name: f"%({name})s")}) IS TRUE AS publish
          FROM jobs WHERE for_relay
         ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
    )
    UPDATE jobs
       SET for_relay = false,
           published_at = CASE WHEN picked.publish THEN now() ELSE jobs.published_at END
      FROM picked
     WHERE jobs.id = picked.id
    RETURNING picked.publish, {DISPATCH}
"""


def due_unpublished(
    conn: Connection,
    horizon: float,
    stranded_after: float,
    limit: int = 500,
    *,
    held_types: Sequence[str] = (),
    held_priorities: Sequence[int] = (),
) -> list[Dispatch]:
    """Pending jobs with no message in RabbitMQ that are due within `horizon` seconds, locked
    for publishing, as what publishing them needs. Fresh rows (younger than `stranded_after`)
    are left to their enqueuer, and jobs of `held_types` or `held_priorities` (what is
    paused) wait where they are."""
    params = {
        "horizon": horizon,
        "stranded_after": stranded_after,
        "limit": limit,
        "held_types": list(held_types),
        "held_priorities": list(held_priorities),
    }
    return [Dispatch(*row) for row in conn.execute(_DUE_UNPUBLISHED, params)]


_ANY_FOR_RELAY = "SELECT EXISTS (SELECT FROM jobs WHERE for_relay)"


def any_for_relay(conn: Connection) -> bool:
    """Whether any job waits for the relay: its look when idle, an empty index's probe."""
    return driven(conn, _ANY_FOR_RELAY, {})[0][0]


def relaying(
    conn: Connection,
    horizon: float,
    limit: int,
    *,
    held_types: Sequence[str] = (),
    held_priorities: Sequence[int] = (),
) -> tuple[list[Dispatch], int]:
    """Take up to `limit` of the jobs waiting for the relay (`for_relay`), skipping those
    another transaction holds; return what publishing the due ones needs, and how many were
    taken. The due ones (what `due_unpublished` would return, whatever their age) are marked
    published, the rest are left to the scheduler's tick. The caller publishes them before its
    transaction commits, or rolls it back when it cannot: until then the rows stay locked, and
    a worker that receives a message first waits for the mark."""
    params = {
        "limit": limit,
        "horizon": horizon,
        "held_types": list(held_types),
        "held_priorities": list(held_priorities),
    }
    taken = driven(conn, _RELAYING, params)
    return [Dispatch(*row[1:]) for row in taken if row[0]], len(taken)


def lost_messages(
    conn: Connection, priorities: Sequence[tuple[int, int]], older_than: float, limit: int = 500
) -> list[Dispatch]:
    """Pending jobs in these priority ranges, published and due at least `older_than` seconds
    ago, locked for publishing again, as what publishing them needs. Asked only of tiers whose
    queues hold no message: such a job should have run long ago, so its message was lost."""
    tiers = (
        " OR ".join(f"priority BETWEEN :low{i} AND :high{i}" for i in range(len(priorities)))
        or "false"
    )
    statement = sa.text(
        f"""
        SELECT {DISPATCH} FROM jobs
         WHERE status = {PENDING}
           AND published_at < now() - make_interval(secs => :older_than)
           AND {DUE_AT} < now() - make_interval(secs => :older_than)
           AND ({tiers})
         ORDER BY created_at LIMIT :limit FOR UPDATE SKIP LOCKED
        """
    )
    params: dict[str, Any] = {"older_than": older_than, "limit": limit}
    for i, (low, high) in enumerate(priorities):
        params |= {f"low{i}": low, f"high{i}": high}
    return [Dispatch(*row) for row in conn.execute(statement, params)]


_MARK_PUBLISHED = sa.text(
    f"""
    UPDATE jobs SET published_at = now()
     WHERE id = (SELECT id FROM jobs
                  WHERE id = :id AND {IS_PENDING} AND life = :life AND attempts = :attempts
                    FOR NO KEY UPDATE SKIP LOCKED)
    """
)


def mark_published(conn: Connection, published: Sequence[Dispatch]) -> None:
    """Record that RabbitMQ confirmed these jobs' messages. A mark lands only while the job
    still waits for the run it was published for (the same life, no attempt since): a mark
    that arrives late, after that run started or a person retried the job, must not hide
    the job's next run from the scheduler.

    A mark never waits for a row another transaction holds. That transaction is changing the
    job (a worker's claim or completion, a person's verb, a scheduler publishing it), so the
    mark would not land or is made there; and waiting would deadlock a batch of marks against
    a worker's group commit, which locks its rows in another order. A job left unmarked costs
    at most a second message, which a claim ignores.

    One statement per job, sent together (psycopg pipelines an executemany): a row matched by
    its primary key is the plan PostgreSQL picks whatever it knows of the table, while a set
    of ids is planned from statistics that a queue table, filled in a burst, often lacks."""
    if published:
        params = [
            {"id": job.id, "life": job.life, "attempts": job.attempts}
            for job in sorted(published, key=lambda job: job.id)
        ]
        conn.execute(_MARK_PUBLISHED, params)
