"""What the dashboard's overview shows of recent activity: the processes alive, idle or busy,
and the jobs finished minute by minute."""

from datetime import UTC, datetime

import pytest

from service.errors import BadRequest
from tests.helpers import wait_for


def kinds(warren) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for process in warren.workers():
        seen.setdefault(process.kind, []).append(process.name)
    return seen


def test_an_idle_worker_and_a_scheduler_are_seen_alive_and_leave_when_stopped(
    warren, start_worker, scheduler
):
    worker = start_worker()
    scheduler()
    alive = wait_for(
        lambda: (seen := kinds(warren)).get("worker") and seen.get("scheduler") and seen,
        what="a worker and a scheduler seen",
    )
    assert len(alive["worker"]) == 1 and len(alive["scheduler"]) == 1
    (idle,) = [p for p in warren.workers() if p.kind == "worker"]
    assert idle.jobs == 0
    assert idle.started_at is not None and idle.started_at <= idle.last_heartbeat

    worker.stop()
    wait_for(lambda: "worker" not in kinds(warren), what="the stopped worker gone")


def test_a_busy_worker_shows_the_jobs_it_holds(warren, start_worker):
    start_worker(threads=2)
    warren.enqueue("test-ledger", {"seconds": 3})
    busy = wait_for(
        lambda: [p for p in warren.workers() if p.kind == "worker" and p.jobs == 1],
        what="the worker holding one job",
    )
    assert busy[0].last_heartbeat <= datetime.now(UTC)


def test_finished_jobs_are_counted_in_the_minute_they_finished(warren, worker, scheduler):
    warren.submit([{"type": "test-noop", "payload": {}}] * 4)
    warren.enqueue("test-record", {"failTimes": 1, "permanent": True})
    scheduler()

    def lately() -> tuple[int, int]:
        """Completed and failed in the last two minutes (the test may cross a minute)."""
        last = warren.per_minute()[-2:]
        return sum(m.completed for m in last), sum(m.failed for m in last)

    wait_for(lambda: lately() == (4, 1), what="4 completed and 1 failed lately")
    minutes = warren.per_minute()
    assert len(minutes) == 60
    assert 0 <= (datetime.now(UTC) - minutes[-1].start).total_seconds() < 120
    assert sum(m.completed + m.failed for m in minutes[:-2]) == 0


@pytest.mark.parametrize("minutes", [0, -5, 1441, 10**12])
def test_per_minute_reads_back_at_most_the_day_kept(warren, minutes):
    with pytest.raises(BadRequest, match="1 to 1440"):
        warren.per_minute(minutes)
