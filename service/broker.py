"""RabbitMQ through Dramatiq: the broker, the three priority-tier queues, and publishing jobs.

Every actor is declared on the normal tier; a job's message goes to the tier of its priority
with `message.copy(queue_name=...)`. All three tiers are declared in every process.
"""

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pika
from dramatiq import Message, Middleware
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import current_millis, dq_name, xq_name
from dramatiq.errors import BrokerConnectionError
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from service import coalesce, logs
from service.acks import Broker
from service.models import Job
from service.settings import Settings

log = logging.getLogger(__name__)

TIERS = ("high", "normal", "low")

_PERSISTENT = pika.BasicProperties(delivery_mode=2)

#: What a publish raises when RabbitMQ cannot take the message. pika raises its connection
#: workflow's own errors, which are not `AMQPError`s, when a server takes the TCP connection
#: but never finishes the AMQP handshake.
PublishErrors = (
    BrokerConnectionError,
    pika.exceptions.AMQPError,
    AMQPConnectorException,
    OSError,
)

# Fail fast when RabbitMQ is away: an enqueue must answer, not hang, during an outage.
_CONNECTION_DEFAULTS = {
    "connection_attempts": "1",
    "socket_timeout": "3",
    "stack_timeout": "5",
    "blocked_connection_timeout": "10",
    "heartbeat": "30",
}


TIER_PRIORITIES = {"high": (8, 10), "normal": (4, 7), "low": (1, 3)}


def tier_of(priority: int) -> str:
    """Priorities 8-10 run on `high`, 4-7 on `normal`, 1-3 on `low`."""
    return next(tier for tier, (low, high) in TIER_PRIORITIES.items() if low <= priority <= high)


def queue_name(settings: Settings, tier: str) -> str:
    return f"{settings.queue_prefix}.{tier}"


def queue_names(settings: Settings) -> list[str]:
    return [queue_name(settings, tier) for tier in TIERS]


class QueueFamily(NamedTuple):
    """A tier's queues, named as Dramatiq names them: the queue, its delay queue (`.DQ`, where
    delayed messages wait for their `eta`) and its dead-letter queue (`.XQ`)."""

    queue: str
    delayed: str
    dead: str

    @classmethod
    def of(cls, queue: str) -> "QueueFamily":
        """The family of the queue named `queue`."""
        return cls(queue, dq_name(queue), xq_name(queue))


def queue_family(settings: Settings, tier: str) -> QueueFamily:
    return QueueFamily.of(queue_name(settings, tier))


def queue_families(settings: Settings) -> list[QueueFamily]:
    """The three tiers' families, `high` first."""
    return [queue_family(settings, tier) for tier in TIERS]


def connection_url(url: str) -> str:
    """`url` with Warren's connection defaults added where the URL sets none."""
    parts = urlsplit(url)
    query = {**_CONNECTION_DEFAULTS, **dict(parse_qsl(parts.query))}
    return urlunsplit(parts._replace(query=urlencode(query)))


def build_broker(settings: Settings, middleware: Iterable[Middleware] = ()) -> RabbitmqBroker:
    """A RabbitMQ broker with publisher confirms and the three tier queues declared. Its
    process's pika connections coalesce their writes (`service.coalesce`)."""
    logging.getLogger("pika").setLevel(logging.WARNING)
    logging.getLogger("pika.adapters").setLevel(logs.PIKA_ADAPTERS_LEVEL)
    coalesce.install()
    broker = Broker(
        url=connection_url(settings.broker_url),
        confirm_delivery=True,
        middleware=list(middleware),
    )
    for name in queue_names(settings):
        broker.declare_queue(name)
    return broker


def pika_parameters(settings: Settings, purpose: str | None = None) -> pika.URLParameters:
    """Connection parameters; `purpose` names the connection in RabbitMQ's management UI."""
    parameters = pika.URLParameters(connection_url(settings.broker_url))
    if purpose is not None:
        parameters.client_properties = {
            "connection_name": f"warren {settings.queue_prefix}: {purpose}"
        }
    return parameters


@dataclass(frozen=True)
class Dispatch:
    """What publishing a job needs to know about it. `life` and `attempts` say which run of
    the job the message is for: the life travels in the message and fences what the message
    can change; both fence the mark that records the message as published."""

    id: uuid.UUID
    type: str
    payload: dict[str, Any]
    priority: int
    timeout_seconds: int
    due_at: datetime | None = None
    life: int = 1
    attempts: int = 0


#: Publishes jobs and marks them published; what fails stays for the scheduler to publish
#: (`Warren.publish`, handed to the facades and verbs that start or restart jobs).
Publish = Callable[[list[Dispatch]], None]


def dispatch_of(job: Job) -> Dispatch:
    """How to publish a stored job: delayed until its retry time or schedule."""
    return Dispatch(
        id=job.id,
        type=job.type,
        payload=job.payload,
        priority=job.priority,
        timeout_seconds=job.timeout_seconds,
        due_at=job.next_attempt_at or job.scheduled_at,
        life=job.life,
        attempts=job.attempts,
    )


