"""Retention: finished jobs and dead letters past their retention are deleted, in batches;
pending and processing jobs never are; the kept counts stay exact."""

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from service import artifacts, retention
from service.broker import Publisher, build_broker
from service.scheduler import Scheduler
from service.settings import MAX_RETAIN_DAYS, Settings
from service.store import dead_letters
from tests.service.test_counts import assert_exact

# (status, days since it finished) -> kept with the default retention?
AGED = [
    ("completed", 10, False),
    ("completed", 1, True),
    ("cancelled", 10, False),
    ("cancelled", 6, True),
    ("failed", 40, False),
    ("failed", 20, True),
    ("pending", 100, True),
    ("processing", 100, True),
]


def age(engine, job_id, status: str, days: int) -> None:
    """Make a pending job one that reached `status` `days` ago, counted as the store would."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE jobs SET status = :status, created_at = now() - make_interval(days => :d),"
                " completed_at = CASE WHEN :status IN ('completed', 'cancelled', 'failed')"
                " THEN now() - make_interval(days => :d) END WHERE id = :id"
            ),
            {"status": status, "d": days, "id": job_id},
        )
        conn.execute(
            sa.text(
                "INSERT INTO job_count_deltas (type, status, delta)"
                " VALUES ('test-noop', 'pending', -1), ('test-noop', :status, 1)"
            ),
            {"status": status},
        )


def dead_letter(engine, days: int) -> None:
    error = {"type": "E", "message": "boom", "retryable": False}
    with engine.begin() as conn:
        dead_letters.record(conn, job_id=None, type="test-noop", queue="q", message={}, error=error)
        conn.execute(
            sa.text(
                "UPDATE dead_letters SET dead_at = now() - make_interval(days => :d)"
                " WHERE id = (SELECT max(id) FROM dead_letters)"
            ),
            {"d": days},
        )


@pytest.fixture
def aged(warren, engine):
    """One job per row of AGED, and dead letters 40 and 10 days old."""
    ids = {}
    for status, days, kept in AGED:
        job = warren.enqueue("test-noop", {}, delay_seconds=86400)
        age(engine, job.id, status, days)
        ids[job.id] = kept
    dead_letter(engine, 40)
    dead_letter(engine, 10)
    return ids


def remaining(engine) -> set:
    with engine.connect() as conn:
        return set(conn.scalars(sa.text("SELECT id FROM jobs")))


def test_a_prune_deletes_only_what_is_past_its_retention(warren, engine, aged):
    deleted = warren.prune()

    assert deleted == {"completed": 1, "cancelled": 1, "failed": 1, "deadLetters": 1}
    assert remaining(engine) == {job_id for job_id, kept in aged.items() if kept}
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM dead_letters")) == 1
    assert_exact(engine)


def test_a_pruned_job_takes_its_file_with_it_and_a_kept_job_keeps_its_own(warren, settings, aged):
    files = {job_id: artifacts.write(settings, str(job_id), "csv", b"a,b\n") for job_id in aged}
    [gone, *_] = [job_id for job_id, kept in aged.items() if not kept]
    leftover = files[gone].with_name(files[gone].name + ".partial")  # a worker killed mid-write
    leftover.write_bytes(b"a,")

    warren.prune()

    assert {job_id for job_id, path in files.items() if path.exists()} == {
        job_id for job_id, kept in aged.items() if kept
    }
    assert not leftover.exists()


def test_a_file_whose_job_is_gone_goes_with_the_next_prune_and_a_stranger_stays(warren, settings):
    # as a crash between a prune's commit and the file's deletion leaves it
    orphan = artifacts.write(settings, "0f6b2d9e-2c3a-4b8e-8f1d-6a7c5e4d3b21", "json", b"{}")
    stranger = orphan.with_name("notes.txt")
    stranger.write_bytes(b"not Warren's")

    warren.prune()

    assert not orphan.exists() and stranger.exists()


def test_a_dry_run_counts_and_deletes_nothing(warren, engine, aged):
    assert warren.prune(dry_run=True) == {
        "completed": 1,
        "cancelled": 1,
        "failed": 1,
        "deadLetters": 1,
    }
    assert remaining(engine) == set(aged)


def test_retention_is_set_per_kind(warren, engine, aged):
    warren.settings = warren.settings.model_copy(update={"retain_failed_days": 15})

    assert warren.prune()["failed"] == 2


def test_a_prune_goes_in_batches_and_a_tick_stops_after_a_few(
    warren, engine, settings, monkeypatch
):
    monkeypatch.setattr(retention, "BATCH", 2)
    monkeypatch.setattr("service.scheduler.PRUNE_BATCHES", 2)
    for job in warren.submit([{"type": "test-noop", "payload": {}}] * 7):
        age(engine, job.id, "completed", 10)
    publisher = Publisher(build_broker(settings), settings)

    try:
        assert Scheduler(engine, publisher, settings).tick().pruned == 4  # two batches of two
    finally:
        publisher.close()
    assert len(remaining(engine)) == 3
    assert warren.prune()["completed"] == 3
    assert remaining(engine) == set()
    assert_exact(engine)


@pytest.mark.parametrize("days", ["1e8", "inf", "nan", "0"])
def test_a_retention_past_a_century_is_refused_at_startup(monkeypatch, days):
    """A value PostgreSQL cannot subtract from now() used to fail every prune instead."""
    monkeypatch.setenv("WARREN_RETAIN_FAILED_DAYS", days)

    with pytest.raises(ValidationError, match="retain_failed_days"):
        Settings()


def test_a_century_of_retention_prunes_nothing_and_fails_nothing(warren, aged):
    warren.settings = warren.settings.model_copy(
        update={
            f"retain_{kind}_days": MAX_RETAIN_DAYS
            for kind in ("completed", "cancelled", "failed", "dead_letter")
        }
    )

    assert set(warren.prune().values()) == {0}
