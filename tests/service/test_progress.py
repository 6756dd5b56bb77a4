"""Progress: what a running handler reports is on its job within a heartbeat, the latest
report only; a new life starts without it, and without the old life's error and worker."""

import math

import pytest

from service.registry import RunningJob, report_progress, set_current
from tests.helpers import wait_for


def test_a_running_job_shows_its_latest_progress(warren, worker):
    job_id = warren.enqueue("test-progress", {"steps": 10}).id

    wait_for(lambda: warren.get(job_id).progress is not None, what="a progress report")
    progress = warren.get(job_id).progress
    assert (progress["done"], progress["total"], progress["message"]) == (3, 10, "three done")
    assert progress["updatedAt"]

    warren.cancel(job_id)
    wait_for(lambda: warren.get(job_id).status == "cancelled")
    worker.stop()  # so that the retried job waits, and the check sees the new life as it starts
    warren.retry(job_id)
    assert warren.get(job_id).progress is None  # a new life


def test_a_report_postgresql_would_refuse_stops_neither_leases_nor_cancels(warren, worker):
    job_id = warren.enqueue("test-progress", {"unstorable": True}).id
    wait_for(lambda: warren.get(job_id).status == "processing", what="the job running")

    warren.cancel(job_id)

    wait_for(lambda: warren.get(job_id).status == "cancelled", what="the cancel noticed")


@pytest.fixture
def running():
    job = RunningJob(id="5b0c7f3e-7d7e-4d0e-9a55-3f1c2b1f0a11", attempt=1, max_attempts=1)
    set_current(job)
    yield job
    set_current(None)


@pytest.mark.parametrize("done", [math.nan, math.inf, True, "3", 10**400, None])
def test_a_report_of_what_is_not_a_finite_number_is_a_value_error_where_it_is_made(running, done):
    with pytest.raises(ValueError, match="done is a finite number"):
        report_progress(done, 10)
    with pytest.raises(ValueError, match="total is a finite number"):
        report_progress(1, math.nan)
    assert running.progress is None


def test_a_message_keeps_what_postgresql_can_store(running):
    report_progress(2, None, "file\x00name" + "x" * 600)

    assert running.progress["message"] == "file\ufffdname" + "x" * 491
    assert (running.progress["done"], running.progress["total"]) == (2, None)


def test_a_new_life_starts_without_the_old_one_s_error_and_worker_which_its_attempts_keep(
    warren, worker
):
    job_id = warren.enqueue("test-record", {"failTimes": 1, "permanent": True}).id
    wait_for(lambda: warren.get(job_id).status == "failed", what="the job to fail")
    worker.stop()

    warren.retry(job_id)

    job = warren.get(job_id)
    assert (job.status, job.error, job.worker, job.started_at) == ("pending", None, None, None)
    [ended] = warren.attempts(job_id)
    assert ended.status == "failed" and ended.error["retryable"] is False and ended.worker
