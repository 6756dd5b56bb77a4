"""Job types that exist only for tests. Loaded with `WARREN_JOB_MODULES=actors,tests.jobtypes`.

`test-record` does a real side effect: each run inserts a row into `test_runs` (created by
the test fixtures) in the test database with its start and finish times, so tests can count
executions and check for overlaps. `test-crash` records its run, then SIGKILLs the worker
process running it (with `at_once`, it kills it first and records nothing): run it only on
worker processes, never in the test process.
"""

import os
import signal
import time
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from service.errors import PermanentError, RetryLater
from service.registry import (
    current_job,
    current_settings,
    is_cancelled,
    job_type,
    report_progress,
)

RUNS_DDL = """
CREATE TABLE IF NOT EXISTS test_runs (
    id bigserial PRIMARY KEY,
    job_id uuid NOT NULL,
    attempt int NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz
)
"""


class Record(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    seconds: float = 0.0
    fail_times: int = 0
    fail_runs: int = 0
    permanent: bool = False
    tag: str | None = None


@cache
def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, pool_size=4, pool_pre_ping=True)


def run_count(engine: sa.Engine, job_id: str) -> int:
    with engine.connect() as conn:
        return conn.scalar(
            sa.text("SELECT count(*) FROM test_runs WHERE job_id = :j"), {"j": job_id}
        )


@job_type("test-record", payload=Record, max_attempts=3, timeout_seconds=60)
def record(payload: Record) -> dict:
    """Record the run, work for `seconds` (checking for cancellation), fail the first
    `fail_times` attempts, or the first `fail_runs` runs counted across replays."""
    job = current_job()
    engine = _engine(current_settings().database_url)
    with engine.begin() as conn:
        run_id = conn.scalar(
            sa.text("INSERT INTO test_runs (job_id, attempt) VALUES (:j, :a) RETURNING id"),
            {"j": job.id, "a": job.attempt},
        )
    deadline = time.monotonic() + payload.seconds
    try:
        while time.monotonic() < deadline and not is_cancelled():
            time.sleep(min(0.05, max(deadline - time.monotonic(), 0)))
    finally:  # also when a time limit or a cancellation interrupts the wait
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE test_runs SET finished_at = clock_timestamp() WHERE id = :id"),
                {"id": run_id},
            )
    if job.attempt <= payload.fail_times or run_count(engine, job.id) <= payload.fail_runs:
        if payload.permanent:
            raise PermanentError(f"attempt {job.attempt} refused for good")
        raise RuntimeError(f"attempt {job.attempt} failed on purpose")
    return {"attempt": job.attempt, "tag": payload.tag}


class Noop(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = 0


@job_type("test-noop", payload=Noop, max_attempts=1, timeout_seconds=30)
def noop(payload: Noop) -> dict:
    return {"n": payload.n}


class Crash(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Kill the worker at once, before the start mark can commit, recording nothing.
    at_once: bool = False


@job_type("test-crash", payload=Crash, max_attempts=2, timeout_seconds=60)
def crash(payload: Crash) -> None:
    """A poison job: record the run, then kill the worker process running it, once its start
    mark is committed; with `at_once`, kill it before anything else, so that the mark (which
    rides in the group commit's next batch) is most likely not committed yet."""
    if payload.at_once:
        os.kill(os.getpid(), signal.SIGKILL)
    job = current_job()
    engine = _engine(current_settings().database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO test_runs (job_id, attempt) VALUES (:j, :a)"),
            {"j": job.id, "a": job.attempt},
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            marked = conn.scalar(
                sa.text("SELECT started_at IS NOT NULL FROM jobs WHERE id = :j"), {"j": job.id}
            )
        if marked:
            break
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGKILL)


class Ledger(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = 0.02


@job_type("test-ledger", payload=Ledger, max_attempts=25, timeout_seconds=60)
def ledger(payload: Ledger) -> None:
    """Work for `seconds`, then write one `test_runs` row with the run's start and finish, in
    one statement: every run that did its work is in the ledger, so overlapping runs of one job
    show as overlapping rows."""
    job = current_job()
    started = datetime.now(UTC)
    time.sleep(payload.seconds)
    with _engine(current_settings().database_url).begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO test_runs (job_id, attempt, started_at, finished_at)"
                " VALUES (:j, :a, :s, :f)"
            ),
            {"j": job.id, "a": job.attempt, "s": started, "f": datetime.now(UTC)},
        )


class Lookup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str


@job_type("test-lookup", payload=Lookup, max_attempts=5, permanent=(KeyError,))
def lookup(payload: Lookup) -> str:
    """Look `key` up in an empty table: a `KeyError`, which this job type declares permanent."""
    return {}[payload.key]


class Empty(BaseModel):
    model_config = ConfigDict(extra="forbid")


@job_type("test-nul-result", payload=Empty, max_attempts=3)
def nul_result(payload: Empty) -> dict:
    """Return text PostgreSQL cannot store: a NUL character."""
    return {"text": "before\x00after"}


class Misbehaviour(BaseModel):
    model_config = ConfigDict(extra="forbid")

    how: Literal["tuple-nul", "retry-forever", "unprintable"]


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("no text for this one")


@job_type("test-misbehave", payload=Misbehaviour, max_attempts=2)
def misbehave(payload: Misbehaviour) -> Any:
    """Outcomes a handler may give by mistake, which Warren must record: a NUL inside a tuple
    of the result, a `RetryLater` of an infinite wait, an exception whose text fails."""
    if payload.how == "tuple-nul":
        return {"x": ("before\x00after",)}
    if payload.how == "retry-forever":
        raise RetryLater("the server said later", float("inf"))
    raise _Unprintable()


class Size(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int


@job_type("test-big-result", payload=Size, max_attempts=3)
def big_result(payload: Size) -> dict:
    """Return a result of about `size` bytes of JSON."""
    return {"text": "x" * payload.size}


class Steps(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = 10
    seconds: float = 30.0
    unstorable: bool = False


@job_type("test-progress", payload=Steps, max_attempts=1, timeout_seconds=60)
def progress(payload: Steps) -> dict:
    """Report 3 of `steps` done, then wait (until cancelled, or `seconds`). With `unstorable`,
    the report is one PostgreSQL refuses (NaN), as one that slipped past `report_progress`'s
    checks would be."""
    report_progress(1, payload.steps, "warming up")
    report_progress(3, payload.steps, "three done")
    if payload.unstorable:
        current_job().progress = {"done": float("nan")}
    deadline = time.monotonic() + payload.seconds
    while time.monotonic() < deadline and not is_cancelled():
        time.sleep(0.05)
    return {"steps": payload.steps}
