"""The baseline of `bench.throughput`: plain Dramatiq on the same RabbitMQ, with no database.

Run as a worker with `python -m dramatiq bench.plain:setup --processes P --threads T`, with
`BENCH_PLAIN_QUEUE` (the queue to consume) and `BENCH_PLAIN_COUNT_DIR` in the environment.
The actor `plain_noop` does nothing but count itself: each run appends one byte to a file of its
worker process (`<dir>/<pid>.count`, one unbuffered `O_APPEND` write, safe across threads), so
the benchmark knows how many ran by summing the files' sizes, without a shared counter that
would slow the workers down.
"""

import os
import threading
from pathlib import Path

import dramatiq
from dramatiq import Message
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from service.broker import connection_url

ACTOR_NAME = "plain_noop"

_count_fd: dict[int, int] = {}
_lock = threading.Lock()


def message(queue: str) -> Message:
    """One `plain_noop` message for `queue`, as `plain_noop.send()` would build it."""
    return Message(queue_name=queue, actor_name=ACTOR_NAME, args=(), kwargs={}, options={})


def sender(url: str) -> RabbitmqBroker:
    """A broker for publishing from the benchmark process, configured as Warren's own client
    broker is: publisher confirms, no middleware."""
    return RabbitmqBroker(url=connection_url(url), confirm_delivery=True, middleware=[])


def completed(count_dir: Path) -> int:
    """How many `plain_noop` runs the workers counted so far."""
    return sum(path.stat().st_size for path in count_dir.glob("*.count"))


def _count_one() -> None:
    pid = os.getpid()
    fd = _count_fd.get(pid)
    if fd is None:
        with _lock:
            fd = _count_fd.get(pid)
            if fd is None:
                path = Path(os.environ["BENCH_PLAIN_COUNT_DIR"]) / f"{pid}.count"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                _count_fd[pid] = fd
    os.write(fd, b".")


def setup() -> None:
    """Entry point for `dramatiq bench.plain:setup`: a RabbitMQ broker with Dramatiq's default
    middleware, and the no-op actor on `BENCH_PLAIN_QUEUE`."""
    broker = RabbitmqBroker(
        url=connection_url(os.environ["WARREN_BROKER_URL"]), confirm_delivery=True
    )
    dramatiq.set_broker(broker)

    def plain_noop() -> None:
        _count_one()

    dramatiq.actor(plain_noop, actor_name=ACTOR_NAME, queue_name=os.environ["BENCH_PLAIN_QUEUE"])
