"""Retry strategies on a real worker: a failing job waits, between one run ending and the next
starting, at least the delay its strategy documents (`service/retries.py`), in its shape:
exponential doubles, linear grows by the base, fixed stays the same. A time limit that expires
is a failed attempt with error type `TimeoutError`, retried while attempts remain."""

import itertools

import pytest
import sqlalchemy as sa

from tests.helpers import runs, wait_for

BASE = 1.0
#: How late a retry may start: the delay queue, the consumer's poll, claiming the job. Below
#: BASE, so each gap alone tells the strategies apart (the third: 4 s, 3 s or 1 s).
SLACK = 0.6
#: How far the growth from one gap to the next may stray from the documented growth. Retries
#: are late by about the same scheduling overhead each time (10-30 ms on a quiet machine, a
#: quarter of a second apart under load), and the strategies' growths differ by at least
#: BASE, so a tolerance under half of it still tells them apart.
SHAPE_TOLERANCE = 0.45
#: The documented delays after failed attempts 1, 2 and 3 with a base of 1 s and no jitter.
DELAYS = {
    "exponential": [1.0, 2.0, 4.0],  # base * 2**(n-1)
    "linear": [1.0, 2.0, 3.0],  # base * n
    "fixed": [1.0, 1.0, 1.0],  # base
}


def final(warren, job_id, timeout=30.0):
    return wait_for(
        lambda: (j := warren.get(job_id)).status in ("completed", "failed", "cancelled") and j,
        timeout=timeout,
        what=f"job {job_id} to finish",
    )


def gaps(engine: sa.Engine, job_id) -> list[float]:
    """Seconds between each run finishing and the next one starting, as the handler saw."""
    return [
        (b.started_at - a.finished_at).total_seconds()
        for a, b in itertools.pairwise(runs(engine, job_id))
    ]


@pytest.mark.parametrize("strategy", list(DELAYS))
def test_a_failing_job_waits_as_its_retry_strategy_says(strategy, warren, worker, engine):
    job_id = warren.enqueue(
        "test-record",
        {"failTimes": 3},
        max_attempts=4,
        retry={"strategy": strategy, "baseSeconds": BASE, "maxSeconds": 10, "jitter": 0},
    ).id

    job = final(warren, job_id)

    assert job.status == "completed"
    assert job.attempts == 4
    assert job.result == {"attempt": 4, "tag": None}
    attempts = warren.attempts(job_id)
    assert [(a.number, a.status) for a in attempts] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
        (4, "completed"),
    ]
    assert [run.attempt for run in runs(engine, job_id)] == [1, 2, 3, 4]
    measured = gaps(engine, job_id)
    for gap, delay in zip(measured, DELAYS[strategy], strict=True):
        assert delay <= gap <= delay + SLACK, f"{strategy}: gaps {measured}"
    # The shape: exponential grows by 1 then 2 (doubling), linear by 1 each time (the base),
    # fixed not at all.
    growth = [b - a for a, b in itertools.pairwise(measured)]
    documented = [b - a for a, b in itertools.pairwise(DELAYS[strategy])]
    for grew, expected in zip(growth, documented, strict=True):
        assert abs(grew - expected) <= SHAPE_TOLERANCE, f"{strategy}: gaps {measured}"


def test_a_timed_out_attempt_is_retried_and_the_last_one_fails_the_job(warren, worker, engine):
    job_id = warren.enqueue(
        "test-record",
        {"seconds": 5},
        max_attempts=2,
        timeout_seconds=1,
        retry={"strategy": "fixed", "baseSeconds": BASE, "jitter": 0},
    ).id

    job = final(warren, job_id)

    assert job.status == "failed"
    assert job.attempts == 2
    assert job.error["type"] == "TimeoutError"
    assert "timeoutSeconds" in job.error["message"]
    attempts = warren.attempts(job_id)
    assert [(a.number, a.status) for a in attempts] == [(1, "failed"), (2, "failed")]
    assert [a.error["type"] for a in attempts] == ["TimeoutError", "TimeoutError"]
    assert attempts[0].error["retryable"] is True  # a timeout is worth another attempt
    recorded = runs(engine, job_id)
    assert [run.attempt for run in recorded] == [1, 2]
    for run in recorded:  # each cut short at about its 1 s limit, far from its 5 s of work
        assert 0.9 <= (run.finished_at - run.started_at).total_seconds() < 3.5
    [gap] = gaps(engine, job_id)
    assert gap >= BASE


def test_an_error_its_job_type_declares_permanent_fails_the_job_at_once(warren, worker):
    job_id = warren.enqueue("test-lookup", {"key": "missing"}).id

    wait_for(lambda: warren.get(job_id).status == "failed")
    job = warren.get(job_id)
    assert job.attempts == 1 and job.max_attempts == 5
    assert job.error == {"type": "KeyError", "message": "'missing'", "retryable": False}
