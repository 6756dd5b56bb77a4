"""Warren's log lines: one configuration for every process, and the context lines carry.

`WARREN_LOG_FORMAT=json|text` (default: text when stderr is a terminal, JSON otherwise) picks
the format of `warren api`, `worker`, `scheduler` and `run` alike; `configure` applies it, and
gunicorn reads the same `dict_config` (`api.gunicorn_conf`). Every line logged while a worker
thread runs a job carries `job_id`, `type`, `attempt` and `worker`, whoever logs it (Warren's
lifecycle or the job type's handler); every line logged while the API answers a request carries
its `request_id`. Both come from context variables: Dramatiq runs each message on a worker
thread, and gunicorn's gthread workers each request on one, and each thread has a context of
its own, so one job's or request's fields never leak into another's lines.

Binding a job is on the worker's hot path: `job_started` stores its arguments as they are, and
they are turned into text only when a line is logged.
"""

import logging
import logging.config
import sys
from contextvars import ContextVar
from typing import Any, Literal, TextIO

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["json", "text"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The fields of a JSON line besides the context and a call's `extra`; renamed by `_RENAMED`.
JSON_FORMAT = "%(levelname)s %(name)s %(message)s"
_RENAMED = {"levelname": "level", "name": "logger"}

#: What a job's lines carry, in this order.
JOB_FIELDS = ("job_id", "type", "attempt", "worker")
#: Every context field a line may carry.
CONTEXT_FIELDS = (*JOB_FIELDS, "request_id")

_job: ContextVar[tuple[Any, ...] | None] = ContextVar("warren_job", default=None)
_request_id: ContextVar[str | None] = ContextVar("warren_request_id", default=None)


def job_started(job_id: Any, type: str, attempt: int, worker: str) -> None:
    """From now until `job_ended`, this thread's lines are about this job."""
    _job.set((job_id, type, attempt, worker))


def job_ended() -> None:
    _job.set(None)


def about(
    job_id: Any, type: str | None = None, attempt: int | None = None, worker: str | None = None
) -> dict[str, Any]:
    """`extra=` for a line about a job logged outside its run (by the writer thread, the
    heartbeat, before the claim): the fields a line logged during the run carries."""
    fields = {"job_id": str(job_id), "type": type, "attempt": attempt, "worker": worker}
    return {name: value for name, value in fields.items() if value is not None}


def request_started(request_id: str) -> None:
    """From now until `request_ended`, this thread's lines are about this request."""
    _request_id.set(request_id)


def request_ended() -> None:
    _request_id.set(None)


def context() -> dict[str, Any]:
    """The fields this thread's lines carry now."""
    fields: dict[str, Any] = {}
    job = _job.get()
    if job is not None:
        fields.update(zip(JOB_FIELDS, (str(job[0]), *job[1:]), strict=True))
    request_id = _request_id.get()
    if request_id is not None:
        fields["request_id"] = request_id
    return fields


class ContextFilter(logging.Filter):
    """Copies the thread's job or request fields onto each record a handler emits."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in context().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, then the context fields as `name=value`, before any traceback."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = [
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        ]
        return f"{line} [{' '.join(fields)}]" if fields else line


def resolve(setting: LogFormat | None, stream: TextIO | None = None) -> LogFormat:
    """The format to use: the setting's, else text on a terminal and JSON otherwise."""
    if setting is not None:
        return setting
    stream = stream or sys.stderr
    return "text" if stream.isatty() else "json"


def formatter(format: LogFormat) -> logging.Formatter:
    """The formatter of `format`: JSON lines (`level`, `logger`, `message`, `timestamp`, the
    context fields and a call's `extra`), or `TEXT_FORMAT` with the context appended."""
    if format == "json":
        return JsonFormatter(JSON_FORMAT, rename_fields=_RENAMED, timestamp=True)
    return TextFormatter(TEXT_FORMAT)


#: pika's adapters log every lost connection at ERROR and then raise it to the caller, which
#: handles it: a publish tries again on a new connection, and one that fails again is logged
#: or raised by Warren (or Dramatiq) for what it means. Left at ERROR, RabbitMQ closing an idle
#: connection reads as an error in every process that publishes.
PIKA_ADAPTERS_LEVEL = "CRITICAL"


def dict_config(format: LogFormat, level: str = "INFO", access_log: bool = True) -> dict[str, Any]:
    """The `logging.config.dictConfig` of a Warren process: one handler on stderr, with the
    context filter, for every logger; gunicorn's own loggers propagate to it. Without
    `access_log`, the API's access lines (`warren.access`) are not written."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "service.logs.ContextFilter"}},
        "formatters": {"warren": {"()": "service.logs.formatter", "format": format}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "warren",
                "filters": ["context"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            # Warren's request middleware logs each request (`api.requestids`).
            "gunicorn.access": {"handlers": [], "propagate": False},
            "warren.access": {"level": level if access_log else "WARNING"},
            "pika": {"level": "WARNING"},
            "pika.adapters": {"level": PIKA_ADAPTERS_LEVEL},
        },
    }


def configure(format: LogFormat | None, level: str = "INFO") -> LogFormat:
    """Configure this process's logging in `format` (resolved as `resolve` does); returns
    the format used. Replaces the handlers set before (Dramatiq's, `basicConfig`'s)."""
    chosen = resolve(format)
    logging.config.dictConfig(dict_config(chosen, level))
    return chosen
