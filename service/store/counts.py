"""Kept counts of jobs by type and status: what `GET /stats` reads instead of counting rows.

Every status change the store writes appends a delta row (`sql.move`, `warren_work`; inserts
and deletes through statement triggers); `fold()` moves the deltas into `job_counts`, one row
per type and status. `read()` adds the deltas not folded yet, so counts are exact at any time;
folding only keeps the read short.

The fold also keeps the history the dashboard draws: the jobs that completed or failed for
good, per minute of the fold and type (`job_minutes`, read by `minutes()`). The scheduler
folds every tick, so a job is counted in the minute it finished, give or take a tick.
"""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.store.sql import COMPLETED, FAILED

_FOLD = sa.text(
    f"""
    WITH moved AS (DELETE FROM job_count_deltas RETURNING type, status, delta),
    finished AS (
        INSERT INTO job_minutes (minute, type, status, n)
        SELECT date_trunc('minute', now()), type, status, sum(delta) FROM moved
         WHERE status IN ({COMPLETED}, {FAILED}) AND delta > 0
         GROUP BY type, status ORDER BY type, status
        ON CONFLICT (minute, type, status) DO UPDATE SET n = job_minutes.n + excluded.n
    )
    INSERT INTO job_counts (type, status, n)
    SELECT type, status, sum(delta) FROM moved GROUP BY type, status ORDER BY type, status
    ON CONFLICT (type, status) DO UPDATE SET n = job_counts.n + excluded.n
    """
)

_READ = sa.text(
    """
    SELECT type, status, sum(n)::bigint FROM (
        SELECT type, status, n FROM job_counts
        UNION ALL
        SELECT type, status, delta FROM job_count_deltas
    ) AS counted
    GROUP BY type, status HAVING sum(n) <> 0
    """
)


_MINUTES = sa.text(
    """
    SELECT minute, status, sum(n)::bigint FROM job_minutes
     WHERE minute >= :since GROUP BY minute, status
    """
)

#: How many minutes of per-minute history the counts keep: a day.
HISTORY_MINUTES = 1440
_FORGET_MINUTES = sa.text(
    f"DELETE FROM job_minutes WHERE minute < now() - make_interval(mins => {HISTORY_MINUTES})"
)


def fold(conn: Connection) -> None:
    """Move the pending deltas into the kept counts. Safe to run from several processes at
    once: a delta is deleted, and so counted, by one of them only, and counts are updated in
    one order, so two folds cannot deadlock. The history older than a day goes."""
    conn.execute(_FOLD)
    conn.execute(_FORGET_MINUTES)


def minutes(conn: Connection, since: datetime) -> dict[tuple[datetime, str], int]:
    """`{(minute, status): jobs}` of the jobs that completed or failed for good from `since`
    on, over all types."""
    return {(minute, status): n for minute, status, n in conn.execute(_MINUTES, {"since": since})}


def read(conn: Connection) -> dict[str, dict[str, int]]:
    """`{type: {status: count}}` for every job type with jobs."""
    result: dict[str, dict[str, int]] = {}
    for type_, status, n in conn.execute(_READ):
        result.setdefault(type_, {})[status] = n
    return result
