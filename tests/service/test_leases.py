"""Leases: a worker that no longer holds its job stops running it, so a takeover never runs
one job twice at once."""

import threading

import sqlalchemy as sa

from service.store import attempts
from tests.helpers import wait_for
from tests.jobtypes import run_count


def test_a_job_taken_over_from_its_worker_stops_running_there(warren, worker, engine):
    job_id = warren.enqueue("test-record", {"seconds": 30}).id
    wait_for(lambda: warren.get(job_id).status == "processing")

    with engine.begin() as conn:  # the lease looks lost to the scheduler, which releases it
        conn.execute(
            sa.text(
                "UPDATE jobs SET lease_until = now() - interval '1 minute',"
                " scheduled_at = now() + interval '1 hour' WHERE id = :id"
            ),
            {"id": job_id},
        )
        [(_, attempt_id)] = attempts.expired_leases(conn, grace=0)
        assert attempts.release_expired(conn, job_id, attempt_id).job.status == "pending"

    def stopped():
        with engine.connect() as conn:
            return conn.scalar(
                sa.text("SELECT finished_at IS NOT NULL FROM test_runs WHERE job_id = :j"),
                {"j": job_id},
            )

    wait_for(stopped, timeout=5, what="the run to stop")
    [attempt] = warren.attempts(job_id)
    assert attempt.status == "lost"  # its outcome is no longer this worker's to write
    assert warren.get(job_id).status == "pending"


def test_a_worker_stopping_gracefully_keeps_the_leases_of_the_jobs_it_finishes(
    warren, start_worker, scheduler, engine
):
    worker = start_worker(threads=1)
    job_id = warren.enqueue("test-ledger", {"seconds": 9}).id  # three leases of 3 s
    wait_for(lambda: warren.get(job_id).status == "processing")
    scheduler()  # it takes over any job whose lease runs out

    stopping = threading.Thread(target=worker.stop)
    stopping.start()  # as on SIGTERM: the running job is let finish
    stopping.join(timeout=30)

    job = warren.get(job_id)
    assert (job.status, job.attempts) == ("completed", 1)
    assert run_count(engine, str(job_id)) == 1
