"""What happens to a job between enqueue and its final status, on a real worker: claims,
retries with backoff, permanent errors, time limits, duplicates and cancellation."""

import itertools
import threading

import pytest
import sqlalchemy as sa

from service.broker import Dispatch, Publisher, build_broker
from service.groupcommit import GroupCommit
from service.lifecycle import Lifecycle
from service.registry import Registry
from service.store import attempts
from tests.helpers import wait_for

FAST = {"strategy": "fixed", "baseSeconds": 0.1}


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


def test_a_failing_job_retries_with_growing_delays_then_fails(warren, worker, engine):
    job_id = warren.enqueue(
        "test-record",
        {"failTimes": 99},
        max_attempts=4,
        retry={"strategy": "exponential", "baseSeconds": 0.3, "jitter": 0},
    ).id

    job = final(warren, job_id)

    assert job.status == "failed"
    assert job.attempts == 4
    assert job.error == {
        "type": "RuntimeError",
        "message": "attempt 4 failed on purpose",
        "retryable": True,
    }
    attempts = warren.attempts(job_id)
    assert [a.number for a in attempts] == [1, 2, 3, 4]
    assert all(a.status == "failed" for a in attempts)
    gaps = [(b.started_at - a.finished_at).total_seconds() for a, b in itertools.pairwise(attempts)]
    # each retry waits at least its delay, however late a busy machine runs it
    assert gaps[0] >= 0.3
    assert gaps[1] >= 0.6
    assert gaps[2] >= 1.2
    assert gaps[0] < gaps[2]
    assert runs(engine, job_id) == 4


def test_a_pending_retry_shows_when_it_will_run(warren, worker):
    job_id = warren.enqueue(
        "test-record", {"failTimes": 1}, retry={"strategy": "fixed", "baseSeconds": 3}
    ).id

    waiting = wait_for(lambda: (j := warren.get(job_id)).attempts == 1 and j.error and j)

    assert waiting.status == "pending"
    assert waiting.next_attempt_at is not None
    assert waiting.error["retryable"] is True
    assert final(warren, job_id).status == "completed"


def test_a_permanent_error_fails_after_one_attempt(warren, worker, engine):
    job_id = warren.enqueue("test-record", {"failTimes": 5, "permanent": True}).id

    job = final(warren, job_id)

    assert job.status == "failed"
    assert job.attempts == 1
    assert job.error["retryable"] is False
    assert job.error["type"] == "PermanentError"
    assert runs(engine, job_id) == 1


def test_a_time_limit_on_the_last_attempt_fails_the_job_with_timeout_error(warren, worker):
    job_id = warren.enqueue("test-record", {"seconds": 5}, max_attempts=1, timeout_seconds=1).id

    job = final(warren, job_id)

    assert job.status == "failed"
    assert job.error["type"] == "TimeoutError"
    assert job.attempts == 1


def test_the_same_message_delivered_twice_runs_the_handler_once(warren, worker, engine):
    job_id = warren.enqueue("test-record", {"seconds": 0.5}).id
    duplicate = Dispatch(job_id, "test-record", {"seconds": 0.5}, 5, 60)
    warren.publisher.publish(duplicate)
    warren.publisher.publish(duplicate)

    assert final(warren, job_id).status == "completed"
    sentinel = warren.enqueue("test-record", {"seconds": 4}).id
    wait_for(lambda: warren.get(sentinel).status == "completed", timeout=30)

    assert runs(engine, job_id) == 1
    assert len(warren.attempts(job_id)) == 1


def test_a_cancelled_pending_job_never_runs(warren, start_worker, engine):
    job_id = warren.enqueue("test-record", {}).id
    warren.cancel(job_id)
    sentinel = warren.enqueue("test-record", {}).id

    start_worker(threads=1)

    wait_for(lambda: warren.get(sentinel).status == "completed")
    assert warren.get(job_id).status == "cancelled"
    assert runs(engine, job_id) == 0


def test_a_cancelled_delayed_job_never_runs(warren, worker, engine):
    job_id = warren.enqueue("test-record", {}, delay_seconds=1).id
    warren.cancel(job_id)
    sentinel = warren.enqueue("test-record", {}, delay_seconds=2).id

    wait_for(lambda: warren.get(sentinel).status == "completed")
    assert warren.get(job_id).status == "cancelled"
    assert runs(engine, job_id) == 0


def test_a_delayed_job_does_not_start_before_its_time(warren, worker):
    job_id = warren.enqueue("test-record", {}, delay_seconds=1.5).id

    job = final(warren, job_id)

    assert job.started_at >= job.scheduled_at


def test_high_priority_jumps_a_backlog_of_low_priority_jobs(warren, start_worker, engine):
    backlog = [{"type": "test-record", "payload": {"seconds": 0.02}, "priority": "low"}] * 200
    warren.submit(backlog)
    urgent = warren.enqueue("test-record", {}, priority="high").id

    start_worker(threads=2)
    done = final(warren, urgent)

    with engine.connect() as conn:
        low_done_before = conn.scalar(
            sa.text("SELECT count(*) FROM jobs WHERE priority = 1 AND completed_at < :t"),
            {"t": done.completed_at},
        )
    assert low_done_before < 20


