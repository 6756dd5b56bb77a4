"""The dispatcher loop of `warren scheduler`: it makes sure every pending job has a message.

Each tick, in short transactions that lock rows with `SKIP LOCKED` (so several schedulers can
run side by side):

1. release jobs whose worker died: a `processing` job whose lease expired is recorded as lost and
   returned to `pending` (or `failed` when its attempts are spent);
2. publish pending jobs that have no message in RabbitMQ and are due within the delay horizon:
   enqueues whose publish failed, far-future schedules and long retries coming due, released
   jobs, manual retries;
3. drain the `.XQ` dead-letter queues into the `dead_letters` table;
4. fold the job count deltas into the kept counts that `GET /stats` reads.
"""

import logging
import threading
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from service import counts, deadletters, jobs, queries
from service.broker import Publisher, dispatch_of
from service.deadletters import Drainer
from service.models import JobStatus
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Tick:
    published: int = 0
    released: int = 0
    failed: int = 0
    dead_lettered: int = 0


class Dispatcher:
    def __init__(self, engine: Engine, publisher: Publisher, settings: Settings) -> None:
        self.engine = engine
        self.publisher = publisher
        self.settings = settings
        self.drainer = Drainer(engine, settings)

    def tick(self) -> Tick:
        """One pass of every step; a step that fails (an outage) does not stop the others."""
        tick = Tick()
        for step in (self._release_expired, self._publish_due, self._drain, self._fold_counts):
            try:
                step(tick)
            except Exception as exc:  # an outage must not end the loop
                log.warning("dispatcher: %s failed: %s", step.__name__.strip("_"), exc)
                if step == self._drain:
                    self.drainer.close()
        return tick

    def run(self, stop: threading.Event) -> None:
        """Tick every `dispatch_interval_seconds` until `stop` is set; survive outages."""
        log.info("dispatcher started (every %ss)", self.settings.dispatch_interval_seconds)
        while not stop.is_set():
            tick = self.tick()
            if tick.published or tick.released or tick.failed or tick.dead_lettered:
                log.info(
                    "published %d, released %d, failed %d, dead-lettered %d",
                    tick.published,
                    tick.released,
                    tick.failed,
                    tick.dead_lettered,
                )
            stop.wait(self.settings.dispatch_interval_seconds)
        self.drainer.close()

    def _release_expired(self, tick: Tick) -> None:
        with self.engine.begin() as conn:
            for job_id in jobs.expired_leases(conn, grace=self.settings.lease_seconds):
                status = jobs.release_expired(conn, job_id)
                if status == JobStatus.PENDING:
                    tick.released += 1
                elif status == JobStatus.FAILED:
                    deadletters.record_job(conn, queries.get(conn, job_id), self.settings)
                    tick.failed += 1

    def _publish_due(self, tick: Tick) -> None:
        while True:
            with self.engine.begin() as conn:
                due = jobs.due_unpublished(
                    conn, self.settings.delay_horizon_seconds, self.settings.stranded_after_seconds
                )
                published = self.publisher.publish_many(dispatch_of(job) for job in due)
                jobs.mark_published(conn, published)
            tick.published += len(published)
            if len(published) < len(due) or len(due) < 500:
                return

    def _drain(self, tick: Tick) -> None:
        tick.dead_lettered += self.drainer.drain()

    def _fold_counts(self, tick: Tick) -> None:
        with self.engine.begin() as conn:
            counts.fold(conn)
