"""What Warren has been doing lately: jobs finished per minute, and the processes alive.

Both are read for the dashboard's overview, every few seconds, so neither may read a whole
table. `per_minute` reads the history the count fold keeps (`store.counts.minutes`: sixty
rows for an hour). `running` reads the processes' heartbeats (`store.processes`) and, from
`jobs_lease_idx`, the partial index of processing jobs, how many jobs each worker holds.
Nothing here writes.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.errors import BadRequest
from service.store import counts as store_counts
from service.store import processes
from service.store.sql import PROCESSING

#: The most minutes `per_minute` reads back: the history `store.counts` keeps.
MAX_MINUTES = store_counts.HISTORY_MINUTES
_RUNNING = sa.text(
    f"""
    SELECT worker, count(*) AS jobs FROM jobs
     WHERE status = {PROCESSING} AND lease_until IS NOT NULL
     GROUP BY worker
    """
)


@dataclass(frozen=True)
class Minute:
    """One minute of the window: jobs that completed, and that failed for good, in it."""

    start: datetime
    completed: int
    failed: int


@dataclass(frozen=True)
class Worker:
    """A process seen alive: its name (host and pid), how many jobs it runs now, its last
    heartbeat, its kind (`worker` or `scheduler`) and when it started."""

    name: str
    jobs: int
    last_heartbeat: datetime
    kind: str = "worker"
    started_at: datetime | None = None


def per_minute(conn: Connection, minutes: int = 60, now: datetime | None = None) -> list[Minute]:
    """Each of the last `minutes` minutes, oldest first, the current one last; minutes with
    nothing finished are zeros, so callers can draw the list as it is. The history is a day
    long, so `minutes` is 1 to `MAX_MINUTES`; `BadRequest` otherwise."""
    if not 1 <= minutes <= MAX_MINUTES:
        raise BadRequest(f"minutes is 1 to {MAX_MINUTES} (the history kept is a day)")
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    first = now - timedelta(minutes=minutes - 1)
    counts: dict[tuple[datetime, str], int] = {}
    for (minute, status), n in store_counts.minutes(conn, first).items():
        counts[(minute.astimezone(UTC), status)] = n
    starts = [first + timedelta(minutes=i) for i in range(minutes)]
    return [
        Minute(start, counts.get((start, "completed"), 0), counts.get((start, "failed"), 0))
        for start in starts
    ]


def running(conn: Connection, heartbeat_seconds: float) -> list[Worker]:
    """The workers and schedulers whose heartbeat is at most three beats old, workers first,
    each worker with the number of jobs it holds now."""
    holding = dict(conn.execute(_RUNNING).all())
    return [
        Worker(p.name, holding.get(p.name, 0), p.seen_at, p.kind, p.started_at)
        for p in processes.seen(conn, within=3 * heartbeat_seconds)
    ]
