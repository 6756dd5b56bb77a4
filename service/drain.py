"""The scheduler's dead-letter drain: messages move from the `.XQ` queues into `dead_letters`.

A message lands in `<queue>.XQ` when its job failed for good (the worker nacks it) or when no
worker could process it at all. The drain stores each one (`store.dead_letters.record`) and acks it;
only a message of its job's current life may describe or change the job.
"""

import base64
import contextlib
import json
import logging
import uuid
from datetime import datetime
from typing import Any

import pika
from dramatiq import Message
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.errors import DecodeError
from pika.adapters.blocking_connection import BlockingChannel
from sqlalchemy.engine import Connection, Engine

from service import metrics
from service.broker import PublishErrors, life_of, pika_parameters, queue_families, queue_names
from service.models import Job, JobStatus
from service.settings import Settings
from service.store import jobs
from service.store.dead_letters import record

log = logging.getLogger(__name__)


UNDELIVERABLE = "Undeliverable"

#: The drain's connection, as RabbitMQ's management UI names it (after the queue prefix).
DRAIN = "dead-letter drain"


def _settle(conn: Connection, message: Message, queue: str, x_death: Any) -> bool:
    """Record a drained, decodable message, and fail its job if no worker could run it.
    Returns whether the message was recorded."""
    try:
        job_id: uuid.UUID | None = uuid.UUID(message.message_id)
    except ValueError:
        job_id = None
    job = jobs.locked(conn, job_id) if job_id is not None else None
    if job is not None and not _speaks_for(message, job):
        log.info(
            "dead letter of job %s (life %s) dropped: the job is %s in life %d",
            job.id,
            life_of(message),
            job.status,
            job.life,
        )
        return False
    if job is not None and job.status == JobStatus.FAILED and job.error:
        error = job.error
    else:
        error = {
            "type": UNDELIVERABLE,
            "message": f"no worker could process this message (job type {message.actor_name!r}"
            " unknown to the workers?)",
            "retryable": False,
        }
        if job is not None and jobs.fail_undeliverable(conn, job.id, job.life, error):
            metrics.undeliverable(job.type)
    record(
        conn,
        job_id=job.id if job else None,
        type=message.actor_name,
        queue=queue,
        message=message.asdict(),
        error=error,
        x_death=x_death,
    )
    return True


def _speaks_for(message: Message, job: Job) -> bool:
    """Whether a dead letter may describe or change its job: only a message of the job's
    current life, while the job failed (this is its message) or still waits (no worker could
    run it).

    A message of an earlier life (the job was retried by hand or replayed before its old
    message was drained) is dropped and leaves the job alone: that life's attempts are in the
    job's history, and the DLQ lists what is dead now. So is a duplicate of a job that ended
    well, or of one whose run is in progress and will record its own outcome."""
    return life_of(message) == job.life and job.status in (JobStatus.FAILED, JobStatus.PENDING)


class Drainer:
    """Moves messages from the `.XQ` queues into the `dead_letters` table, on one channel
    kept across ticks (opened again after a connection is lost)."""

    def __init__(self, engine: Engine, settings: Settings, broker: RabbitmqBroker) -> None:
        self.engine = engine
        self.settings = settings
        self.broker = broker
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def drain(self, limit: int = 500) -> int:
        """Drain up to `limit` dead letters per queue; returns how many were stored."""
        channel = self._open_channel()
        stored = 0
        for family in queue_families(self.settings):
            for _ in range(limit):
                method, properties, body = channel.basic_get(family.dead, auto_ack=False)
                if method is None:
                    break
                stored += self._store(family.queue, properties, body)
                channel.basic_ack(method.delivery_tag)
        return stored

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(*PublishErrors):
                connection.close()

    def _open_channel(self) -> BlockingChannel:
        """The drain's channel. A new one declares the tier queues first (as every worker
        does, with the same arguments), so a scheduler that starts before any worker finds
        its `.XQ` queues instead of the broker closing the channel over a missing queue."""
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self.close()
        for name in queue_names(self.settings):
            self.broker.declare_queue(name, ensure=True)
        self._connection = pika.BlockingConnection(pika_parameters(self.settings, DRAIN))
        self._channel = self._connection.channel()
        return self._channel

    def _store(self, queue: str, properties: pika.BasicProperties, body: bytes) -> bool:
        x_death = _jsonable((properties.headers or {}).get("x-death"))
        with self.engine.begin() as conn:
            try:
                message = Message.decode(body)
            except DecodeError as exc:
                record(
                    conn,
                    job_id=None,
                    type=None,
                    queue=queue,
                    message={"raw": base64.b64encode(body).decode()},
                    error={
                        "type": "UndecodableMessage",
                        "message": f"the message body could not be decoded: {exc.error}",
                        "retryable": False,
                    },
                    x_death=x_death,
                )
                return True
            return _settle(conn, message, queue, x_death)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_plain)) if value is not None else None


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
