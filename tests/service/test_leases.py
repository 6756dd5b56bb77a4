"""Leases: a worker that no longer holds its job stops running it, so a takeover never runs
one job twice at once."""

import threading

import pytest
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


def test_a_renewal_never_waits_for_a_row_another_transaction_holds(warren, engine):
    """The worker's own writer locks the rows it completes and starts in its own order: a
    renewal that waited for one of them while holding another could deadlock with it (the
    fault tests saw it, PostgreSQL breaking the deadlock after a second)."""
    busy, free = (warren.enqueue("test-record", {}).id for _ in range(2))
    with engine.begin() as conn:
        claims = [attempts.claim(conn, job_id, 1, "test", 30) for job_id in (busy, free)]
    busy_attempt, free_attempt = (claim.attempt_id for claim in claims)

    with engine.connect() as writer, writer.begin():
        writer.execute(sa.text("SELECT 1 FROM jobs WHERE id = :id FOR UPDATE"), {"id": busy})
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
            held = attempts.renew_leases(conn, [busy_attempt, free_attempt], 60)

    # The busy attempt still holds its job: not lost, its lease renewed at the next beat.
    assert held == {free_attempt: False, busy_attempt: None}
    with engine.begin() as conn:
        again = attempts.renew_leases(conn, [busy_attempt, free_attempt], 60)
    assert again == {free_attempt: False, busy_attempt: False}


def test_a_fenced_write_holds_off_a_takeover_and_never_a_renewal(warren, engine):
    job_id = warren.enqueue("test-noop", {}, max_attempts=3).id
    with engine.begin() as conn:
        claim = attempts.claim(conn, job_id, 1, "test:1", lease=30)
    with engine.connect() as writer, writer.begin():
        assert attempts.hold(writer, job_id, claim.attempt_id)  # a handler's write, uncommitted

        with engine.begin() as beat:
            assert attempts.renew_leases(beat, [claim.attempt_id], 30) == {claim.attempt_id: False}
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE jobs SET lease_until = now() - interval '1 s' WHERE id = :id"),
                {"id": job_id},
            )
        with engine.begin() as taker, pytest.raises(sa.exc.OperationalError, match="lock"):
            taker.execute(sa.text("SET LOCAL lock_timeout = '300ms'"))
            attempts.release_expired(taker, job_id, claim.attempt_id)

    with engine.begin() as taker:  # the write committed: now the takeover goes through
        assert attempts.release_expired(taker, job_id, claim.attempt_id)
    with engine.begin() as conn:
        assert not attempts.hold(conn, job_id, claim.attempt_id)
