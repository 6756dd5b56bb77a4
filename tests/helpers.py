"""Waiting with deadlines: tests poll for what a user would see, never sleep blindly."""

import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa

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
