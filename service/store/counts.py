"""Kept counts of jobs by type and status: what `GET /stats` reads instead of counting rows.

Triggers (migration 0003) append a delta row for every change of a job's status; `fold()`
moves the deltas into `job_counts`, one row per type and status. `read()` adds the deltas not
folded yet, so counts are exact at any time; folding only keeps the read short.
"""

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_FOLD = sa.text(
    """
    WITH moved AS (DELETE FROM job_count_deltas RETURNING type, status, delta)
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


def fold(conn: Connection) -> None:
    """Move the pending deltas into the kept counts. Safe to run from several processes at
    once: a delta is deleted, and so counted, by one of them only, and counts are updated in
    one order, so two folds cannot deadlock."""
    conn.execute(_FOLD)


def read(conn: Connection) -> dict[str, dict[str, int]]:
    """`{type: {status: count}}` for every job type with jobs."""
    result: dict[str, dict[str, int]] = {}
    for type_, status, n in conn.execute(_READ):
        result.setdefault(type_, {})[status] = n
    return result
