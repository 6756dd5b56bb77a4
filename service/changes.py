"""Jobs that changed lately, oldest change first: what `warren jobs tail` follows.

Read-only. A job's `updated_at` is set by every change of status (the store's moves, to the
time their transaction began) and by enqueue (to the enqueuing process's clock): a change may
become visible after a later one, so a follower reads again a short window behind the newest
change it saw (see `Follower`). A poll walks `jobs_updated_idx` (updated_at, id) from there,
so it reads what changed, whatever the size of the table.
"""

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from service.models import Job

jobs = Job.__table__
PAGE = 500


def database_now(conn: Connection) -> datetime:
    """PostgreSQL's clock, the one `updated_at` is written with."""
    return conn.scalar(sa.select(sa.func.now()))


def changed_after(
    conn: Connection,
    after: tuple[datetime, uuid.UUID],
    *,
    status: str | None = None,
    type: str | None = None,
    limit: int = PAGE,
) -> list[Job]:
    """Up to `limit` jobs whose `(updated_at, id)` follows `after`, in that order."""
    statement = sa.select(Job).where(sa.tuple_(jobs.c.updated_at, jobs.c.id) > after)
    if status:
        statement = statement.where(jobs.c.status == status)
    if type:
        statement = statement.where(jobs.c.type == type)
    statement = statement.order_by(jobs.c.updated_at, jobs.c.id).limit(limit)
    with Session(bind=conn) as session:
        return list(session.scalars(statement))


@dataclass
class Change:
    """A job as it is now, and the status it had when last seen (None when first seen)."""

    job: Job
    was: str | None


@dataclass
class Follower:
    """Follows the changes after `start`: each `poll` returns those not returned before.

    It reads again the `overlap` behind the newest change it saw, for changes whose
    transaction began earlier but committed later, and tells a change from a re-read by the
    job's status, life and attempt."""

    start: datetime
    status: str | None = None
    type: str | None = None
    overlap: timedelta = timedelta(seconds=2)
    newest: datetime | None = None
    seen: dict[uuid.UUID, tuple[tuple[str, int, int], datetime]] = field(default_factory=dict)

    def poll(self, conn: Connection) -> list[Change]:
        floor = max(self.start, (self.newest or self.start) - self.overlap)
        after = (floor, uuid.UUID(int=0))
        changes: list[Change] = []
        while True:
            rows = changed_after(conn, after, status=self.status, type=self.type)
            changes += [change for job in rows if (change := self._note(job))]
            if len(rows) < PAGE:
                break
            after = (rows[-1].updated_at, rows[-1].id)
        self._forget(floor)
        return changes

    def _note(self, job: Job) -> Change | None:
        key = (job.status, job.life, job.attempts)
        before = self.seen.get(job.id)
        self.seen[job.id] = (key, job.updated_at)
        self.newest = max(self.newest or job.updated_at, job.updated_at)
        if before is not None and before[0] == key:
            return None
        return Change(job, before[0][0] if before else None)

    def _forget(self, floor: datetime) -> None:
        """Drop what no later poll reads again."""
        self.seen = {job_id: seen for job_id, seen in self.seen.items() if seen[1] >= floor}