def dispatch_of_row(row: Mapping[str, Any]) -> Dispatch:
    """How to publish a job row just built for insertion (`enqueue.build_row`): in its first
    life, with no attempt yet, delayed until its schedule."""
    return Dispatch(
        id=row["id"],
        type=row["type"],
        payload=row["payload"],
        priority=row["priority"],
        timeout_seconds=row["timeout_seconds"],
        due_at=row.get("scheduled_at"),
    )


def life_of(message: Message) -> int:
    """The life of its job a message was published for. Messages published before lives
    existed carry none: every job was then in its first life."""
    life = message.options.get("life", 1)
    return life if isinstance(life, int) and not isinstance(life, bool) else 0


class Publisher:
    """Turns jobs into Dramatiq messages and hands them to RabbitMQ with confirms."""

    def __init__(self, broker: RabbitmqBroker, settings: Settings) -> None:
        self.broker = broker
        self.settings = settings
        self._local = threading.local()

    def message(self, job: Dispatch) -> Message:
        return Message(
            queue_name=queue_name(self.settings, tier_of(job.priority)),
            actor_name=job.type,
            args=(),
            kwargs=job.payload,
            options={"time_limit": job.timeout_seconds * 1000, "life": job.life},
            message_id=str(job.id),
        )

    def publish(self, job: Dispatch) -> None:
        """Publish one job, delayed until `due_at`. Raises the broker's error on failure."""
        delay = None
        if job.due_at is not None:
            wait_ms = int((job.due_at - datetime.now(UTC)).total_seconds() * 1000)
            delay = wait_ms if wait_ms > 0 else None
        self.broker.enqueue(self.message(job), delay=delay)

    def publish_many(self, jobs: Iterable[Dispatch]) -> list[Dispatch]:
        """Publish jobs in AMQP transactions of up to 1,000 messages: one round trip for the
        batch instead of one confirm per message, and RabbitMQ takes all of a transaction or
        none. Returns the jobs published; on failure the rest stay unpublished rows, which the
        scheduler publishes later."""
        jobs = list(jobs)
        published: list[Dispatch] = []
        for start in range(0, len(jobs), 1000):
            batch = jobs[start : start + 1000]
            if not self._publish_batch(batch):
                break
            published.extend(batch)
        return published

    def _publish_batch(self, jobs: list[Dispatch]) -> bool:
        for attempt in (1, 2):  # a connection idle past its heartbeat is closed: retry once
            try:
                channel = self._batch_channel()
                for job in jobs:
                    routing_key, body = self._encoded(job)
                    # The blocking channel flushes the socket after every message (three
                    # frames, a poll and three sends each); its underlying channel only queues
                    # the frames, and tx_commit flushes them all in a few large writes.
                    channel._impl.basic_publish("", routing_key, body, _PERSISTENT)
                channel.tx_commit()
                return True
            except PublishErrors as exc:
                self._drop_batch_channel()
                if attempt == 2:
                    log.warning("publishing failed, the scheduler will retry: %s", exc)
        return False

    def _encoded(self, job: Dispatch) -> tuple[str, bytes]:
        """Where and what to publish, as Dramatiq's broker would: delayed messages go to the
        queue's `.DQ` with an `eta`."""
        message = self.message(job)
        wait_ms = 0
        if job.due_at is not None:
            wait_ms = int((job.due_at - datetime.now(UTC)).total_seconds() * 1000)
        if wait_ms > 0:
            delayed = dq_name(message.queue_name)
            message = message.copy(queue_name=delayed, options={"eta": current_millis() + wait_ms})
        return message.queue_name, message.encode()

    def _batch_channel(self):
        channel = getattr(self._local, "channel", None)
        if channel is None or not channel.is_open:
            for name in queue_names(self.settings):
                self.broker.declare_queue(name, ensure=True)
            connection = pika.BlockingConnection(pika_parameters(self.settings))
            channel = connection.channel()
            channel.tx_select()
            self._local.connection, self._local.channel = connection, channel
        return channel

    def _drop_batch_channel(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = self._local.channel = None
        if connection is not None and connection.is_open:
            with contextlib.suppress(*PublishErrors):
                connection.close()

    def reconnect(self) -> None:
        """Drop this thread's connections, which an outage may have closed under it; the
        next use opens new ones."""
        self._drop_batch_channel()
        with contextlib.suppress(*PublishErrors):
            del self.broker.connection

    def close(self) -> None:
        """Close this thread's batch connection and the broker's connections."""
        self._drop_batch_channel()
        self.broker.close()

    def redeliver(self, message: Message, delay_ms: int) -> None:
        """Put `message` back on its queue to arrive again in `delay_ms` milliseconds."""
        clean = message.copy(options={"eta": None})
        clean.options.pop("eta", None)
        self.broker.enqueue(clean, delay=max(delay_ms, 1))
