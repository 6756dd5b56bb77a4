"""Cancellation on a real worker (invariant 3): a running job asked to cancel stops and ends
`cancelled` without a retry or a dead letter; a job waiting for its retry is cancelled at once
and never runs again. Nothing of a cancelled job is left in RabbitMQ."""

import time
from datetime import timedelta

from service.broker import queue_family
from tests.helpers import runs, wait_for


def assert_no_message_left(warren, worker) -> None:
    """Stop the worker, so that any message it had not acked goes back to its queue, then
    check that the normal tier, its delay queue and its dead-letter queue are all empty."""
    worker.stop()
    family = queue_family(warren.settings, "normal")
    depths = wait_for(
        lambda: (d := warren.queue_depths()) and d[family.queue]["consumers"] == 0 and d,
        timeout=10,
        what="the worker's consumers to leave",
    )
    assert {q: depths[q]["messages"] for q in family} == dict.fromkeys(family, 0)


def test_a_job_that_finishes_before_its_worker_hears_of_the_cancel_still_ends_cancelled(
    warren, start_worker, engine
):
    worker = start_worker(threads=2, lease_seconds=30.0)  # a heartbeat every 10 s
    job_id = warren.enqueue("test-record", {"seconds": 1.5}).id
    wait_for(lambda: runs(engine, job_id), what="the job to start")

    warren.cancel(job_id)

    job = wait_for(lambda: (j := warren.get(job_id)).status != "processing" and j, timeout=10)
    assert job.status == "cancelled"
    assert job.result is not None  # what the handler did before it could be stopped
    assert warren.stats()["cancelled"] == 1
    assert_no_message_left(warren, worker)


def test_a_running_job_asked_to_cancel_stops_and_ends_cancelled(warren, start_worker, engine):
    worker = start_worker(threads=2)
    job_id = warren.enqueue("test-record", {"seconds": 30}).id
    wait_for(
        lambda: warren.get(job_id).status == "processing" and runs(engine, job_id),
        what="the job to start",
    )

    asked = time.monotonic()
    assert warren.cancel(job_id) == "processing"
    job = wait_for(
        lambda: (j := warren.get(job_id)).status == "cancelled" and j,
        timeout=5,
        what="the job to end cancelled",
    )
    took = time.monotonic() - asked

    assert took < 5
    assert job.attempts == 1
    assert job.error is None  # a cancellation is not an error
    assert job.result is None
    assert job.cancel_requested_at is not None
    assert job.completed_at is not None
    [attempt] = warren.attempts(job_id)
    assert (attempt.number, attempt.status) == (1, "cancelled")
    assert attempt.error["type"] == "JobCancelled"
    assert attempt.finished_at is not None
    [run] = runs(engine, job_id)
    assert run.finished_at is not None
    assert (run.finished_at - run.started_at).total_seconds() < 10  # far short of its 30 s
    assert_no_message_left(warren, worker)  # acked: no redelivery, no retry, no dead letter
    assert warren.get(job_id).status == "cancelled"
    assert len(runs(engine, job_id)) == 1


def test_a_job_waiting_for_its_retry_is_cancelled_and_never_runs_again(
    warren, start_worker, engine
):
    worker = start_worker(threads=2)
    job_id = warren.enqueue(
        "test-record",
        {"failTimes": 1},
        retry={"strategy": "fixed", "baseSeconds": 2, "jitter": 0},
    ).id
    waiting = wait_for(
        lambda: (j := warren.get(job_id)).attempts == 1 and j.status == "pending" and j.error and j,
        what="the job to wait for its retry",
    )
    assert waiting.next_attempt_at is not None

    assert warren.cancel(job_id) == "pending"
    job = warren.get(job_id)
    assert job.status == "cancelled"
    assert job.next_attempt_at is None
    assert job.completed_at is not None

    # The retry's delayed message comes due and is skipped; a job due just after it shows when.
    later = warren.enqueue(
        "test-record", {}, scheduled_at=waiting.next_attempt_at + timedelta(seconds=0.5)
    ).id
    wait_for(lambda: warren.get(later).status == "completed", what="a job due after the retry")

    job = warren.get(job_id)
    assert job.status == "cancelled"
    assert job.attempts == 1
    assert job.error["type"] == "RuntimeError"  # the last error, from attempt 1
    assert [(a.number, a.status) for a in warren.attempts(job_id)] == [(1, "failed")]
    assert [run.attempt for run in runs(engine, job_id)] == [1]
    assert_no_message_left(warren, worker)