def test_a_claim_that_fails_unexpectedly_defers_the_message_and_never_runs_unclaimed(
    warren, worker, engine
):
    [lifecycle] = [m for m in worker.broker.middleware if type(m).__name__ == "Lifecycle"]
    claim = lifecycle.group.claim
    failures = []

    def failing_once(job_id, life):
        if not failures:
            failures.append(job_id)
            raise RuntimeError("a bug in the claim")
        return claim(job_id, life)

    lifecycle.group.claim = failing_once
    lifecycle.group.claim_many = lambda wanted, pump=None: [None] * len(wanted)  # threads claim
    job_id = warren.enqueue("test-record", {"tag": "deferred"}).id

    job = final(warren, job_id)

    assert failures == [job_id]
    assert (job.status, job.attempts) == ("completed", 1)
    assert runs(engine, job_id) == 1


def test_a_result_postgresql_cannot_store_fails_the_job_at_once(warren, worker):
    job_id = warren.enqueue("test-nul-result", {}).id

    job = final(warren, job_id)

    assert job.status == "failed" and job.attempts == 1
    assert job.error["type"] == "PermanentError"
    assert "result.text contains a NUL character" in job.error["message"]


@pytest.mark.parametrize(
    ("how", "status", "attempts", "error"),
    [
        ("tuple-nul", "failed", 1, "result.x[0] contains a NUL character"),
        ("retry-forever", "failed", 2, "RetryLater seconds must be from 0 to 604800"),
        ("unprintable", "failed", 2, "<exception str() failed: _Unprintable>"),
    ],
)
def test_a_handler_s_mistaken_outcome_is_recorded_not_left_processing(
    warren, worker, engine, how, status, attempts, error
):
    """Each left the job `processing`: its outcome failed to record, and it ran again when
    its lease ran out, then ended `failed` as a lost worker's."""
    job_id = warren.enqueue("test-misbehave", {"how": how}, retry=FAST).id

    job = final(warren, job_id)

    assert (job.status, job.attempts) == (status, attempts)
    assert error in job.error["message"]
    assert [a.status for a in warren.attempts(job_id)] == ["failed"] * attempts


def test_an_outcome_warren_cannot_record_fails_the_job_once_saying_so(
    warren, start_worker, monkeypatch
):
    def broken(self, claim):
        raise RuntimeError("a bug in recording")

    monkeypatch.setattr(Lifecycle, "_policy", broken)  # reached only by a retryable failure
    start_worker()
    job_id = warren.enqueue("test-record", {"failTimes": 1}).id

    job = final(warren, job_id)

    assert (job.status, job.attempts) == ("failed", 1)
    assert job.error["type"] == "PermanentError"
    assert "could not record this attempt's outcome: a bug in recording" in job.error["message"]


def test_a_result_past_the_bound_fails_the_job_at_once_with_what_to_do(warren, start_worker):
    """Left to PostgreSQL, a result past its bound would read as an outage, and the job would
    run again and again."""
    start_worker(max_result_bytes=1024)
    job_id = warren.enqueue("test-big-result", {"size": 2000}).id

    job = final(warren, job_id)

    assert (job.status, job.attempts) == ("failed", 1)
    assert "more than WARREN_MAX_RESULT_BYTES (1,024)" in job.error["message"]


def test_a_job_a_dead_worker_held_unmarked_is_marked_durably_before_it_runs_again(
    warren, settings, engine
):
    """A start mark rides in the next batch without a wait; a job that came back from a dead
    worker with no mark (a poison job may kill its worker before the batch commits) has its
    next mark committed before its handler runs, so its next death spends an attempt."""
    lifecycle = Lifecycle(engine, Publisher(build_broker(settings), settings), Registry(), settings)
    dead = GroupCommit(engine, "dead-worker", lease=30)
    try:
        job_id = warren.enqueue("test-noop", {}).id  # no worker runs: its message just waits
        [held] = dead.claim_many([(job_id, 1)])
        with engine.begin() as conn:  # the dead worker's lease runs out; it is taken back
            conn.execute(
                sa.text("UPDATE jobs SET lease_until = now() - interval '1 s' WHERE id = :id"),
                {"id": job_id},
            )
            attempts.release_expired(conn, held.job_id, held.attempt_id)
        [claim] = lifecycle.group.claim_many([(job_id, 1)])

        answers: list = []
        marking = threading.Thread(
            target=lambda: answers.append(lifecycle._mark_started(None, claim))
        )
        with engine.begin() as locker:  # hold the job's row: its mark cannot commit yet
            locker.execute(sa.text("SELECT 1 FROM jobs WHERE id = :id FOR UPDATE"), {"id": job_id})
            marking.start()
            marking.join(timeout=1.0)
            assert marking.is_alive()  # the thread waits for its mark; the handler has not run
        marking.join(timeout=10)
        assert answers == [None]  # marked: the job may start

        with engine.connect() as conn:  # committed when the call returned, not a batch later
            job = conn.execute(
                sa.text("SELECT started_at, attempts FROM jobs WHERE id = :id"), {"id": job_id}
            ).one()
        assert job.started_at is not None and job.attempts == 1
    finally:
        dead.close()
        lifecycle.group.close()
