"""Pausing a tier or a job type: what workers and the scheduler read, and the worker's gate.

A pause is a row of `pauses` (`service.store.pauses`), so it outlives every process. While a
tier or a type is paused:

- a worker that receives one of its jobs' messages does not start the job: `PauseGate`, a
  Dramatiq middleware ahead of the lifecycle, *parks* it (the row becomes unpublished, in a new
  life, see `store.jobs.park`) and acks the message. Jobs already running finish;
- the scheduler does not publish its unpublished rows (`held_priorities`, and the store's
  `due_unpublished`), so they wait in PostgreSQL;
- when it is resumed, the scheduler publishes the parked rows within a tick. Nothing is lost.

Workers read the pause set at most once a second (`PauseState`), so a pause takes effect
within about a second, plus the time a job already running takes to finish. A resume takes
effect at once: the statement that parks a job reads the pause itself, so a worker whose set
is a moment old runs a resumed job instead of parking it again.
"""

import logging
import threading
import time
import uuid
from typing import Any

import sqlalchemy as sa
from dramatiq import Middleware
from dramatiq.common import q_name
from dramatiq.middleware import SkipMessage
from sqlalchemy.engine import Engine

from service import logs
from service.acks import CLAIMED
from service.broker import TIER_PRIORITIES, TIERS, life_of
from service.settings import Settings
from service.store import jobs
from service.store import pauses as pause_store
from service.store.jobs import Parking
from service.store.pauses import Paused

log = logging.getLogger(__name__)

#: How long a worker trusts the pause set it read, in seconds.
REFRESH_SECONDS = 1.0


def held_priorities(tiers: frozenset[str]) -> list[int]:
    """The priorities of the jobs that run on `tiers`."""
    spans = (TIER_PRIORITIES[tier] for tier in sorted(tiers) if tier in TIER_PRIORITIES)
    return [priority for low, high in spans for priority in range(low, high + 1)]


class PauseState:
    """The pause set, read from PostgreSQL at most every `ttl` seconds, shared by a process's
    threads. While PostgreSQL cannot be read, the last set read stays (none: nothing paused;
    a worker cannot claim a job then anyway)."""

    def __init__(self, engine: Engine, ttl: float = REFRESH_SECONDS) -> None:
        self.engine = engine
        self.ttl = ttl
        self._paused = Paused()
        self._fresh_until = 0.0
        self._lock = threading.Lock()

    def current(self) -> Paused:
        if time.monotonic() < self._fresh_until:
            return self._paused
        with self._lock:
            if time.monotonic() >= self._fresh_until:
                self._refresh()
        return self._paused

    def forget(self) -> None:
        """Read the pause set again at the next `current()`: it is known to be stale."""
        self._fresh_until = 0.0

    def _refresh(self) -> None:
        try:
            with self.engine.connect() as conn:
                self._paused = pause_store.every(conn)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("pauses not read (%s); keeping the last known", exc.__class__.__name__)
        self._fresh_until = time.monotonic() + self.ttl


class PauseGate(Middleware):
    """Parks the jobs of paused tiers and types instead of starting them. Add it before the
    lifecycle middleware, so a parked job is never claimed."""

    def __init__(self, engine: Engine, settings: Settings, state: PauseState | None = None) -> None:
        self.engine = engine
        self.prefix = f"{settings.queue_prefix}."
        self.state = state or PauseState(engine)

    def tier_of(self, queue_name: str) -> str | None:
        """The tier whose queue (or delay queue) this is; None for another queue."""
        tier = q_name(queue_name).removeprefix(self.prefix)
        return tier if tier in TIERS and q_name(queue_name).startswith(self.prefix) else None

    def holds(self, message: Any) -> bool:
        """Whether a pause holds this message's job now."""
        paused = self.state.current()
        return bool(paused) and paused.holds(self.tier_of(message.queue_name), message.actor_name)

    def before_process_message(self, broker, message) -> None:
        # A job claimed at its delivery, before the pause, runs: it is already `processing`.
        if getattr(message, CLAIMED, None) is not None or not self.holds(message):
            return
        try:
            job_id = uuid.UUID(message.message_id)
        except ValueError:
            return  # not a Warren job: the lifecycle dead-letters it
        tier = self.tier_of(message.queue_name)
        try:
            with self.engine.begin() as conn:
                parking = jobs.park(conn, job_id, life_of(message), message.actor_name, tier)
        except sa.exc.SQLAlchemyError as exc:
            # The lifecycle's claim meets the same outage and defers the message; nothing is
            # acked away. Should PostgreSQL be back by then, the job runs: a pause yields to
            # never losing a job.
            log.warning(
                "job %s: paused, but not parked (%s)",
                job_id,
                exc.__class__.__name__,
                extra=logs.about(job_id, message.actor_name),
            )
            return
        if parking is Parking.NOT_HELD:
            # Resumed since this process read the pause set: the job runs now, in this life,
            # and the set is read again for the next message.
            self.state.forget()
            return
        # Not parked: the job runs, ended or moved on to a newer life. Its row, not this
        # message, says what happens next (a lost worker's job is released by the scheduler,
        # which holds it while paused).
        outcome = "paused; parked" if parking is Parking.PARKED else "paused; message dropped"
        log.info("job %s: %s", job_id, outcome, extra=logs.about(job_id, message.actor_name))
        raise SkipMessage("paused")
