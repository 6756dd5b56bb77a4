"""Job types: a name, a payload model, a handler and its options.

A job type module declares itself with `@job_type(...)`; that records it and touches no broker.
Entry points `load()` the job modules (default package `actors`) and `bind()` the registry to
the broker they built, which turns each job type into a Dramatiq actor.
"""

import importlib
import math
import pkgutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dramatiq
from pydantic import BaseModel, ValidationError, ValidationInfo

from service import sealing, storable
from service.errors import PermanentError, UnknownJobType
from service.retries import RetryPolicy
from service.settings import Settings

Handler = Callable[[Any], Any]


@dataclass(frozen=True)
class JobType:
    """A registered job type. Options are its defaults; an enqueue may override the first four."""

    name: str
    payload: type[BaseModel]
    handler: Handler
    priority: int = 5
    max_attempts: int = 3
    timeout_seconds: int = 300
    retry: RetryPolicy | None = None
    permanent: tuple[type[BaseException], ...] = field(default=())
    #: Top-level payload fields holding secrets: sealed at rest, shown as "[secret]" (see
    #: `service.sealing`), opened only for the handler.
    secret: tuple[str, ...] = field(default=())

    def validate(self, payload: Any, context: Any = None) -> BaseModel:
        """The payload model; `context` is pydantic's (an `Enqueueing` when enqueueing)."""
        return self.payload.model_validate(payload, context=context)


@dataclass(frozen=True)
class Enqueueing:
    """The validation context of a payload being enqueued (see `enqueueing`). Validators use
    it for checks that belong to the enqueuing side only, such as refusing a webhook to a
    literal internal address with a 422: a worker re-validating the payload does not pass it,
    and lets the handler refuse with its own, clearer error. `settings` are the enqueuing
    process's; without them, `current_settings()`."""

    settings: Settings | None = None

    def current_settings(self) -> Settings:
        return self.settings if self.settings is not None else current_settings()


def enqueueing(info: ValidationInfo) -> Enqueueing | None:
    """In a pydantic validator: the `Enqueueing` context if the payload is being enqueued."""
    return info.context if isinstance(info.context, Enqueueing) else None


class Registry:
    """The job types a process knows, by name."""

    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}
        #: Schedules declared in code (`schedule(...)`), by name: the body of a
        #: `POST /schedules`, synced into the database when the scheduler starts.
        self.schedules: dict[str, dict[str, Any]] = {}

    def job_type(
        self, name: str, *, payload: type[BaseModel], **options: Any
    ) -> Callable[[Handler], Handler]:
        """Decorator: register the decorated function as the handler of job type `name`."""

        def register(handler: Handler) -> Handler:
            self.add(JobType(name=name, payload=payload, handler=handler, **options))
            return handler

        return register

    def schedule(
        self, name: str, cron: str, *, type: str, payload: dict[str, Any], **fields: Any
    ) -> None:
        """Declare a cron schedule beside its job type: `schedule("nightly-report", "0 0 * * *",
        type="report", payload={...}, timezone="Europe/Berlin")`. `fields` are those of
        `POST /schedules`, in snake_case or camelCase (`timezone`, `priority`, `catch_up`...).
        Checked when the scheduler syncs it at start-up."""
        self.schedules[name] = {"name": name, "cron": cron, "type": type, "payload": payload}
        self.schedules[name].update(fields)

    def add(self, job: JobType) -> None:
        self._types[job.name] = job

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise UnknownJobType(f"unknown job type {name!r}; known types: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self):
        return iter(self._types.values())

    def load(self, modules: Iterable[str]) -> "Registry":
        """Import job modules; a package brings all its submodules. Returns the registry."""
        for name in modules:
            module = importlib.import_module(name)
            for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
                importlib.import_module(f"{name}.{info.name}")
        return self

    def bind(self, broker: dramatiq.Broker, queue_name: str) -> None:
        """Declare one Dramatiq actor per job type on `broker`, on `queue_name`."""
        for job in self:
            dramatiq.Actor(
                _runner(job),
                broker=broker,
                actor_name=job.name,
                queue_name=queue_name,
                priority=0,
                options={},
            )


registry = Registry()
job_type = registry.job_type
schedule = registry.schedule

_current = threading.local()


@dataclass
class RunningJob:
    """What a handler may learn about the job it runs: `current_job()` returns this."""

    id: str
    attempt: int
    max_attempts: int
    #: The attempt's id, which fences the handler's own writes (`service.fencing`); None
    #: outside a worker.
    attempt_id: int | None = None
    settings: Settings | None = None
    renewed_at: float = field(default_factory=time.monotonic)
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    #: What the handler last reported (`report_progress`), and whether the heartbeat has
    #: written it yet.
    progress: dict[str, Any] | None = None
    progress_written: bool = True
    #: The job's type.
    type: str = ""

    def is_cancelled(self) -> bool:
        return self.cancel_requested.is_set()


def current_job() -> RunningJob:
    """The job this thread runs. Use `current_job().id` as an idempotency key for outside
    effects: a job may run more than once (at-least-once delivery)."""
    job = running_job()
    if job is None:
        raise RuntimeError("current_job() called outside a running job")
    return job


def running_job() -> RunningJob | None:
    """The job this thread runs, None outside one (a handler called directly)."""
    return getattr(_current, "job", None)


def is_cancelled() -> bool:
    """Whether someone asked the running job to stop; long handlers check it between steps."""
    job = running_job()
    return bool(job and job.is_cancelled())


def report_progress(done: float, total: float | None = None, message: str | None = None) -> None:
    """Say how far the running job has come: `GET /jobs/{id}` shows it as `progress`. Cheap to
    call often: the worker's heartbeat writes the latest report at most once a beat. `done`
    and `total` are finite numbers (else `ValueError`, here, where the mistake is); the message
    keeps its first 500 characters, with what PostgreSQL cannot store (a NUL) replaced."""
    job = running_job()
    if job is None:
        return
    job.progress = {
        "done": _finite("done", done),
        "total": None if total is None else _finite("total", total),
        "message": None if message is None else storable.clean(str(message)[:500]),
        "updatedAt": datetime.now(UTC).isoformat(),
    }
    job.progress_written = False


def _finite(name: str, value: object) -> float:
    """`value`, a number JSON and PostgreSQL can hold; else `ValueError` naming it."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            if math.isfinite(value):
                return value
        except OverflowError:  # an int past a double
            pass
    raise ValueError(f"report_progress: {name} is a finite number, not {value!r}")


def current_settings() -> Settings:
    """The settings of the worker running this job; outside a job, read from the environment.
    Handlers read their configuration (SMTP server, webhook secret) from here."""
    job = running_job()
    if job is not None and job.settings is not None:
        return job.settings
    return Settings()


def set_current(job: RunningJob | None) -> None:
    _current.job = job


def _runner(job: JobType) -> Callable[..., None]:
    def run(**payload: Any) -> None:
        if job.secret:
            running = running_job()
            job_id = running.id if running is not None else ""
            payload = sealing.unseal(payload, job.secret, current_settings().sealing_key, job_id)
        try:
            model = job.validate(payload)
        except ValidationError as exc:
            raise PermanentError(f"payload no longer valid: {exc}") from None
        result = job.handler(model)
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json", by_alias=True)
        running = running_job()
        if running is not None:
            running.result = result

    run.__name__ = job.name.replace("-", "_")
    return run
