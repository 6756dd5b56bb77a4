"""Progress: what a running handler reports is on its job within a heartbeat, the latest
report only; a new life starts without it."""

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
