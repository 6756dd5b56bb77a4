"""Integration fixtures: a Warren client and a real Dramatiq worker, in this process, on the
real RabbitMQ and PostgreSQL."""

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from dramatiq import Worker

from service import worker as worker_entry
from service.client import Warren
from service.settings import Settings


@pytest.fixture
def warren(settings: Settings, engine: sa.Engine, clean: None) -> Iterator[Warren]:
    client = Warren(settings, engine=engine)
    yield client
    client.publisher.broker.close()


class RunningWorker:
    """A started Dramatiq worker with Warren's middleware; `stop()` is idempotent."""

    def __init__(self, settings: Settings, threads: int) -> None:
        self.broker = worker_entry.build(settings)
        self.broker.emit_after("process_boot")
        self.worker = Worker(self.broker, worker_threads=threads, worker_timeout=100)
        self.worker.start()
        self.stopped = False

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.worker.stop()
            self.broker.emit_before("process_stop")
            self.broker.close()


@pytest.fixture
def start_worker(settings: Settings, clean: None) -> Iterator:
    """Start workers on demand: `start_worker(threads=4, **setting_overrides)`."""
    started: list[RunningWorker] = []

    def start(threads: int = 4, **overrides) -> RunningWorker:
        running = RunningWorker(settings.model_copy(update=overrides), threads)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def worker(start_worker) -> RunningWorker:
    return start_worker()
