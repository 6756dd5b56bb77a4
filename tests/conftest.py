"""Test fixtures for Warren: each run gets its own PostgreSQL database and its own RabbitMQ
queue prefix, created here and removed at the end, so two runs never see each other's jobs."""

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pika
import pytest
import sqlalchemy as sa
from dramatiq import Worker

from service import db, netguard
from service import worker as worker_entry
from service.broker import (
    Publisher,
    build_broker,
    connection_url,
    pika_parameters,
    queue_families,
    queue_names,
)
from service.client import Warren
from service.scheduler import Scheduler
from service.settings import Settings
from tests import leftovers
from tests.jobtypes import RUNS_DDL

#: This run's database, queue prefix and files folder (`tests.leftovers`).
RUN_NAME = leftovers.run_name(os.getpid(), uuid.uuid4().hex[:6])
#: The test tiers: each folder of tests/ marks its tests with its name (`pytest -m unit`).
TIERS = ("unit", "api", "service", "actors", "e2e", "faults")
TESTS = Path(__file__).resolve().parent
#: What URL-taking job types may reach in tests (service.netguard): 127.0.0.1, not 127.0.0.2.
TEST_ALLOWED_NETWORK = "127.0.0.1/32"
ADMIN_DATABASE_URL = os.environ.get(
    "WARREN_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(item.path).resolve()
        tier = path.relative_to(TESTS).parts[0] if path.is_relative_to(TESTS) else None
        if tier in TIERS:
            item.add_marker(tier)


def test_settings(run: str = RUN_NAME, **overrides) -> Settings:
    """Settings of a test run (this one unless `run` names another): its own database, queue
    prefix and files folder, short timings."""
    values = {
        "database_url": f"{ADMIN_DATABASE_URL.rsplit('/', 1)[0]}/{run}",
        "broker_url": os.environ.get("WARREN_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
        "queue_prefix": run,
        "job_modules": ["actors", "tests.jobtypes"],
        "lease_seconds": 3.0,
        "delay_horizon_seconds": 600.0,
        "dispatch_interval_seconds": 0.2,
        "stranded_after_seconds": 1.0,
        "retry_base_seconds": 0.2,
        "retry_max_seconds": 2.0,
        "retry_jitter": 0.0,
        "smtp_url": "smtp://127.0.0.1:1",
        "allowed_networks": [TEST_ALLOWED_NETWORK],  # the tests' local servers, nothing more
        "files_dir": f"{tempfile.gettempdir()}/{run}/files",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    leftovers.sweep(ADMIN_DATABASE_URL, test_settings, delete_queues)
    settings = test_settings()
    db.upgrade(settings)
    with sa.create_engine(settings.database_url).begin() as conn:
        conn.execute(sa.text(RUNS_DDL))
    declare_queues(settings)
    yield settings
    delete_queues(settings)
    db.drop_database(settings.database_url)
    shutil.rmtree(Path(settings.files_dir).parent, ignore_errors=True)


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[sa.Engine]:
    engine = db.make_engine(settings)
    yield engine
    engine.dispose()


def all_queues(settings: Settings) -> list[str]:
    """Every queue of this run: each tier's queue, delay queue and dead-letter queue."""
    return [name for family in queue_families(settings) for name in family]


def declare_queues(settings: Settings) -> None:
    broker = build_broker(settings)
    try:
        for name in queue_names(settings):
            broker.declare_queue(name, ensure=True)
    finally:
        broker.close()


def delete_queues(settings: Settings) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(connection_url(settings.broker_url)))
    try:
        channel = connection.channel()
        for name in all_queues(settings):
            channel.queue_delete(name)
    finally:
        connection.close()


def purge_queues(settings: Settings) -> None:
    connection = pika.BlockingConnection(pika_parameters(settings))
    try:
        for name in all_queues(settings):
            channel = connection.channel()
            with contextlib.suppress(pika.exceptions.ChannelClosedByBroker):
                channel.queue_purge(name)  # fails when the queue was never declared
    finally:
        connection.close()


@pytest.fixture
def clean(settings: Settings, engine: sa.Engine) -> None:
    """Start a test with no jobs and empty queues."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "TRUNCATE jobs, dead_letters, schedules, pauses, processes, job_minutes CASCADE"
            )
        )
        conn.execute(sa.text("TRUNCATE test_runs"))
    purge_queues(settings)


@pytest.fixture
def warren(settings: Settings, engine: sa.Engine, clean: None) -> Iterator[Warren]:
    client = Warren(settings, engine=engine)
    yield client
    client.publisher.close()


class RunningWorker:
    """A started Dramatiq worker with Warren's middleware; `stop()` is idempotent."""

    def __init__(self, settings: Settings, threads: int) -> None:
        self.broker = worker_entry.build(settings)
        self.broker.emit_after("process_boot")
        self.worker = Worker(self.broker, worker_threads=threads, worker_timeout=100)
        self.worker.queue_prefetch = settings.worker_prefetch * threads  # as `warren worker`
        self.worker.start()
        self.stopped = False

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.worker.stop()
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


@pytest.fixture
def scheduler(settings: Settings, engine: sa.Engine, clean: None) -> Iterator:
    """Start the scheduler loop in a thread: `scheduler(**setting_overrides)`."""
    stops: list[tuple[threading.Event, threading.Thread, Publisher]] = []

    def start(**overrides) -> Scheduler:
        tuned = settings.model_copy(update=overrides)
        publisher = Publisher(build_broker(tuned), tuned)
        loop = Scheduler(engine, publisher, tuned)
        stop = threading.Event()
        thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
        thread.start()
        stops.append((stop, thread, publisher))
        return loop

    yield start
    for stop, thread, publisher in stops:
        stop.set()
        thread.join(timeout=10)
        publisher.close()


@pytest.fixture
def mute_broker() -> Iterator[str]:
    """The URL of a server that takes TCP connections and never speaks AMQP: a RabbitMQ that
    is starting, or a wrong port. pika gives up on its handshake after a second."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    yield f"amqp://guest:guest@127.0.0.1:{port}/%2F?stack_timeout=1&socket_timeout=1"
    listener.close()
    for connection in held:
        connection.close()


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Stands in for DNS: names put in the returned dict resolve to the addresses given."""
    answers: dict[str, list[str]] = {}
    real = netguard.resolve

    def resolve(host: str, port: int) -> list[Any]:
        if host in answers:
            return [ip_address(address) for address in answers[host]]
        return real(host, port)

    monkeypatch.setattr(netguard, "resolve", resolve)
    return answers
