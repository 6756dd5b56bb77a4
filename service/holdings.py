"""What a worker process holds: the jobs it claimed at delivery that wait for a thread, and
the jobs its threads run.

The lifecycle middleware fills it; the heartbeat reads it to renew their leases, and through
it stops the jobs that were cancelled or taken over: a waiting job is doomed (it will not
start), a running one is interrupted (an exception raised in its thread). One lock guards
both sets, so a job is never seen in neither while it moves from waiting to running.
"""

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from dramatiq.threading import raise_thread_exception

from service.errors import JobCancelled, LeaseLost
from service.registry import RunningJob
from service.store.attempts import Claim


@dataclass(slots=True)
class Waiting:
    """A job claimed at delivery, waiting for a thread; `doomed` says why it must not start."""

    claim: Claim
    renewed_at: float
    doomed: type[BaseException] | None = None


class Holdings:
    """The jobs of one worker process, by attempt id. Safe to use from any thread."""

    def __init__(self) -> None:
        self._waiting: dict[int, Waiting] = {}
        self._running: dict[int, tuple[int, RunningJob]] = {}
        self._interrupted: set[int] = set()
        self._lock = threading.Lock()

    # -- claimed at delivery, waiting for a thread ----------------------------------------------

    def hold(self, claims: Iterable[Claim]) -> None:
        """These jobs were claimed at delivery: they wait for a thread from now on."""
        now = time.monotonic()
        with self._lock:
            for claim in claims:
                self._waiting[claim.attempt_id] = Waiting(claim, now)

    def let_go(self, claims: Iterable[Claim]) -> list[Claim]:
        """Stop holding these claims; return those that still waited (no thread started
        them), which the caller gives back."""
        with self._lock:
            return [c for c in claims if self._waiting.pop(c.attempt_id, None) is not None]

    def waiting(self) -> dict[int, Waiting]:
        with self._lock:
            return dict(self._waiting)

    def doom(self, attempt_id: int, reason: type[BaseException]) -> None:
        """A job claimed at delivery must not start: it was cancelled (`JobCancelled`) or its
        claim is no longer this worker's (`LeaseLost`, which no later reason replaces)."""
        with self._lock:
            waiting = self._waiting.get(attempt_id)
            if waiting is not None and waiting.doomed is not LeaseLost:
                waiting.doomed = reason

    def doomed(self, attempt_id: int) -> type[BaseException] | None:
        """Why this waiting job must not start, or None; `LeaseLost` for one no longer held."""
        with self._lock:
            waiting = self._waiting.get(attempt_id)
        return waiting.doomed if waiting is not None else LeaseLost

    def unwait(self, attempt_id: int) -> None:
        """The job no longer waits: its thread starts it, or gives up on it."""
        with self._lock:
            self._waiting.pop(attempt_id, None)

    # -- running on a thread --------------------------------------------------------------------

    def run(self, attempt_id: int, job: RunningJob) -> None:
        """The calling thread runs this job from now on."""
        with self._lock:
            self._running[attempt_id] = (threading.get_ident(), job)

    def done(self, attempt_id: int) -> None:
        """The job's thread ran it to its end: it can no longer be interrupted."""
        with self._lock:
            self._running.pop(attempt_id, None)
            self._interrupted.discard(attempt_id)

    def running(self) -> dict[int, tuple[int, RunningJob]]:
        with self._lock:
            return dict(self._running)

    def interrupt(self, attempt_id: int, reason: type[BaseException] = JobCancelled) -> None:
        """Raise `reason` in the thread running this attempt, once, if it still runs."""
        with self._lock:
            entry = self._running.get(attempt_id)
            if entry is None or attempt_id in self._interrupted:
                return
            self._interrupted.add(attempt_id)
            thread_id, running = entry
            # Interrupt first: a handler that saw the flag first could be cut short mid-cleanup.
            raise_thread_exception(thread_id, reason)
            if reason is JobCancelled:
                running.cancel_requested.set()
