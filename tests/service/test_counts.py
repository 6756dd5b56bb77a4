"""Kept counts: what `GET /stats` reports always equals counting the jobs table, whether or
not the scheduler has folded the latest changes yet."""

import threading

import sqlalchemy as sa

from service.store import counts
from tests.helpers import wait_for


def kept_and_counted(engine) -> tuple[dict, dict]:
    """The kept counts and a count of the table, from one snapshot of the database."""
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        kept = counts.read(conn)
        counted: dict[str, dict[str, int]] = {}
        for type_, status, n in conn.execute(
            sa.text("SELECT type, status, count(*) FROM jobs GROUP BY type, status")
        ):
            counted.setdefault(type_, {})[status] = n
        return kept, counted


def assert_exact(engine) -> dict[str, dict[str, int]]:
    kept, counted = kept_and_counted(engine)
    assert kept == counted
    return kept


def fold(engine) -> None:
    with engine.begin() as conn:
        counts.fold(conn)


def test_counts_follow_every_change_of_status(warren, engine, worker):
    jobs = warren.submit([{"type": "test-noop", "payload": {}}] * 5)
    failing = warren.enqueue("test-record", {"failTimes": 1, "permanent": True}).id
    later = warren.enqueue("test-noop", {}, delay_seconds=3600).id
    assert_exact(engine)

    fold(engine)
    warren.cancel(later)
    assert_exact(engine)  # folded counts plus one unfolded change

    warren.retry(later)
    wait_for(lambda: all(warren.get(j.id).status == "completed" for j in jobs))
    wait_for(lambda: warren.get(failing).status == "failed")
    wait_for(lambda: warren.get(later).status == "completed")
    assert_exact(engine)
    fold(engine)
    assert_exact(engine)
    assert assert_exact(engine)["test-noop"] == {"completed": 6}

    with engine.begin() as conn:  # a prune of finished jobs
        conn.execute(sa.text("DELETE FROM jobs WHERE status = 'completed'"))
    assert_exact(engine)


def test_folds_running_side_by_side_count_each_change_once(warren, engine):
    for _ in range(30):
        warren.submit([{"type": "test-noop", "payload": {}}] * 10)
    folds = [threading.Thread(target=fold, args=(engine,)) for _ in range(4)]
    for thread in folds:
        thread.start()
    for thread in folds:
        thread.join()

    assert assert_exact(engine) == {"test-noop": {"pending": 300}}


def test_truncating_the_jobs_table_empties_the_counts(warren, engine):
    warren.submit([{"type": "test-noop", "payload": {}}] * 3)
    fold(engine)

    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE jobs CASCADE"))

    assert assert_exact(engine) == {}
