"""A worker process's heartbeat: the thread that says the worker is alive, renews the leases
of the jobs it holds and stops the ones that were cancelled or taken over."""

import logging
import threading
import time
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from service import logs
from service.db import UNREACHABLE
from service.errors import JobCancelled, LeaseLost
from service.holdings import Holdings
from service.registry import RunningJob
from service.settings import Settings
from service.store import attempts, processes

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Says this worker is alive, renews the leases of its running jobs and interrupts
    cancelled ones, in one transaction a beat.

    A job whose lease could not be renewed for most of its length (PostgreSQL unreachable), or
    that another worker took over, is interrupted with `LeaseLost`: by the time its lease runs
    out, it has stopped, so a takeover never runs it twice at once."""

    def __init__(
        self, holdings: Holdings, engine: Engine, settings: Settings, worker_name: str
    ) -> None:
        super().__init__(name="warren-heartbeat", daemon=True)
        self.holdings = holdings
        self.engine = engine
        self.worker_name = worker_name
        self.lease = settings.lease_seconds
        self.interval = settings.heartbeat_seconds
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        self.beat({})
        while not self._stop_event.wait(self.interval):
            try:
                self.beat(self.holdings.running())
            except Exception:  # the leases of every job here depend on the next beat
                log.exception("heartbeat failed; beating again in %.1f s", self.interval)
        self.leave()

    def _write_progress(self, conn: Connection, reports: list[tuple[int, Any]]) -> None:
        """Write the reports in a savepoint: one PostgreSQL refuses is dropped, and the
        beat's renewals stand."""
        if not reports:
            return
        try:
            with conn.begin_nested():
                attempts.write_progress(conn, reports)
        except UNREACHABLE:
            raise
        except DBAPIError as exc:
            log.error("heartbeat: progress not written (%s)", exc.orig)

    def _about(self, job: RunningJob) -> dict[str, Any]:
        return logs.about(job.id, job.type, job.attempt, self.worker_name)

    def leave(self) -> None:
        """This worker stops: it is no longer listed among the living (`store.processes`)."""
        try:
            with self.engine.begin() as conn:
                processes.leave(conn, "worker", self.worker_name)
        except UNREACHABLE:
            pass  # the row stops moving and ages out

    def beat(self, running: dict[int, tuple[int, RunningJob]]) -> None:
        waiting = self.holdings.waiting()
        reports = [
            (attempt_id, job.progress)
            for attempt_id, (_, job) in running.items()
            if not job.progress_written and job.progress is not None
        ]
        try:
            with self.engine.begin() as conn:
                processes.beat(conn, "worker", self.worker_name)
                held = attempts.renew_leases(conn, [*running, *waiting], self.lease)
                # Only to rows renewed here, which this transaction holds: never a wait.
                reports = [report for report in reports if held.get(report[0]) is not None]
                self._write_progress(conn, reports)
            for attempt_id, _ in reports:
                running[attempt_id][1].progress_written = True
        except UNREACHABLE as exc:
            if running:
                log.warning("heartbeat: database unavailable (%s)", exc.__class__.__name__)
            for attempt_id, (_, job) in running.items():
                if time.monotonic() - job.renewed_at > self.lease * 0.75:
                    log.error(
                        "job %s: lease not renewed in time; stopping it",
                        job.id,
                        extra=self._about(job),
                    )
                    self.holdings.interrupt(attempt_id, LeaseLost)
            for attempt_id, claimed in waiting.items():
                if time.monotonic() - claimed.renewed_at > self.lease * 0.75:
                    self.holdings.doom(attempt_id, LeaseLost)
            return
        now = time.monotonic()  # an attempt answered None is busy: renewed next beat
        for attempt_id, claimed in waiting.items():
            if attempt_id not in held:
                self.holdings.doom(attempt_id, LeaseLost)
            elif held[attempt_id]:
                self.holdings.doom(attempt_id, JobCancelled)
            elif held[attempt_id] is False:
                claimed.renewed_at = now
        for attempt_id, (_, job) in running.items():
            if attempt_id not in held:
                log.error(
                    "job %s: taken over by another worker; stopping it",
                    job.id,
                    extra=self._about(job),
                )
                self.holdings.interrupt(attempt_id, LeaseLost)
            elif held[attempt_id]:
                self.holdings.interrupt(attempt_id, JobCancelled)
            elif held[attempt_id] is False:
                job.renewed_at = now
