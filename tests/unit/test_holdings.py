"""service.holdings: what a worker holds, and how the heartbeat stops a job through it."""

import threading
import time
import uuid

import pytest

from service.errors import JobCancelled, LeaseLost
from service.holdings import Holdings
from service.registry import RunningJob
from service.store.attempts import Claim


def claim(attempt_id: int) -> Claim:
    return Claim(
        job_id=uuid.uuid4(),
        attempt_id=attempt_id,
        number=1,
        max_attempts=3,
        type="t",
        priority=5,
        timeout_seconds=60,
        retry=None,
        life=1,
    )


def test_a_held_job_waits_until_its_thread_takes_it() -> None:
    holdings = Holdings()
    holdings.hold([claim(1), claim(2)])
    assert sorted(holdings.waiting()) == [1, 2]
    assert holdings.doomed(1) is None

    holdings.unwait(1)
    assert sorted(holdings.waiting()) == [2]
    assert holdings.doomed(1) is LeaseLost  # no longer held: it must not start


def test_letting_go_returns_only_the_claims_no_thread_took() -> None:
    holdings = Holdings()
    first, second = claim(1), claim(2)
    holdings.hold([first, second])
    holdings.unwait(1)
    assert holdings.let_go([first, second]) == [second]
    assert holdings.waiting() == {}


def test_a_cancel_dooms_a_waiting_job_but_never_overrides_a_lost_lease() -> None:
    holdings = Holdings()
    holdings.hold([claim(1), claim(2)])
    holdings.doom(1, JobCancelled)
    holdings.doom(2, LeaseLost)
    holdings.doom(2, JobCancelled)
    holdings.doom(3, JobCancelled)  # not held: nothing to doom
    assert holdings.doomed(1) is JobCancelled
    assert holdings.doomed(2) is LeaseLost


def test_an_interrupt_reaches_the_running_thread_once_and_sets_its_cancel_flag() -> None:
    holdings = Holdings()
    job = RunningJob(id="job-1", attempt=1, max_attempts=1)
    started, raised = threading.Event(), []

    def run() -> None:
        holdings.run(7, job)
        started.set()
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                time.sleep(0.001)
        except JobCancelled as exc:
            raised.append(exc)
        finally:
            holdings.done(7)

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(5)
    holdings.interrupt(7)
    holdings.interrupt(7)  # a second interrupt of the same attempt is not raised again
    thread.join(5)
    assert not thread.is_alive()
    assert len(raised) == 1
    assert job.is_cancelled()
    assert holdings.running() == {}


@pytest.mark.parametrize("reason", [JobCancelled, LeaseLost])
def test_a_job_that_ended_is_not_interrupted(reason: type[BaseException]) -> None:
    holdings = Holdings()
    job = RunningJob(id="job-1", attempt=1, max_attempts=1)
    holdings.run(7, job)
    holdings.done(7)
    holdings.interrupt(7, reason)
    assert not job.is_cancelled()
