"""What happens to a job between enqueue and its final status, on a real worker."""

import sqlalchemy as sa

from tests.helpers import wait_for


def final(warren, job_id, timeout=20.0):
    return wait_for(
        lambda: (job := warren.get(job_id)).status in ("completed", "failed", "cancelled") and job,
        timeout=timeout,
        what=f"job {job_id} to finish",
    )


def runs(engine, job_id) -> int:
    with engine.connect() as conn:
        return conn.scalar(
            sa.text("SELECT count(*) FROM test_runs WHERE job_id = :j"), {"j": job_id}
        )


def test_a_job_runs_once_and_completes_with_its_result(warren, worker, engine):
    job_id = warren.enqueue("test-record", {"tag": "hello"}).id

    job = final(warren, job_id)

    assert job.status == "completed"
    assert job.result == {"attempt": 1, "tag": "hello"}
    assert job.attempts == 1
    assert job.completed_at is not None
    assert runs(engine, job_id) == 1
    [attempt] = warren.attempts(job_id)
    assert attempt.status == "completed" and attempt.number == 1
