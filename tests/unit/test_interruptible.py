"""service.interruptible: a blocking call in a helper thread that a cancel stops at once."""

import threading
import time
from collections.abc import Iterator

import pytest

from service import interruptible
from service.errors import JobCancelled
from service.registry import RunningJob, set_current


@pytest.fixture
def job() -> Iterator[RunningJob]:
    running = RunningJob(id="job-1", attempt=1, max_attempts=1)
    set_current(running)
    yield running
    set_current(None)


def test_the_result_and_the_exception_of_the_call_come_back_as_if_called_here() -> None:
    aborted: list[bool] = []
    assert interruptible.call(lambda: 42, abort=lambda: aborted.append(True)) == 42

    def fail() -> None:
        raise ValueError("from the helper")

    with pytest.raises(ValueError, match="from the helper"):
        interruptible.call(fail, abort=lambda: aborted.append(True))
    assert aborted == []  # a call that ended by itself is not aborted


def test_a_cancel_stops_the_wait_and_aborts_the_call(job) -> None:
    """The abort is what releases the helper: here it sets the event the call waits on."""
    released = threading.Event()
    threading.Timer(0.2, job.cancel_requested.set).start()
    started = time.monotonic()

    with pytest.raises(JobCancelled):
        interruptible.call(lambda: released.wait(10), abort=released.set, poll=0.05)

    assert time.monotonic() - started < 1.0
    assert released.is_set()
