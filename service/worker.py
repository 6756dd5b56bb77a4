"""The worker's broker: what `warren worker` hands the `dramatiq` CLI (`service.worker:setup`).

`build()` is also what tests call to run a real worker in-process on their own settings.
"""

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import ShutdownNotifications, TimeLimit

from service import logs
from service.broker import Publisher, build_broker, queue_name
from service.db import make_engine
from service.lifecycle import Lifecycle
from service.pauses import PauseGate
from service.registry import Registry
from service.registry import registry as default_registry
from service.settings import Settings


def build(settings: Settings, registry: Registry | None = None) -> RabbitmqBroker:
    """A broker with Warren's middleware and one actor per job type, set as Dramatiq's global
    broker. The lifecycle middleware comes first so that it claims before anything runs and
    records last, after the time limit has been lifted; only the pause gate goes before it, so
    a job of a paused tier or type is parked, never claimed (`service.pauses`)."""
    registry = registry or default_registry.load(settings.job_modules)
    broker = build_broker(settings)
    engine = make_engine(settings)
    gate = PauseGate(engine, settings)
    lifecycle = Lifecycle(engine, Publisher(broker, settings), registry, settings, held=gate.holds)
    for middleware in (gate, lifecycle, TimeLimit(), ShutdownNotifications()):
        broker.add_middleware(middleware)
    registry.bind(broker, queue_name(settings, "normal"))
    dramatiq.set_broker(broker)
    return broker


def prefetch_env(threads: int, per_thread: int) -> dict[str, str]:
    """The environment under which `dramatiq` holds `per_thread` messages per thread (its
    queue prefetch counts per process): what `warren worker` sets, and what tests and
    benchmarks that start Dramatiq themselves set to run as it does."""
    return {"dramatiq_queue_prefetch": str(per_thread * threads)}


def setup() -> None:
    """Entry point for `dramatiq service.worker:setup`: settings from the environment, and
    this worker process's log lines in Warren's format (`service.logs`)."""
    settings = Settings()
    logs.configure(settings.log_format)
    build(settings)
