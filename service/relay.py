"""Publishing freshly stored jobs off the request path: the API's relay.

The jobs table is the outbox: once a job's row is committed the job is accepted, and the API
can answer. The relay, a thread of each API process, then publishes what the requests stored,
as many jobs as are waiting per AMQP transaction, and marks them published. Under load that is
one RabbitMQ round trip and one UPDATE transaction for many requests instead of one each.

Nothing is lost if a publish fails or the process dies first: the rows stay unpublished, and
the dispatcher publishes them once they look stranded (`stranded_after_seconds`). A mark that
does not land costs one duplicate message, which a worker's claim ignores.
"""

import atexit
import logging
import queue
import threading
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service import jobs
from service.batches import take_batch
from service.broker import Dispatch, Publisher

log = logging.getLogger(__name__)

MAX_REQUESTS_PER_BATCH = 100


class Relay:
    """Publishes the jobs handed to `add()` from a thread of its own, started on first use.
    `close()` publishes what is still waiting, then stops it."""

    def __init__(self, engine: Engine, publisher: Publisher) -> None:
        self.engine = engine
        self.publisher = publisher
        self._due: queue.SimpleQueue[Sequence[Dispatch] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add(self, due: Sequence[Dispatch]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="warren-relay", daemon=True)
                self._thread.start()
                atexit.register(self.close)
        self._due.put(due)

    def close(self) -> None:
        with self._lock:
            if self._thread is not None:
                self._due.put(None)
                self._thread.join(timeout=10)
                self._thread = None

    def _run(self) -> None:
        stop = False
        while not stop:
            requests, stop = take_batch(self._due, MAX_REQUESTS_PER_BATCH)
            if requests:
                self._relay([job for due in requests for job in due])

    def _relay(self, due: list[Dispatch]) -> None:
        published = self.publisher.publish_many(due)
        if not published:
            return
        try:
            with self.engine.begin() as conn:
                jobs.mark_fresh_published(conn, published)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("%d jobs not marked published (%s); the dispatcher will", len(due), exc)
