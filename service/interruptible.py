"""Blocking network calls that a cancel can stop within a fraction of a second.

The worker stops a cancelled job by raising `JobCancelled` in the thread that runs it (an
asynchronous exception, see `Holdings.interrupt`); a lost lease and Dramatiq's time limit do
the same. Python delivers such an exception only between bytecodes, so a thread blocked in C,
in `recv()` waiting for an HTTP answer a server holds or for an SMTP greeting that never comes,
sees it only when the call returns: at the socket's own timeout, up to minutes later, and the
job ends as if nothing had been asked (`completed`, when the answer finally came).

So a handler runs such a conversation through `call()`: in a helper thread, while the job's
thread waits for it in short slices, between which an interrupt lands and `is_cancelled()` is
checked. When the wait ends early (a cancel, a lost lease, the time limit), `abort` is called
to make the helper's blocking call return where it can (shut its socket down) and to release
the connection, and the interrupt propagates: the job stops at once. Whatever the helper does
afterwards is discarded; it ends when its call returns, at the latest at its own timeout.
"""

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from service.errors import JobCancelled
from service.registry import is_cancelled

T = TypeVar("T")

#: How often the waiting job thread wakes: a cancel stops it within this plus the heartbeat.
POLL_SECONDS = 0.25
#: How many items `iterate()` reads ahead of its caller.
_AHEAD = 4


def call(
    work: Callable[[], T],
    abort: Callable[[], None],
    poll: float = POLL_SECONDS,
    timeout: float | None = None,
) -> T:
    """`work()`'s result, or its exception, as if called here; but a cancel or any other
    interrupt of this thread stops the wait within `poll` seconds, calls `abort()` and
    propagates (a cancel noticed through `is_cancelled()` raises `JobCancelled`). With a
    `timeout`, the wait also ends after that many seconds in all, with `TimeoutError`."""
    # A SimpleQueue is C code: an interrupt cannot land halfway through taking its lock, as it
    # could inside a threading.Condition, and leave the helper unable to hand over its outcome.
    outcome: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()

    def run() -> None:
        try:
            outcome.put((True, work()))
        except BaseException as exc:  # handed over to the waiting thread, which raises it
            outcome.put((False, exc))

    name = f"{threading.current_thread().name}-io"
    threading.Thread(target=run, name=name, daemon=True).start()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        done, value = _wait(outcome, poll, deadline)
    except BaseException:
        abort()
        raise
    if done:
        return value
    raise value


def iterate(
    items: Iterable[T], abort: Callable[[], None], poll: float = POLL_SECONDS
) -> Iterator[T]:
    """`items`, taken from a helper thread a few ahead, so that a cancel or any other
    interrupt stops a read that blocks (a stalled download) within `poll` seconds, as `call()`
    does. When the caller stops early, or is interrupted, `abort()` is called so that the
    helper's read returns, and the helper ends."""
    outcome: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
    room = threading.Semaphore(_AHEAD)
    stopped = threading.Event()
    end = object()

    def run() -> None:
        try:
            for item in items:
                while not room.acquire(timeout=poll):
                    if stopped.is_set():
                        return
                outcome.put((True, item))
            outcome.put((True, end))
        except BaseException as exc:  # handed over to the waiting thread, which raises it
            outcome.put((False, exc))

    threading.Thread(target=run, name=f"{threading.current_thread().name}-io", daemon=True).start()
    finished = False
    try:
        while True:
            done, value = _wait(outcome, poll, None)
            if not done:
                raise value
            if value is end:
                finished = True
                return
            room.release()
            yield value
    finally:
        stopped.set()
        if not finished:
            abort()


def sleep(seconds: float, poll: float = POLL_SECONDS) -> None:
    """`time.sleep(seconds)` that an interrupt ends within `poll` seconds, as `call()` does
    (`JobCancelled` for a cancel): a pause a job takes between requests, not in them."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, poll))
        if is_cancelled():
            raise JobCancelled()


def _wait(
    outcome: "queue.SimpleQueue[tuple[bool, Any]]", poll: float, deadline: float | None
) -> tuple[bool, Any]:
    while True:
        try:
            return outcome.get(timeout=poll)
        except queue.Empty:
            if is_cancelled():
                raise JobCancelled() from None
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError() from None
