"""Test helpers: waiting with deadlines (tests poll for what a user would see, never sleep
blindly), free ports for the servers a test starts, and what a queue holds."""

import time
from collections.abc import Callable
from typing import TypeVar

import pika
import sqlalchemy as sa

from bench.harness import free_port
from service.broker import pika_parameters

__all__ = ["free_port", "wait_for"]

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


def runs(engine: sa.Engine, job_id) -> list:
    """The runs `test-record` recorded for a job: `(attempt, started_at, finished_at)`."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT attempt, started_at, finished_at FROM test_runs"
                " WHERE job_id = :j ORDER BY started_at"
            ),
            {"j": job_id},
        ).all()


def ready_messages(settings, queue: str) -> int:
    """Messages ready in `queue` (not those delivered and not yet acked), asked of RabbitMQ."""
    return _declared(settings, queue).message_count


def consumers(settings, queue: str) -> int:
    """Consumers of `queue` now, asked of RabbitMQ: a worker logs that it is ready before its
    consumer is registered, so a test that needs every worker to get messages waits for this."""
    return _declared(settings, queue).consumer_count


def _declared(settings, queue: str):
    connection = pika.BlockingConnection(pika_parameters(settings))
    try:
        return connection.channel().queue_declare(queue, passive=True).method
    finally:
        connection.close()
