"""Pausing a tier or a job type: real workers park its jobs instead of starting them, the
scheduler keeps them as rows, and on resume every one runs exactly once. A pause is a row in
PostgreSQL, so a new worker honours it too."""

import time
import uuid

import pytest
import sqlalchemy as sa

from service.broker import Publisher, dispatch_of
from service.errors import NotFound
from service.pauses import PauseGate, PauseState
from service.store import jobs as job_store
from service.store.jobs import Parking
from tests.helpers import wait_for

N = 12


def run_counts(engine: sa.Engine, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT job_id, count(*) FROM test_runs"
                " WHERE job_id = ANY(CAST(:ids AS uuid[])) GROUP BY job_id"
            ),
            {"ids": job_ids},
        ).all()
    return {job_id: 0 for job_id in job_ids} | dict(rows)


def parked(warren, job_ids: list[uuid.UUID]) -> bool:
    """Every job is waiting as a row: pending, unpublished, parked once (its second life)."""
    return all(
        (job := warren.get(job_id)).status == "pending"
        and job.published_at is None
        and job.life == 2
        for job_id in job_ids
    )


def stays(condition, seconds: float = 2.0) -> None:
    """Assert `condition` holds at every poll for `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert condition()
        time.sleep(0.1)


def all_completed_once(warren, engine, job_ids: list[uuid.UUID]) -> None:
    wait_for(
        lambda: all(warren.get(job_id).status == "completed" for job_id in job_ids),
        timeout=60,
        what="every job to complete",
    )
    assert set(run_counts(engine, job_ids).values()) == {1}


def test_a_paused_type_starts_nothing_and_runs_everything_once_when_resumed(
    warren, engine, worker, scheduler
):
    assert warren.pause("type", "test-record").types == {"test-record"}
    held = [warren.enqueue("test-record", {}).id for _ in range(N)]
    other = warren.enqueue("test-noop", {}).id
    scheduler()

    wait_for(lambda: parked(warren, held), what="the worker to park every job")
    wait_for(lambda: warren.get(other).status == "completed", what="an unpaused type to run")
    stays(lambda: parked(warren, held) and not any(run_counts(engine, held).values()))

    assert warren.resume("type", "test-record").types == frozenset()
    all_completed_once(warren, engine, held)


def test_a_paused_tier_holds_its_jobs_and_lets_the_other_tiers_run(
    warren, engine, worker, scheduler
):
    warren.pause("tier", "high")
    held = [warren.enqueue("test-record", {}, priority="high").id for _ in range(N)]
    normal = warren.enqueue("test-record", {}, priority=5).id
    scheduler()

    wait_for(lambda: parked(warren, held), what="the worker to park every high job")
    wait_for(lambda: warren.get(normal).status == "completed", what="a normal job to run")
    stays(lambda: parked(warren, held) and not any(run_counts(engine, held).values()))

    warren.resume("tier", "high")
    all_completed_once(warren, engine, held)


def test_a_pause_outlives_the_worker(warren, engine, start_worker, scheduler):
    warren.pause("type", "test-record")
    start_worker().stop()  # a worker that knew of the pause is gone
    start_worker()  # a new one reads it from PostgreSQL
    held = [warren.enqueue("test-record", {}).id for _ in range(3)]
    scheduler()

    wait_for(lambda: parked(warren, held), what="the new worker to park every job")
    stays(lambda: not any(run_counts(engine, held).values()), seconds=1.0)
    assert warren.paused().types == {"test-record"}

    warren.resume("type", "test-record")
    all_completed_once(warren, engine, held)


def test_a_job_already_running_finishes_when_its_type_is_paused(warren, engine, worker):
    job_id = warren.enqueue("test-record", {"seconds": 1.5}).id
    wait_for(lambda: warren.get(job_id).status == "processing", what="the job to start")

    warren.pause("type", "test-record")

    wait_for(lambda: warren.get(job_id).status == "completed", what="the running job to end")
    assert run_counts(engine, [job_id])[job_id] == 1


def test_a_job_enqueued_while_paused_waits_for_the_scheduler_after_resume(
    warren, engine, worker, scheduler
):
    """Parked rows are the scheduler's: without it they wait; with it they run."""
    warren.pause("type", "test-noop")
    job_id = warren.enqueue("test-noop", {}).id
    wait_for(lambda: parked(warren, [job_id]), what="the job to be parked")
    warren.resume("type", "test-noop")
    stays(lambda: warren.get(job_id).status == "pending", seconds=0.5)

    scheduler()
    wait_for(lambda: warren.get(job_id).status == "completed", what="the job to run")


