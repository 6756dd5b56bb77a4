"""The gauges of `GET /metrics`, read when Prometheus scrapes: how many jobs are in each
status, how deep each RabbitMQ queue is, how big the DLQ is, and per priority tier how many
jobs are ready, scheduled and running and how long the oldest ready job has waited.

Read, never written: the counts by status come from the kept counts (`store.counts`), the
tiers from one query over the `pending` and `processing` rows (see `_TIERS`), the DLQ size
from one index-only count. A scrape reads at most once per `ttl` seconds per process, so
scraping in a loop cannot load PostgreSQL or RabbitMQ.
"""

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Connection, Engine

from service.broker import TIER_PRIORITIES, TIERS
from service.brokerview import BrokerView
from service.models import STATUSES
from service.store import counts, pauses
from service.store.sql import DUE_AT, PENDING, PROCESSING


@dataclass(frozen=True)
class Tier:
    """What waits and runs in one priority tier. A job is ready when it is pending and due,
    scheduled when it is pending and due later (a delay, a schedule, a retry's backoff)."""

    ready: int = 0
    scheduled: int = 0
    running: int = 0
    oldest_ready_seconds: float = 0.0


# One pass over the rows a backlog holds, through the partial index of pending jobs by
# priority and due time (migration 0011) and the lease index of processing ones: never over
# the finished jobs, however many are kept. The oldest ready job of each priority is the first
# entry of its range in that index.
_TIERS = sa.text(
    f"""
    WITH pending AS (
        SELECT priority, {DUE_AT} <= now() AS ready, count(*) AS n FROM jobs
         WHERE status = {PENDING} GROUP BY 1, 2
    ), oldest AS (
        SELECT p.priority, (SELECT min({DUE_AT}) FROM jobs
                             WHERE status = {PENDING} AND priority = p.priority) AS due
          FROM generate_series(1, 10) AS p(priority)
    ), running AS (
        SELECT priority, count(*) AS n FROM jobs WHERE status = {PROCESSING} GROUP BY 1
    )
    SELECT 'waiting', priority, ready, n, NULL FROM pending
    UNION ALL
    SELECT 'oldest', priority, NULL, NULL, extract(epoch FROM now() - due) FROM oldest
     WHERE due IS NOT NULL
    UNION ALL
    SELECT 'running', priority, NULL, n, NULL FROM running
    """
)

_DEAD_LETTERS = sa.text("SELECT count(*) FROM dead_letters")


def tiers(conn: Connection) -> dict[str, Tier]:
    """Every tier, `high` first, with its ready, scheduled and running jobs."""
    found = {tier: {"ready": 0, "scheduled": 0, "running": 0, "oldest": 0.0} for tier in TIERS}
    for kind, priority, ready, n, age in conn.execute(_TIERS):
        tier = found[_tier_of(priority)]
        if kind == "waiting":
            tier["ready" if ready else "scheduled"] += n
        elif kind == "running":
            tier["running"] += n
        else:  # a negative age: the first job of this priority is not due yet
            tier["oldest"] = max(tier["oldest"], float(age))
    return {
        name: Tier(t["ready"], t["scheduled"], t["running"], t["oldest"])
        for name, t in found.items()
    }


def _tier_of(priority: int) -> str:
    return next(t for t, (low, high) in TIER_PRIORITIES.items() if low <= priority <= high)


@dataclass(frozen=True)
class Reading:
    """Everything the gauges show, read at one moment."""

    by_type: dict[str, dict[str, int]]
    tiers: dict[str, Tier]
    dead_letters: int
    queues: dict[str, dict[str, int]]
    database_up: bool
    paused: pauses.Paused = field(default_factory=pauses.Paused)


