"""What a real worker counts as it runs jobs: finished jobs by final status, retries, and the
run and wait times, as `GET /metrics` shows them."""

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from prometheus_client import REGISTRY

from service import metrics
from service.client import Warren
from service.store import attempts
from tests.helpers import wait_for


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def counting(*keys: tuple[str, dict[str, str]]) -> Callable[[], list[float]]:
    """How much each sample grew since this call."""
    before = [sample(name, **labels) for name, labels in keys]
    return lambda: [
        sample(name, **labels) - b for (name, labels), b in zip(keys, before, strict=True)
    ]


def final(warren: Warren, job_id, status: str) -> None:
    wait_for(lambda: warren.get(job_id).status == status, timeout=30, what=status)


def test_completed_failed_dead_and_retried_jobs_are_counted_by_type(warren: Warren, worker):
    finished = "warren_jobs_finished_total"
    grown = counting(
        (finished, {"type": "test-record", "status": "completed"}),
        (finished, {"type": "test-record", "status": "dead"}),
        (finished, {"type": "test-record", "status": "failed"}),
        ("warren_job_retries_total", {"type": "test-record"}),
        ("warren_job_duration_seconds_count", {"type": "test-record"}),
        ("warren_job_wait_seconds_count", {"type": "test-record"}),
    )
    ok = warren.enqueue("test-record", {"failTimes": 1})  # one retry, then completed
    dead = warren.enqueue("test-record", {"failTimes": 9}, max_attempts=2)  # retried once
    refused = warren.enqueue("test-record", {"failTimes": 9, "permanent": True})
    for job, status in ((ok, "completed"), (dead, "failed"), (refused, "failed")):
        final(warren, job.id, status)

    # The completion is counted once its batch commits, just after the job reads completed.
    wait_for(lambda: grown()[0] == 1, timeout=10, what="the completion to be counted")
    completed, dead_n, failed, retries, runs, waits = grown()
    assert (completed, dead_n, failed, retries) == (1, 1, 1, 2)
    assert runs == waits == 5  # 2 + 2 + 1 attempts


def test_a_job_the_scheduler_takes_back_is_counted_too(warren: Warren, engine, scheduler):
    """No worker runs here: the job looks claimed by a worker that died on its last attempt."""
    grown = counting(
        ("warren_jobs_finished_total", {"type": "test-record", "status": "dead"}),
        ("warren_job_retries_total", {"type": "test-record"}),
    )
    last = warren.enqueue("test-record", {}, max_attempts=1)
    again = warren.enqueue("test-record", {}, max_attempts=2)
    with engine.begin() as conn:
        for job in (last, again):
            claim = attempts.claim(conn, job.id, 1, "gone:1", lease=60)
            assert claim is not None
        conn.execute(sa.text("UPDATE jobs SET lease_until = now() - interval '1 hour'"))
    scheduler()

    final(warren, last.id, "failed")
    wait_for(lambda: grown() == [1, 1], timeout=10, what="the dead job and the retry counted")


def test_a_job_its_dead_worker_held_but_never_started_is_no_retry(
    warren: Warren, engine, scheduler
):
    """Two jobs a dead worker held: one it had started, one it had only prefetched."""
    grown = counting(("warren_job_retries_total", {"type": "test-record"}))
    started, held = (warren.enqueue("test-record", {}, max_attempts=2) for _ in range(2))
    with engine.begin() as conn:
        attempts.work(conn, [(started.id, 1, True), (held.id, 1, False)], [], [], "gone:1", 60)
        conn.execute(
            sa.text("UPDATE jobs SET lease_until = now() - interval '1 hour' WHERE id = :id"),
            {"id": started.id},
        )
        conn.execute(  # ran out first, so it is taken back (and counted or not) first
            sa.text("UPDATE jobs SET lease_until = now() - interval '2 hours' WHERE id = :id"),
            {"id": held.id},
        )
    scheduler()

    wait_for(lambda: grown() == [1], timeout=10, what="the started job's retry counted")
    assert grown() == [1]
    assert (warren.get(held.id).status, warren.get(held.id).attempts) == ("pending", 0)


def test_a_pending_job_a_person_cancels_is_counted_as_finished(warren: Warren):
    grown = counting(("warren_jobs_finished_total", {"type": "test-record", "status": "cancelled"}))
    one = warren.enqueue("test-record", {}, delay_seconds=3600)
    warren.submit([{"type": "test-record", "payload": {}, "delaySeconds": 3600}] * 2)

    warren.cancel(one.id)
    warren.cancel_where({"status": "pending", "type": "test-record"})

    assert grown() == [3]


def test_run_time_is_the_handler_s_time(warren: Warren, worker):
    grown = counting(("warren_job_duration_seconds_sum", {"type": "test-record"}))
    job = warren.enqueue("test-record", {"seconds": 0.5})
    final(warren, job.id, "completed")

    [seconds] = grown()
    assert 0.5 <= seconds < 10


def test_wait_time_runs_from_when_the_job_was_due(warren: Warren, start_worker):
    """One worker thread: the second job waits while the first runs for 1.5 s."""
    start_worker(threads=1)
    labels = {"type": "test-record"}
    grown = counting(
        ("warren_job_wait_seconds_sum", labels),
        ("warren_job_wait_seconds_bucket", {**labels, "le": "1.0"}),
        ("warren_job_wait_seconds_count", labels),
    )
    first = warren.enqueue("test-record", {"seconds": 1.5})
    second = warren.enqueue("test-record", {})
    final(warren, first.id, "completed")
    final(warren, second.id, "completed")

    waited, within_a_second, count = grown()
    assert count == 2
    assert within_a_second <= 1  # the second waited for the first
    assert waited >= 1.4


# -- the multiprocess directory ---------------------------------------------------------------


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_deployment_s_last_run_is_cleaned_only_when_none_of_its_writers_lives(tmp_path: Path):
    stale = [tmp_path / f"counter_{dead_pid()}.db", tmp_path / f"histogram_{dead_pid()}.db"]
    for path in stale:
        path.write_bytes(b"old counts")

    assert metrics.clean_if_idle(tmp_path) == 2
    assert list(tmp_path.iterdir()) == []

    live = tmp_path / f"counter_{os.getpid()}.db"  # a process of the deployment still runs
    for path in (*stale, live):
        path.write_bytes(b"counts")
    assert metrics.clean_if_idle(tmp_path) == 0
    assert sorted(tmp_path.iterdir()) == sorted([*stale, live])


def test_the_user_s_directory_is_used_as_it_is(tmp_path: Path, monkeypatch):
    mine = tmp_path / "mine"
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(mine))
    mine.mkdir()
    (mine / f"counter_{dead_pid()}.db").write_bytes(b"kept")

    assert metrics.multiprocess_directory("warren") == (mine, False)
    assert len(list(mine.iterdir())) == 1


def test_without_one_each_queue_prefix_gets_its_own(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")  # so that the test's setting is undone
    monkeypatch.delenv(metrics.MULTIPROC_ENV)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    directory, chosen = metrics.multiprocess_directory("shop")

    assert chosen and directory.is_dir()
    assert directory.name == "shop" and directory.is_relative_to(tmp_path)
    assert os.environ[metrics.MULTIPROC_ENV] == str(directory)
    assert metrics.multiprocess_directory("shop")[0] == directory