def test_pause_and_resume_are_idempotent_and_name_what_exists(warren):
    assert warren.pause("tier", "low") == warren.pause("tier", "low")
    assert warren.paused().tiers == {"low"}
    assert warren.resume("tier", "low") == warren.resume("tier", "low")
    assert not warren.paused()

    with pytest.raises(NotFound, match="unknown tier 'urgent'"):
        warren.pause("tier", "urgent")
    with pytest.raises(NotFound, match=r"known types: .*send-email"):
        warren.pause("type", "no-such-type")
    with pytest.raises(NotFound):
        warren.resume("type", "no-such-type")


def test_park_touches_only_a_waiting_job_in_the_messages_life(warren, engine):
    job_id = warren.enqueue("test-record", {}).id
    warren.pause("type", "test-record")

    def park(life: int) -> Parking:
        with engine.begin() as conn:
            return job_store.park(conn, job_id, life, "test-record", "normal")

    assert park(7) is Parking.MOVED_ON  # a message of another life
    assert park(1) is Parking.PARKED
    assert park(1) is Parking.MOVED_ON  # parked: a newer life now
    job = warren.get(job_id)
    assert (job.life, job.published_at, job.attempts) == (2, None, 0)

    warren.cancel(job_id)
    assert park(2) is Parking.MOVED_ON  # final
    assert warren.get(job_id).status == "cancelled"


def test_park_leaves_a_job_no_pause_holds_any_longer(warren, engine):
    job_id = warren.enqueue("test-record", {}).id
    warren.pause("tier", "high")
    with engine.begin() as conn:
        assert job_store.park(conn, job_id, 1, "test-record", "normal") is Parking.NOT_HELD
        assert job_store.park(conn, job_id, 1, "test-record", "high") is Parking.PARKED
    assert warren.get(job_id).life == 2


def test_a_worker_that_read_the_pause_before_the_resume_runs_the_job_in_its_life(
    warren, engine, settings
):
    """A worker reads the pause set once a second; a job resumed within that second is not
    parked again, and the set is read again at once."""
    warren.pause("type", "test-record")
    state = PauseState(engine, ttl=3600)
    gate = PauseGate(engine, settings, state)
    assert state.current().types == {"test-record"}
    job_id = warren.enqueue("test-record", {}).id
    warren.resume("type", "test-record")

    job = warren.get(job_id)
    gate.before_process_message(None, Publisher(None, settings).message(dispatch_of(job)))

    assert warren.get(job_id).life == 1  # not parked: the lifecycle takes the message on
    assert not state.current()


def test_a_bulk_write_leaves_a_job_that_moved_to_another_life_alone(warren, engine):
    job_id = warren.enqueue("test-record", {}).id
    warren.cancel(job_id)
    with engine.begin() as conn:
        assert job_store.retry_many(conn, [(job_id, 5)]) == []
    assert warren.get(job_id).status == "cancelled"

    warren.retry(job_id)  # life 2, pending
    with engine.begin() as conn:
        assert job_store.cancel_many(conn, [(job_id, 1)]) == []
    assert warren.get(job_id).status == "pending"
    with engine.begin() as conn:
        assert len(job_store.cancel_many(conn, [(job_id, 2)])) == 1
    assert warren.get(job_id).status == "cancelled"