class JobGauges(Collector):
    """A prometheus-client collector of Warren's gauges; register it on the registry that
    `GET /metrics` renders."""

    def __init__(self, engine: Engine, broker_view: BrokerView, ttl: float = 1.0) -> None:
        self.engine = engine
        self.broker_view = broker_view
        self.ttl = ttl
        self._lock = threading.Lock()
        self._last: tuple[float, Reading] | None = None

    def read(self) -> Reading:
        """The current reading: at most one per `ttl` seconds reaches the database."""
        with self._lock:
            now = time.monotonic()
            if self._last is None or now - self._last[0] >= self.ttl:
                self._last = (now, self._read())
            return self._last[1]

    def _read(self) -> Reading:
        queues = self.broker_view.depths()
        try:
            with self.engine.connect() as conn:
                by_type = counts.read(conn)
                per_tier = tiers(conn)
                dead = conn.scalar(_DEAD_LETTERS) or 0
                paused = pauses.every(conn)
        except sa.exc.OperationalError:
            return Reading({}, {}, 0, queues, False)
        return Reading(by_type, per_tier, dead, queues, True, paused)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        reading = self.read()
        up = GaugeMetricFamily(
            "warren_database_up", "1 when this scrape could read PostgreSQL, else 0."
        )
        up.add_metric([], 1 if reading.database_up else 0)
        yield up
        yield from _job_gauges(reading)
        yield from _queue_gauges(reading)


#: Each field of `Tier` as a gauge: its name and help.
_TIER_GAUGES = {
    "ready": ("warren_jobs_ready", "Pending jobs that are due, by tier."),
    "scheduled": (
        "warren_jobs_scheduled",
        "Pending jobs due later (delayed, scheduled, or waiting for a retry), by tier.",
    ),
    "running": ("warren_jobs_running", "Jobs a worker is running, by tier."),
    "oldest_ready_seconds": (
        "warren_oldest_ready_job_age_seconds",
        "How long the oldest ready job of each tier has been due; 0 when none is.",
    ),
}


def _job_gauges(reading: Reading) -> Iterator[GaugeMetricFamily]:
    if not reading.database_up:
        return
    jobs = GaugeMetricFamily("warren_jobs", "Jobs by type and status.", labels=["type", "status"])
    for name, per_status in sorted(reading.by_type.items()):
        for status in STATUSES:
            jobs.add_metric([name, status], per_status.get(status, 0))
    yield jobs
    families = {
        attribute: GaugeMetricFamily(name, documentation, labels=["tier"])
        for attribute, (name, documentation) in _TIER_GAUGES.items()
    }
    for name, tier in reading.tiers.items():
        for attribute, family in families.items():
            family.add_metric([name], getattr(tier, attribute))
    yield from families.values()
    dead = GaugeMetricFamily("warren_dead_letters", "Dead letters in the DLQ (GET /dlq).")
    dead.add_metric([], reading.dead_letters)
    yield dead
    yield from _paused_gauges(reading)


def _paused_gauges(reading: Reading) -> Iterator[GaugeMetricFamily]:
    """1 for each paused tier and job type: its ready jobs wait on purpose, which an alert
    on their age can leave out (`... unless on (tier) warren_tier_paused == 1`)."""
    tiers = GaugeMetricFamily(
        "warren_tier_paused", "1 while the tier is paused, else 0.", labels=["tier"]
    )
    for tier in TIERS:
        tiers.add_metric([tier], 1 if tier in reading.paused.tiers else 0)
    yield tiers
    types = GaugeMetricFamily(
        "warren_type_paused", "1 while the job type is paused, else 0.", labels=["type"]
    )
    for name in sorted({*reading.by_type, *reading.paused.types}):
        types.add_metric([name], 1 if name in reading.paused.types else 0)
    yield types


def _queue_gauges(reading: Reading) -> Iterator[GaugeMetricFamily]:
    messages = GaugeMetricFamily(
        "warren_queue_messages",
        "Messages in each RabbitMQ queue of the tiers, their delay (.DQ) and dead-letter (.XQ)"
        " queues, as RabbitMQ reports them; absent when RabbitMQ is unreachable.",
        labels=["queue"],
    )
    consumers = GaugeMetricFamily(
        "warren_queue_consumers", "Consumers of each RabbitMQ queue.", labels=["queue"]
    )
    for queue, depth in reading.queues.items():
        messages.add_metric([queue], depth["messages"])
        consumers.add_metric([queue], depth["consumers"])
    yield messages
    yield consumers
