"""The scheduler (`warren scheduler`): its loop makes sure every pending job has a message.

Beside the loop runs the relay (`service.relay`), which publishes the jobs the API stores
moments after they are stored. Each tick, in short transactions that lock rows with `SKIP LOCKED`
(so several schedulers can run side by side):

1. release jobs whose worker died: a `processing` job whose lease expired is recorded as lost and
   returned to `pending` (or `failed` when its attempts are spent);
2. publish pending jobs that have no message in RabbitMQ and are due within the delay horizon:
   enqueues whose publish failed, the API's while no relay ran, far-future schedules and long
   retries coming due, released jobs, manual retries, jobs parked while their tier or type
   was paused; what is paused now waits (`service.pauses`);
3. drain the `.XQ` dead-letter queues into the `dead_letters` table;
4. fold the job count deltas into the kept counts that `GET /stats` reads;
5. now and then (every quarter of `republish_after_seconds`, at most every 5 minutes), publish
   again the jobs whose message was lost: pending, published and due more than
   `republish_after_seconds` ago, in a tier whose queue and delay queue are empty. A duplicate
   of a message that was not lost after all is harmless: a worker's claim ignores it;
6. fire the cron schedules whose next slot has come (`service.schedules`), then publish their
   jobs;
7. every `prune_interval_seconds`, delete finished jobs and dead letters past their retention
   (`service.retention`), at most a few batches of 1,000 per kind per tick.
"""

import logging
import os
import socket
import threading
import time
from dataclasses import astuple, dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from service import deadletters, firing, metrics, retention, schedules
from service.broker import TIER_PRIORITIES, Publisher, build_broker, queue_name
from service.drain import Drainer
from service.models import JobStatus
from service.pauses import held_priorities
from service.registry import Registry
from service.registry import registry as default_registry
from service.relay import Relay
from service.settings import Settings
from service.store import attempts, counts, processes, publishing
from service.store import pauses as pause_store

log = logging.getLogger(__name__)

#: Batches of each kind a tick prunes at most; the rest waits for the next prune.
PRUNE_BATCHES = 5
#: A process not seen for this long died without a word: its row goes.
GONE_SECONDS = 3600


