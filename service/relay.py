"""Publishing freshly stored jobs off the request path: the API's relay.

The jobs table is the outbox: once a job's row is committed the job is accepted, and the API
can answer. The relay, two threads of each API process, then publishes what the requests
stored, as many jobs as are waiting per AMQP transaction, and marks them published, as many as
are waiting per transaction. Under load that is one RabbitMQ round trip and one transaction for
many requests instead of one each, and the marks of one batch overlap the publishing of the
next.

Both threads are paced: a batch starts at once after a quiet spell, but no sooner than
`publish_interval` (20 ms) after the previous publishing transaction, or `mark_interval`
(200 ms) after the previous marks. A job therefore waits at most 20 ms in the relay, and at a
steady trickle of requests the relay's round trips, and the GIL they hold, stay off the
requests' path; without pacing each request cost one publish and one mark of its own.

Nothing is lost if a publish fails or the process dies first: the rows stay unpublished, and
the scheduler publishes them once they look stranded (`stranded_after_seconds`). A mark that
does not land costs one duplicate message, which a worker's claim ignores.
"""

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service.batches import take_batch
from service.broker import Dispatch, Publisher
from service.store import jobs

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_REQUESTS_PER_BATCH = 100
MAX_WAITING_JOBS = 100_000
PUBLISH_INTERVAL = 0.02
MARK_INTERVAL = 0.2


class Relay:
    """Publishes the jobs handed to `add()` and marks them published, from threads of its own
    started on first use. `close()` publishes and marks what is still waiting, then stops.

    At most `max_waiting` jobs wait in memory: while RabbitMQ is down the relay falls behind,
    and what it is not given stays an unpublished row for the scheduler."""

    def __init__(
        self,
        engine: Engine,
        publisher: Publisher,
        max_waiting: int = MAX_WAITING_JOBS,
        publish_interval: float = PUBLISH_INTERVAL,
        mark_interval: float = MARK_INTERVAL,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.max_waiting = max_waiting
        self.publish_interval = publish_interval
        self.mark_interval = mark_interval
        self.waiting = 0
        self._due: queue.SimpleQueue[Sequence[Dispatch] | None] = queue.SimpleQueue()
        self._published: queue.SimpleQueue[list[Dispatch] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def add(self, due: Sequence[Dispatch]) -> None:
        with self._lock:
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._publish, name="warren-relay", daemon=True),
                    threading.Thread(target=self._mark, name="warren-relay-marks", daemon=True),
                ]
                for thread in self._threads:
                    thread.start()
                atexit.register(self.close)
            if self.waiting + len(due) > self.max_waiting:
                return
            self.waiting += len(due)
        self._due.put(due)

    def close(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        if threads:
            self._due.put(None)  # the publishing thread passes it on to the marking one
            for thread in threads:
                thread.join(timeout=10)

    def _publish(self) -> None:
        self._paced(self._due, self.publish_interval, self._publish_batch)
        self._published.put(None)

    def _publish_batch(self, due: list[Dispatch]) -> None:
        try:
            published = self.publisher.publish_many(due)
        except Exception:  # the thread must outlive any one batch; the scheduler covers it
            log.exception("relay: %d jobs not published; the scheduler will", len(due))
            published = []
        with self._lock:
            self.waiting -= len(due)
        if published:
            self._published.put(published)

    def _mark(self) -> None:
        self._paced(self._published, self.mark_interval, self._mark_batch)

    def _mark_batch(self, published: list[Dispatch]) -> None:
        record_published(self.engine, published)

    @staticmethod
    def _paced(
        items: "queue.SimpleQueue[Sequence[T] | None]",
        interval: float,
        handle: Callable[[list[T]], None],
    ) -> None:
        """Until the stop signal, hand what `items` holds to `handle`, the lists of many
        requests joined into one, at most once per `interval` seconds."""
        stop, next_batch = False, 0.0
        while not stop:
            batches, stop = take_batch(items, MAX_REQUESTS_PER_BATCH, next_batch)
            next_batch = time.monotonic() + interval
            joined = [item for batch in batches for item in batch]
            if joined:
                handle(joined)


def record_published(engine: Engine, published: Sequence[Dispatch]) -> None:
    """Mark jobs published at enqueue, retry or replay. A mark that fails is only logged: the
    scheduler publishes those jobs again, and a duplicate message is harmless."""
    try:
        with engine.begin() as conn:
            jobs.mark_published(conn, published)
    except sa.exc.SQLAlchemyError as exc:
        log.warning("%d jobs not marked published (%s); the scheduler will", len(published), exc)
