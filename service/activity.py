"""What Warren has been doing lately: jobs finished per minute, and the workers holding jobs.

Both are read for the dashboard's overview, every few seconds, so neither may read a whole
table. `per_minute` walks `jobs_status_created_idx` (status, created_at) for the last hour of
finished jobs, so it counts the jobs *created* within the window that finished within it: a
job created earlier (a delay, a long retry) and finished now is left out. `running` walks
`jobs_lease_idx`, the partial index of processing jobs. Nothing here writes.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_PER_MINUTE = sa.text(
    """
    SELECT date_trunc('minute', completed_at) AS minute, status, count(*) AS n
      FROM jobs
     WHERE status IN ('completed', 'failed')
       AND created_at >= :since AND completed_at >= :since
     GROUP BY 1, 2
    """
)

_RUNNING = sa.text(
    """
    SELECT worker, count(*) AS jobs, max(lease_until) AS lease_until
      FROM jobs
     WHERE status = 'processing' AND lease_until IS NOT NULL
     GROUP BY worker
     ORDER BY worker
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
    """A worker process seen holding jobs now: its name (host and pid), how many jobs it
    runs, and when its heartbeat last renewed a lease (the latest lease's end less one
    lease)."""

    name: str
    jobs: int
    last_heartbeat: datetime


def per_minute(conn: Connection, minutes: int = 60, now: datetime | None = None) -> list[Minute]:
    """Each of the last `minutes` minutes, oldest first, the current one last; minutes with
    nothing finished are zeros, so callers can draw the list as it is."""
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    first = now - timedelta(minutes=minutes - 1)
    counts: dict[tuple[datetime, str], int] = {}
    for minute, status, n in conn.execute(_PER_MINUTE, {"since": first}):
        counts[(minute.astimezone(UTC), status)] = n
    starts = [first + timedelta(minutes=i) for i in range(minutes)]
    return [
        Minute(start, counts.get((start, "completed"), 0), counts.get((start, "failed"), 0))
        for start in starts
    ]


def running(conn: Connection, lease_seconds: float) -> list[Worker]:
    """The workers holding a lease now, by name. An idle worker holds none and is not seen
    here: RabbitMQ's consumer count per queue tells how many are connected."""
    lease = timedelta(seconds=lease_seconds)
    return [
        Worker(worker or "unknown", jobs, lease_until - lease)
        for worker, jobs, lease_until in conn.execute(_RUNNING)
    ]