@dataclass
class Tick:
    published: int = 0
    released: int = 0
    failed: int = 0
    dead_lettered: int = 0
    republished: int = 0
    pruned: int = 0
    fired: int = 0


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        publisher: Publisher,
        settings: Settings,
        registry: Registry | None = None,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.settings = settings
        self.registry = registry or default_registry.load(settings.job_modules)
        self.drainer = Drainer(engine, settings, publisher.broker)
        self._next_lost_check = 0.0
        self._next_prune = 0.0
        self._next_beat = 0.0
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def tick(self) -> Tick:
        """One pass of every step; a step that fails (an outage) does not stop the others."""
        tick = Tick()
        steps = (
            self._beat,
            self._release_expired,
            self._publish_due,
            self._drain,
            self._fold_counts,
            self._republish_lost,
            self._fire_schedules,
            self._prune,
        )
        for step in steps:
            try:
                step(tick)
            except Exception as exc:  # an outage must not end the loop
                log.warning("scheduler: %s failed: %s", step.__name__.strip("_"), exc)
                # After an outage, the next tick starts on fresh connections.
                self.drainer.close()
                self.publisher.reconnect()
        return tick

    def run(self, stop: threading.Event) -> None:
        """Start the relay, store the schedules declared in code, then tick every
        `dispatch_interval_seconds` until `stop` is set; survive outages."""
        log.info("scheduler started (every %ss)", self.settings.dispatch_interval_seconds)
        relay = Relay(Publisher(build_broker(self.settings), self.settings), self.settings)
        relaying = threading.Thread(
            target=relay.run, args=(stop,), name="warren-relay", daemon=True
        )
        relaying.start()
        try:
            with self.engine.begin() as conn:
                schedules.sync_declared(conn, self.registry, self.settings)
        except Exception as exc:  # a wrong declaration must not stop the other steps
            log.error("scheduler: schedules declared in code not stored: %s", exc)
        while not stop.is_set():
            tick = self.tick()
            if any(astuple(tick)):
                log.info(
                    "published %d, released %d, failed %d, dead-lettered %d, republished %d,"
                    " pruned %d, fired %d",
                    *astuple(tick),
                )
            stop.wait(self.settings.dispatch_interval_seconds)
        relaying.join()
        self.drainer.close()
        self._leave()

    def _beat(self, tick: Tick) -> None:
        """Say this scheduler is alive, once a heartbeat, and forget the processes that have
        not been seen for an hour (they died without a word)."""
        if time.monotonic() < self._next_beat:
            return
        self._next_beat = time.monotonic() + self.settings.heartbeat_seconds
        with self.engine.begin() as conn:
            processes.beat(conn, "scheduler", self.name)
            processes.forget_gone(conn, after=GONE_SECONDS)

    def _leave(self) -> None:
        try:
            with self.engine.begin() as conn:
                processes.leave(conn, "scheduler", self.name)
        except Exception as exc:  # the row stops moving and ages out
            log.warning("scheduler: could not sign off: %s", exc)

    def _release_expired(self, tick: Tick) -> None:
        released = []
        with self.engine.begin() as conn:
            for job_id, attempt_id in attempts.expired_leases(conn, self.settings.lease_seconds):
                taken = attempts.release_expired(conn, job_id, attempt_id)
                if taken is None:
                    continue
                released.append(taken)
                if taken.job.status == JobStatus.PENDING:
                    tick.released += 1
                elif taken.job.status == JobStatus.FAILED:
                    deadletters.record_job(conn, taken.job, self.settings)
                    tick.failed += 1
        for taken in released:  # counted once committed; a job given back unspent is no retry
            if taken.spent or taken.job.status != JobStatus.PENDING:
                metrics.settled_elsewhere(taken.job.type, JobStatus(taken.job.status))

    def _publish_due(self, tick: Tick) -> None:
        while True:
            with self.engine.begin() as conn:
                paused = pause_store.every(conn)
                due = publishing.due_unpublished(
                    conn,
                    self.settings.delay_horizon_seconds,
                    self.settings.stranded_after_seconds,
                    held_types=sorted(paused.types),
                    held_priorities=held_priorities(paused.tiers),
                )
                published = self.publisher.publish_many(due)
                publishing.mark_published(conn, published)
            tick.published += len(published)
            if len(published) < len(due) or len(due) < 500:
                return

    def _drain(self, tick: Tick) -> None:
        tick.dead_lettered += self.drainer.drain()

    def _republish_lost(self, tick: Tick) -> None:
        if time.monotonic() < self._next_lost_check:
            return
        after = self.settings.republish_after_seconds
        self._next_lost_check = time.monotonic() + min(after / 4, 300.0)
        broker = self.publisher.broker
        idle = [
            priorities
            for tier, priorities in TIER_PRIORITIES.items()
            if sum(broker.get_queue_message_counts(queue_name(self.settings, tier))[:2]) == 0
        ]
        if not idle:
            return
        with self.engine.begin() as conn:
            lost = publishing.lost_messages(conn, idle, after)
            published = self.publisher.publish_many(lost)
            publishing.mark_published(conn, published)
        if published:
            log.warning("published again %d jobs whose message was lost", len(published))
        tick.republished += len(published)

    def _fire_schedules(self, tick: Tick, now: datetime | None = None) -> None:
        more = True
        while more:  # a batch per transaction, until none is due
            with self.engine.begin() as conn:
                fired, more = firing.fire_due(conn, self.registry, self.settings, now)
            published = self.publisher.publish_many(fired)
            if published:
                with self.engine.begin() as conn:
                    publishing.mark_published(conn, published)
            tick.fired += len(fired)

    def _prune(self, tick: Tick) -> None:
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + self.settings.prune_interval_seconds
        deleted = retention.prune(self.engine, self.settings, max_batches=PRUNE_BATCHES)
        tick.pruned += sum(deleted.values())

    def _fold_counts(self, tick: Tick) -> None:
        with self.engine.begin() as conn:
            counts.fold(conn)
