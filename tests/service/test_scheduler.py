"""The scheduler (`warren scheduler`) gives every pending job a message: enqueues whose
publish failed, schedules and retries too far ahead to hold as delayed messages."""

import time

import sqlalchemy as sa
from falcon import testing
from sqlmodel import Session

from api.app import create_app
from service.broker import Publisher, build_broker, dispatch_of
from service.client import Warren
from service.scheduler import Scheduler
from service.store import publishing
from tests.conftest import purge_queues
from tests.helpers import wait_for

CLOSED_BROKER = "amqp://guest:guest@127.0.0.1:1/%2F"


def final(warren, job_id, timeout=20.0):
    return wait_for(
        lambda: (job := warren.get(job_id)).status in ("completed", "failed") and job,
        timeout=timeout,
        what=f"job {job_id} to finish",
    )


def test_with_rabbitmq_unreachable_enqueue_still_answers_201_and_the_job_runs_later(
    warren, settings, engine, worker, scheduler
):
    offline = Warren(settings.model_copy(update={"broker_url": CLOSED_BROKER}), engine=engine)
    client = testing.TestClient(create_app(warren=offline))

    started = time.monotonic()
    response = client.simulate_post("/jobs", json={"type": "test-record", "payload": {}})

    assert response.status_code == 201
    assert time.monotonic() - started < 5
    job_id = response.json["jobId"]
    assert warren.get(job_id).published_at is None

    scheduler()
    assert final(warren, job_id).status == "completed"


def test_a_job_due_beyond_the_horizon_is_a_row_until_the_scheduler_publishes_it(
    warren, settings, engine, worker, scheduler
):
    near = Warren(settings.model_copy(update={"delay_horizon_seconds": 1.0}), engine=engine)
    job_id = near.enqueue("test-record", {}, delay_seconds=2.5).id

    assert warren.get(job_id).published_at is None
    scheduler(delay_horizon_seconds=1.0)
    published = wait_for(lambda: (j := warren.get(job_id)).published_at and j)

    job = final(warren, job_id)
    assert job.status == "completed"
    assert published.published_at < job.scheduled_at
    assert job.started_at >= job.scheduled_at


def test_a_retry_due_beyond_the_horizon_waits_as_a_row(warren, start_worker, scheduler):
    start_worker(delay_horizon_seconds=1.0)
    job_id = warren.enqueue(
        "test-record", {"failTimes": 1}, retry={"strategy": "fixed", "baseSeconds": 2}
    ).id

    waiting = wait_for(lambda: (j := warren.get(job_id)).attempts == 1 and j.error and j)
    assert waiting.status == "pending"
    assert waiting.published_at is None
    assert waiting.next_attempt_at is not None

    scheduler(delay_horizon_seconds=1.0)
    job = final(warren, job_id)
    assert job.status == "completed"
    assert job.attempts == 2


def test_enqueue_in_the_callers_transaction_publishes_only_on_commit(warren, engine, worker):
    with Session(engine) as session:
        kept = warren.enqueue("test-record", {"tag": "kept"}, session=session).id
        assert warren.list({"payload.tag": "kept"}).jobs == []  # not visible before commit
        session.commit()

    with Session(engine) as session:
        dropped = warren.enqueue("test-record", {"tag": "dropped"}, session=session).id
        session.rollback()

    assert final(warren, kept).status == "completed"
    assert warren.list({"payload.tag": "dropped"}).jobs == []
    assert dropped not in {job.id for job in warren.list().jobs}


def test_a_savepoint_rolled_back_forgets_only_the_jobs_enqueued_in_it(warren, engine, worker):
    """No scheduler runs here: a job runs only if the client published it after the commit.
    A savepoint's rollback made the client forget every job of the session."""
    with Session(engine) as session:
        before = warren.enqueue("test-record", {"tag": "before"}, session=session).id
        savepoint = session.begin_nested()
        warren.enqueue("test-record", {"tag": "inside"}, session=session)
        savepoint.rollback()
        session.begin_nested().rollback()  # an unrelated one, with nothing enqueued in it
        after = warren.enqueue("test-record", {"tag": "after"}, session=session).id
        session.commit()

    assert final(warren, before).status == "completed"
    assert final(warren, after).status == "completed"
    assert warren.list({"payload.tag": "inside"}).jobs == []


def test_marking_jobs_published_never_waits_for_a_row_another_transaction_holds(warren, engine):
    """A worker's group commit locks its rows in its own order: a batch of marks that waited
    for one of them while holding another could deadlock with it (seen while a Python client
    enqueued batches of 1,000 beside running workers: each deadlock stalled both a second)."""
    held, free = (warren.enqueue("test-record", {}).id for _ in range(2))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET published_at = NULL"))
    dispatches = [dispatch_of(warren.get(job_id)) for job_id in (held, free)]

    with engine.connect() as holder, holder.begin():
        holder.execute(sa.text("SELECT 1 FROM jobs WHERE id = :id FOR UPDATE"), {"id": held})
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
            publishing.mark_published(conn, dispatches)  # waiting for `held` would time out

    assert warren.get(held).published_at is None  # its holder is changing it
    assert warren.get(free).published_at is not None


def age(engine, job_id, hours: int = 2) -> None:
    """Make a job look published and due `hours` ago."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE jobs SET created_at = created_at - make_interval(hours => :h),"
                " published_at = published_at - make_interval(hours => :h) WHERE id = :id"
            ),
            {"h": hours, "id": job_id},
        )


def test_a_job_whose_message_was_lost_is_published_again(
    warren, settings, engine, start_worker, scheduler
):
    job_id = warren.enqueue("test-record", {}).id
    purge_queues(settings)  # the message is gone; the row still says published
    age(engine, job_id)

    start_worker()
    scheduler(republish_after_seconds=3600)

    assert final(warren, job_id).status == "completed"


def test_a_job_whose_message_is_still_queued_is_not_published_again(
    warren, settings, engine, clean
):
    job_id = warren.enqueue("test-record", {}).id
    age(engine, job_id)
    publisher = Publisher(build_broker(settings), settings)
    try:
        tick = Scheduler(engine, publisher, settings).tick()
    finally:
        publisher.close()

    assert tick.republished == 0
    depth = warren.queue_depths()[f"{settings.queue_prefix}.normal"]
    assert depth["messages"] == 1
