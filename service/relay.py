"""The relay: a thread of each `warren scheduler` that publishes what the API stored.

The jobs table is the outbox. An API server's enqueue only inserts its rows, flagged
`for_relay`: once the row is committed the job is accepted, and the API answers. Its retries
by filter and DLQ replays flag the jobs they start again the same way. The relay
looks for flagged rows in a partial index that holds only them. It takes up to 500
(`SKIP LOCKED`, so several schedulers can relay side by side), marks the due ones published
and clears their flags, publishes them in one AMQP transaction, and commits; when RabbitMQ
refuses them it rolls back, and tries again a second later.

How often it looks follows the load, as Nagle's algorithm does for small writes. After a look
that found a few jobs, the next is 20 ms later (`publish_interval`), so a job waits little;
after one that found `BUSY_BATCH` or more, 50 ms later (`BUSY_INTERVAL`), so that under load
each look takes more jobs: a look costs the relay about as much CPU as publishing twenty
jobs, whatever it holds, on the cores that serve the requests. After a second without a job
it looks every 100 ms. A look is one probe of the index, outside any transaction, and the
transaction only when the probe finds jobs; a look right after a busy one skips the probe.

Why a poll in the scheduler rather than a thread of each API process, or a NOTIFY per insert
(docs/performance.md): a relay thread in an API process held that process's GIL while the
requests waited, and a NOTIFY made each insert's commit take PostgreSQL's notification lock
and wake the listener; both lengthened the requests' tail. A poll of an index that is empty
when idle costs less than either.

A Python client publishes its own jobs right after inserting them and never sets the flag, so
the relay never publishes a job twice. What is flagged but paused, or due beyond the delay
horizon, loses its flag and is the scheduler's tick's to publish when its time comes; so is a
flagged job the tick found stranded (`stranded_after_seconds`) while no relay ran.
"""

import logging
import threading
import time

import psycopg
from sqlalchemy.engine import Connection, Engine

from service import db
from service.broker import Publisher
from service.pauses import PauseState, held_priorities
from service.settings import Settings
from service.store import publishing

log = logging.getLogger(__name__)

PUBLISH_INTERVAL = 0.02
#: How long the relay waits after a look that found at least `BUSY_BATCH` jobs.
BUSY_INTERVAL = 0.05
BUSY_BATCH = 5
#: How often the relay looks once it found nothing for `IDLE_AFTER` seconds.
IDLE_INTERVAL = 0.1
IDLE_AFTER = 1.0
#: How long the relay waits after RabbitMQ or PostgreSQL failed it.
RETRY_SECONDS = 1.0
#: Jobs per publishing transaction at most.
MAX_BATCH = 500


class Relay:
    """Publishes the jobs flagged `for_relay` until `run`'s stop signal is set."""

    def __init__(
        self,
        publisher: Publisher,
        settings: Settings,
        publish_interval: float = PUBLISH_INTERVAL,
    ) -> None:
        self.publisher = publisher
        self.settings = settings
        self.publish_interval = publish_interval
        self.engine: Engine = _relay_engine(settings)
        self.pauses = PauseState(self.engine)

    def run(self, stop: threading.Event) -> None:
        """Publish what is waiting, then look again as `pause_after` says (at once when a
        batch was full) until `stop` is set; after an outage, a second later."""
        while not stop.is_set():
            try:
                with self.engine.connect() as conn:
                    self._relay(conn, stop)
            except Exception as exc:  # an outage must not end the relay
                log.warning("relay: %s; trying again in a second", exc)
                self.publisher.reconnect()
                stop.wait(RETRY_SECONDS)
        self.publisher.close()
        self.engine.dispose()

    def _relay(self, conn: Connection, stop: threading.Event) -> None:
        found_at = time.monotonic()
        busy = False
        while not stop.is_set():
            taken = self.publish(conn, probe=not busy)
            busy = taken is not None and taken >= BUSY_BATCH
            if taken is None:
                stop.wait(RETRY_SECONDS)
                continue
            if taken:
                found_at = time.monotonic()
            if taken < MAX_BATCH:
                stop.wait(self.pause_after(taken, time.monotonic() - found_at))

    def pause_after(self, taken: int, quiet_for: float) -> float:
        """How long to wait after a look that took `taken` jobs, `quiet_for` seconds after
        the last one that found any."""
        if quiet_for > IDLE_AFTER:
            return max(IDLE_INTERVAL, self.publish_interval)
        if taken >= BUSY_BATCH:
            return max(BUSY_INTERVAL, self.publish_interval)
        return self.publish_interval

    def publish(self, conn: Connection, probe: bool = True) -> int | None:
        """Publish one batch of the jobs waiting for the relay; return how many were taken
        (published, or left to the scheduler), or None when RabbitMQ refused the batch. With
        `probe`, a look that finds nothing is one cheap statement, outside any transaction;
        without, it opens the transaction at once, as a look right after a busy one should."""
        if probe and not publishing.any_for_relay(conn):
            return 0
        paused = self.pauses.current()
        with conn.connection.driver_connection.transaction() as transaction:
            due, taken = publishing.relaying(
                conn,
                self.settings.delay_horizon_seconds,
                MAX_BATCH,
                held_types=sorted(paused.types),
                held_priorities=held_priorities(paused.tiers),
            )
            if len(self.publisher.publish_many(due)) < len(due):
                # The marks and flags go: the next batch tries again.
                raise psycopg.Rollback(transaction)
            return taken
        return None  # rolled back


def _relay_engine(settings: Settings) -> Engine:
    """The relay's own connection, in autocommit: an idle look is one statement, and a batch
    is an explicit transaction. It plans with sequential scans off: its statements find rows
    by key or in the partial index of flagged rows, and a table filled in a burst must not be
    planned from statistics that say it is empty."""
    return db.make_engine(
        settings,
        isolation_level="AUTOCOMMIT",
        pool_reset_on_return=None,
        pool_size=1,
        max_overflow=1,
        connect_args={"options": "-c enable_seqscan=off"},
    )
