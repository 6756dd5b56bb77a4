"""The baseline of `bench.throughput`: plain Dramatiq on the same RabbitMQ, with no database.

Run as a worker with `python -m dramatiq bench.plain:setup --processes P --threads T`, with
`BENCH_PLAIN_QUEUE` (the queue to consume) and `BENCH_PLAIN_COUNT_DIR` in the environment.
The actor `plain_noop` does nothing but count itself, one byte per run in a file of its
worker process (`bench.counting`), so the benchmark knows how many ran without a shared
counter that would slow the workers down.
"""

import os
from pathlib import Path

import dramatiq
from dramatiq import Message
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bench.counting import count_run, counted
from service.broker import connection_url

ACTOR_NAME = "plain_noop"


def message(queue: str) -> Message:
    """One `plain_noop` message for `queue`, as `plain_noop.send()` would build it."""
    return Message(queue_name=queue, actor_name=ACTOR_NAME, args=(), kwargs={}, options={})


def sender(url: str) -> RabbitmqBroker:
    """A broker for publishing from the benchmark process, configured as Warren's own client
    broker is: publisher confirms, no middleware."""
    return RabbitmqBroker(url=connection_url(url), confirm_delivery=True, middleware=[])


def completed(count_dir: Path) -> int:
    """How many `plain_noop` runs the workers counted so far."""
    return counted(count_dir)


def setup() -> None:
    """Entry point for `dramatiq bench.plain:setup`: a RabbitMQ broker with Dramatiq's default
    middleware, and the no-op actor on `BENCH_PLAIN_QUEUE`."""
    broker = RabbitmqBroker(
        url=connection_url(os.environ["WARREN_BROKER_URL"]), confirm_delivery=True
    )
    dramatiq.set_broker(broker)
    count_dir = os.environ["BENCH_PLAIN_COUNT_DIR"]

    def plain_noop() -> None:
        count_run(count_dir)

    dramatiq.actor(plain_noop, actor_name=ACTOR_NAME, queue_name=os.environ["BENCH_PLAIN_QUEUE"])
