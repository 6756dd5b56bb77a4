"""Warren's Prometheus metrics: what its processes count as jobs come and go, and where
prometheus-client's multiprocess mode keeps the counts.

The counters and histograms below live in the process that counts: the API's gunicorn workers
count enqueues, Dramatiq's worker processes count runs. With `PROMETHEUS_MULTIPROC_DIR` set
before a process imports prometheus-client, each process writes its values to files there, and
`GET /metrics` sums every process's files (`api.metrics`). The gauges (counts by status, queue
depths, the age of the oldest ready job) are not counted here but read at scrape time
(`service.gauges`).

The `job_*` functions are called by the worker's lifecycle on its hot path: each is a label
lookup and an increment or two, no I/O beyond prometheus-client's memory-mapped file.
"""

import functools
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Histogram

from service.broker import tier_of
from service.models import JobStatus

#: The environment variable prometheus-client reads when it is imported.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_WAIT_SECONDS = (*_SECONDS, 1800, 3600, 7200, 21600, 86400)

ENQUEUED = Counter(
    "warren_jobs_enqueued",
    "Jobs enqueued (an idempotency key seen before enqueues none), by type and priority tier.",
    ["type", "tier"],
)
FINISHED = Counter(
    "warren_jobs_finished",
    "Jobs that reached a final status, by type and status: completed; failed (an error that"
    " is not retried); dead (retryable errors until its attempts ran out); cancelled.",
    ["type", "status"],
)
RETRIES = Counter(
    "warren_job_retries",
    "Failed attempts that will be retried, by job type.",
    ["type"],
)
DURATION = Histogram(
    "warren_job_duration_seconds",
    "How long the handler of an attempt ran, by job type.",
    ["type"],
    buckets=_SECONDS,
)
WAIT = Histogram(
    "warren_job_wait_seconds",
    "From when an attempt was due (its message's eta, or when it was published) to when a"
    " worker started it, by job type.",
    ["type"],
    buckets=_WAIT_SECONDS,
)

_started = threading.local()


@functools.cache
def _labelled(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, kept: a worker or an API looks up the same few types for
    every job, and prometheus-client's lookup takes a lock and builds a key each time."""
    return metric.labels(*labels)


# -- counted where jobs come and go -------------------------------------------------------------


def enqueued(rows: list[dict[str, Any]], outcome: list[tuple[Any, bool]]) -> None:
    """Count the rows an enqueue inserted (`outcome` says which, as `store.jobs.insert`)."""
    for row, (_, created) in zip(rows, outcome, strict=True):
        if created:
            _labelled(ENQUEUED, row["type"], tier_of(row["priority"])).inc()


def job_started(claim: Any, message: Any) -> None:
    """A worker thread starts running `claim`'s attempt of the job `message` asked for:
    observe how long it waited since it was due, and note the start for `job_ran`."""
    now = time.time()
    due_ms = message.options.get("eta") or message.message_timestamp
    _labelled(WAIT, claim.type).observe(max(now - due_ms / 1000, 0.0))
    _started.at = time.perf_counter()


def job_ran(claim: Any) -> None:
    """The handler of the attempt this thread started has returned or raised."""
    started = getattr(_started, "at", None)
    if started is not None:
        _labelled(DURATION, claim.type).observe(time.perf_counter() - started)
        _started.at = None


def job_completed(claim: Any) -> None:
    _labelled(FINISHED, claim.type, JobStatus.COMPLETED.value).inc()


def job_cancelled(claim: Any) -> None:
    FINISHED.labels(claim.type, JobStatus.CANCELLED.value).inc()


def job_failed(claim: Any, status: JobStatus | None, retryable: bool) -> None:
    """An attempt failed and the store moved its job to `status` (None: the job was no
    longer the attempt's, nothing is counted)."""
    if status == JobStatus.PENDING:
        RETRIES.labels(claim.type).inc()
    elif status == JobStatus.CANCELLED:
        job_cancelled(claim)
    elif status == JobStatus.FAILED:
        FINISHED.labels(claim.type, "dead" if retryable else JobStatus.FAILED.value).inc()


def settled_elsewhere(type: str, status: JobStatus) -> None:
    """The scheduler settled a job no worker could: its worker died on the last attempt
    (`failed`, counted as dead: the lost attempt is retryable), or before a retry
    (`pending`, a retry), or while asked to stop (`cancelled`); or its message was
    dead-lettered before any worker ran it (`undeliverable`, counted as failed)."""
    if status == JobStatus.PENDING:
        RETRIES.labels(type).inc()
    elif status == JobStatus.FAILED:
        FINISHED.labels(type, "dead").inc()
    elif status == JobStatus.CANCELLED:
        FINISHED.labels(type, JobStatus.CANCELLED.value).inc()


def cancelled_by_hand(cancelled: Iterable[Any]) -> None:
    """A person cancelled these jobs (`store.jobs.Cancelled`): a pending one ends here; a
    processing one is counted by its worker when it stops."""
    for job in cancelled:
        if job.was == JobStatus.PENDING:
            FINISHED.labels(job.type, JobStatus.CANCELLED.value).inc()


def undeliverable(type: str) -> None:
    FINISHED.labels(type, JobStatus.FAILED.value).inc()


# -- the multiprocess directory -----------------------------------------------------------------

_DB_FILE = re.compile(r"_(\d+)\.db$")


def default_directory(queue_prefix: str) -> Path:
    """Where the processes of one deployment (one queue prefix) on this machine keep their
    metrics when the user named no directory: the API and the workers must share it."""
    user = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"warren-metrics-{user}" / queue_prefix


def multiprocess_directory(queue_prefix: str) -> tuple[Path, bool]:
    """The directory this process and the ones it starts write their metrics to: the user's
    `PROMETHEUS_MULTIPROC_DIR`, else Warren's default for the deployment, created and
    cleaned (see `clean_if_idle`). Sets the variable in this process's environment, so
    set it before prometheus-client counts here or in a child. Returns the directory and
    whether Warren chose it."""
    chosen = os.environ.get(MULTIPROC_ENV)
    if chosen:
        Path(chosen).mkdir(parents=True, exist_ok=True)
        return Path(chosen), False
    directory = default_directory(queue_prefix)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    clean_if_idle(directory)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory, True


def clean_if_idle(directory: Path) -> int:
    """Delete the files of a deployment's last run when none of the processes that wrote
    them is alive: a deployment that starts again starts its counters from zero, as a
    single process would. While any of them runs, nothing is deleted: a process that joins
    a running deployment (a restarted API, one more worker) keeps the totals going up, as
    Prometheus expects of counters. Returns the number of files deleted."""
    files = [path for path in directory.glob("*.db") if _DB_FILE.search(path.name)]
    if any(process_alive(int(_DB_FILE.search(path.name).group(1))) for path in files):
        return 0
    for path in files:
        path.unlink(missing_ok=True)
    return len(files)


def process_alive(pid: int) -> bool:
    """Whether a process of this machine has this id (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
