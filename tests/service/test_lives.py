"""Every write a message, a timer or a person can cause is fenced by the life of its job.

A job's life starts at enqueue, at a retry by hand and at a DLQ replay; each new life gets
fresh attempts. A message of an earlier life (still queued, redelivered, or waiting in a
`.XQ` queue) must not claim, fail or dead-letter the newer life. The races are reproduced
deterministically: the scheduler's drain runs only once the new life is committed."""

import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pika
import pytest
import sqlalchemy as sa

from service.broker import (
    Dispatch,
    Publisher,
    QueueFamily,
    build_broker,
    pika_parameters,
    queue_family,
)
from service.drain import DRAIN, Drainer
from service.errors import NotFound
from service.scheduler import Scheduler
from service.store import attempts, dead_letters, jobs, publishing
from tests.conftest import delete_queues
from tests.helpers import runs, wait_for

ALWAYS_FAILS = {"failRuns": 1000}
FAST = {"strategy": "fixed", "baseSeconds": 0.1}


@pytest.fixture
def drainer(warren, engine):
    """The scheduler's dead-letter drain, run by hand."""
    drainer = Drainer(engine, warren.settings, warren.publisher.broker)
    yield drainer
    drainer.close()


def xq_depth(warren) -> int:
    return warren.queue_depths()[queue_family(warren.settings, "normal").dead]["messages"]


def failed_for_good(warren, start_worker, engine) -> tuple:
    """Run an always-failing job with two attempts to its end on a worker, then stop the
    worker. Its message is left in `.XQ`, not yet drained."""
    worker = start_worker()
    job_id = warren.enqueue("test-record", ALWAYS_FAILS, max_attempts=2, retry=FAST).id
    wait_for(lambda: warren.get(job_id).status == "failed", what="the first life to fail")
    wait_for(lambda: xq_depth(warren) == 1, what="the dead letter in .XQ")
    worker.stop()
    assert len(runs(engine, job_id)) == 2
    return job_id


def run_to_the_end(warren, start_worker, job_id):
    start_worker()
    return wait_for(
        lambda: (job := warren.get(job_id)).status in ("failed", "completed") and job,
        what="the new life to end",
    )


def test_a_retry_before_the_old_dead_letter_is_drained_gets_all_its_attempts(
    warren, start_worker, engine, drainer
):
    job_id = failed_for_good(warren, start_worker, engine)

    warren.retry(job_id)
    assert drainer.drain() == 0  # the old life's dead letter is dropped

    assert (warren.get(job_id).status, warren.get(job_id).life) == ("pending", 2)
    job = run_to_the_end(warren, start_worker, job_id)
    assert (job.status, job.attempts, job.life) == ("failed", 2, 2)
    assert len(runs(engine, job_id)) == 4
    assert [(a.life, a.number) for a in warren.attempts(job_id)] == [(1, 1), (1, 2), (2, 1), (2, 2)]


def test_a_dlq_replay_is_not_failed_by_a_late_copy_of_the_old_dead_letter(
    warren, start_worker, engine, drainer
):
    job_id = failed_for_good(warren, start_worker, engine)
    assert drainer.drain() == 1
    old_message = warren.dlq.list()[0]

    assert warren.dlq.replay({"jobIds": [str(job_id)]}) == 1
    job = warren.get(job_id)
    put_in_dead_letter_queue(warren, Dispatch(job.id, job.type, job.payload, 5, 60, life=1))
    assert drainer.drain() == 0

    assert warren.get(job_id).status == "pending"
    assert warren.dlq.list() == []
    job = run_to_the_end(warren, start_worker, job_id)
    assert (job.status, job.attempts, job.life) == ("failed", 2, 2)
    assert len(runs(engine, job_id)) == 4
    wait_for(lambda: xq_depth(warren) == 1, what="the new life's dead letter")
    assert drainer.drain() == 1
    [letter] = warren.dlq.list()
    assert letter.message["options"]["life"] == 2
    assert old_message.message["options"]["life"] == 1


def test_a_dlq_replay_and_the_drain_of_a_second_letter_of_the_job_both_finish(
    warren, start_worker, engine, drainer
):
    """The drain locks a job, then writes its letter; a replay took the letter first, then
    the job, and the two deadlocked (PostgreSQL aborted one after a second)."""
    job_id = failed_for_good(warren, start_worker, engine)
    assert drainer.drain() == 1
    letter = warren.dlq.list()[0]
    replayed: list = []

    with engine.begin() as drain:  # the drain of a duplicate of the letter, half done
        jobs.locked(drain, job_id)
        replay = threading.Thread(
            target=lambda: replayed.append(warren.dlq.replay({"jobIds": [str(job_id)]}))
        )
        replay.start()
        wait_for(lambda: waiting_for_locks(engine) > 0, what="the replay to wait for a lock")
        dead_letters.record(
            drain, job_id=job_id, type=letter.type, queue=letter.queue,
            message=letter.message, error=letter.error,
        )  # fmt: skip
    replay.join(timeout=30)

    assert replayed == [1]
    assert (warren.get(job_id).status, warren.get(job_id).life) == ("pending", 2)
    assert warren.dlq.list() == []


def test_of_two_replays_of_one_dead_job_at_once_one_replays_it_and_the_other_finds_it_gone(
    warren, start_worker, engine, drainer
):
    job_id = failed_for_good(warren, start_worker, engine)
    assert drainer.drain() == 1
    outcomes: list = []

    def replay() -> None:
        try:
            outcomes.append(warren.dlq.replay({"jobIds": [str(job_id)]}))
        except NotFound as exc:
            outcomes.append(exc)

    with engine.begin() as holder:  # both replays are under way before either may go on
        jobs.locked(holder, job_id)
        replays = [threading.Thread(target=replay) for _ in range(2)]
        for thread in replays:
            thread.start()
        wait_for(lambda: waiting_for_locks(engine) == 2, what="both replays to wait")
    for thread in replays:
        thread.join(timeout=30)

    assert [o for o in outcomes if not isinstance(o, NotFound)] == [1]  # it said "replayed 0"
    assert [type(o) for o in outcomes].count(NotFound) == 1
    assert warren.get(job_id).life == 2


def waiting_for_locks(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(
            sa.text(
                "SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid)"
                " WHERE NOT granted AND datname = current_database()"
            )
        )


def test_cancel_then_retry_is_not_failed_by_the_old_dead_letter(
    warren, start_worker, engine, drainer
):
    job_id = failed_for_good(warren, start_worker, engine)

    warren.retry(job_id)
    assert warren.cancel(job_id) == "pending"
    warren.retry(job_id)
    assert drainer.drain() == 0

    job = run_to_the_end(warren, start_worker, job_id)
    assert (job.status, job.attempts, job.life) == ("failed", 2, 3)
    assert len(runs(engine, job_id)) == 4


def test_a_retry_by_hand_takes_the_job_out_of_the_dlq(warren, start_worker, engine, drainer):
    job_id = failed_for_good(warren, start_worker, engine)
    drainer.drain()
    assert [letter.job_id for letter in warren.dlq.list()] == [job_id]

    warren.retry(job_id)

    assert warren.dlq.list() == []


def test_a_message_of_an_earlier_life_does_not_run_the_job(warren, start_worker, engine):
    job_id = warren.enqueue("test-record", {}).id  # its message waits: no worker yet
    warren.cancel(job_id)
    warren.retry(job_id)  # a second message, for life 2

    start_worker(threads=1)
    wait_for(lambda: warren.get(job_id).status == "completed", what="the job to complete")
    sentinel = warren.enqueue("test-record", {}).id
    wait_for(lambda: warren.get(sentinel).status == "completed", what="the queue to drain")

    assert len(runs(engine, job_id)) == 1
    assert [(a.life, a.number) for a in warren.attempts(job_id)] == [(2, 1)]


def put_in_dead_letter_queue(warren, dispatch: Dispatch) -> None:
    """A copy of a job's message in `.XQ`, as a duplicate delivery would leave it."""
    message = warren.publisher.message(dispatch)
    connection = pika.BlockingConnection(pika_parameters(warren.settings))
    try:
        dead = QueueFamily.of(message.queue_name).dead
        connection.channel().basic_publish("", dead, message.encode())
    finally:
        connection.close()


# -- the store's fences, one write at a time ----------------------------------------------------


@pytest.fixture
def stored(warren, engine):
    """A pending job with no message: `(job id, its row)`."""
    [job] = warren.submit([{"type": "test-record", "payload": {}}], batch=False)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET published_at = NULL"))
    return job.id


def claimed(engine, job_id, life=1):
    with engine.begin() as conn:
        return attempts.claim(conn, job_id, life, "test", 30)


def test_a_claim_for_an_earlier_life_changes_nothing(warren, engine, stored):
    failed = claimed(engine, stored)
    with engine.begin() as conn:
        attempts.fail(conn, failed, {"type": "E", "message": "x", "retryable": False}, None, None)
        jobs.retry(conn, stored)

    assert claimed(engine, stored, life=1) is None
    assert warren.get(stored).status == "pending"
    assert claimed(engine, stored, life=2).life == 2


def test_a_late_mark_of_an_earlier_life_does_not_hide_the_new_one(warren, engine, stored):
    failed = claimed(engine, stored)
    with engine.begin() as conn:
        attempts.fail(conn, failed, {"type": "E", "message": "x", "retryable": False}, None, None)
        job = jobs.retry(conn, stored)
        publishing.mark_published(conn, [Dispatch(stored, job.type, {}, 5, 60, life=1, attempts=0)])
    assert warren.get(stored).published_at is None

    with engine.begin() as conn:
        publishing.mark_published(conn, [Dispatch(stored, job.type, {}, 5, 60, life=2, attempts=0)])
    assert warren.get(stored).published_at is not None


def test_a_late_mark_of_an_earlier_attempt_does_not_hide_the_next(warren, engine, stored):
    first = claimed(engine, stored)
    retry_at = datetime.now(UTC) + timedelta(hours=2)  # beyond the horizon: a row to publish
    with engine.begin() as conn:
        attempts.fail(conn, first, {"type": "E", "message": "x", "retryable": True}, None, retry_at)
        publishing.mark_published(conn, [Dispatch(stored, "test-record", {}, 5, 60, attempts=0)])

    assert warren.get(stored).published_at is None


def test_a_takeover_of_an_attempt_that_already_ended_changes_nothing(warren, engine, stored):
    first = claimed(engine, stored)
    with engine.begin() as conn:
        attempts.fail(conn, first, {"type": "E", "message": "x", "retryable": True}, None, None)
        job = jobs.retry(conn, stored)
    second = claimed(engine, stored, life=job.life)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET lease_until = now() - interval '1 second'"))

        assert attempts.release_expired(conn, stored, first.attempt_id) is None
        assert attempts.release_expired(conn, stored, second.attempt_id).job.status == "pending"


def test_a_cancel_asked_during_an_attempt_wins_over_its_retry(warren, engine, stored):
    running = claimed(engine, stored)
    assert warren.cancel(stored) == "processing"
    retry_at = datetime.now(UTC) + timedelta(seconds=1)
    with engine.begin() as conn:
        error = {"type": "E", "message": "x", "retryable": True}
        assert attempts.fail(conn, running, error, None, retry_at) == "cancelled"

    job = warren.get(stored)
    assert (job.status, job.next_attempt_at) == ("cancelled", None)
    assert job.completed_at is not None


def test_an_undeliverable_message_of_an_earlier_life_leaves_the_job_alone(warren, engine, stored):
    failed = claimed(engine, stored)
    error = {"type": "E", "message": "x", "retryable": False}
    with engine.begin() as conn:
        attempts.fail(conn, failed, error, None, None)
        jobs.retry(conn, stored)

        assert jobs.fail_undeliverable(conn, stored, 1, error) is False
        assert jobs.fail_undeliverable(conn, stored, 2, error) is True


def test_a_scheduler_started_before_any_worker_drains_quietly(settings, engine, caplog):
    fresh = settings.model_copy(update={"queue_prefix": f"{settings.queue_prefix}_fresh"})
    publisher = Publisher(build_broker(fresh), fresh)
    drainer = Drainer(engine, fresh, publisher.broker)
    try:
        with caplog.at_level("WARNING"):
            assert drainer.drain() == 0
            assert drainer.drain() == 0
        assert [r.getMessage() for r in caplog.records if r.levelname != "INFO"] == []
    finally:
        drainer.close()
        publisher.close()
        delete_queues(fresh)


def test_the_scheduler_drains_on_one_channel_tick_after_tick(warren, engine):
    """RabbitMQ's management API counts the drain connection's channels once every few
    seconds: ticks run for longer than that, then the count must settle at one."""
    publisher = Publisher(build_broker(warren.settings), warren.settings)
    scheduler = Scheduler(engine, publisher, warren.settings)
    name = f"warren {warren.settings.queue_prefix}: {DRAIN}"
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            scheduler.tick()
        channels = wait_for(
            lambda: management_channels(name) == 1, timeout=15, what=f"one channel on {name}"
        )
        assert channels
    finally:
        scheduler.drainer.close()
        publisher.close()


def management_channels(connection_name: str) -> int | None:
    response = httpx.get(
        "http://127.0.0.1:15672/api/connections",
        params={"columns": "channels,client_properties.connection_name"},
        auth=("guest", "guest"),
    )
    response.raise_for_status()
    for connection in response.json():
        if connection.get("client_properties", {}).get("connection_name") == connection_name:
            return connection.get("channels")
    return None


def test_after_a_connection_reset_the_next_tick_works_again(warren, engine, caplog):
    publisher = Publisher(build_broker(warren.settings), warren.settings)
    scheduler = Scheduler(engine, publisher, warren.settings)
    try:
        scheduler.tick()
        publisher.broker.connection.close()  # as when RabbitMQ drops the connection
        scheduler.drainer._connection.close()

        with caplog.at_level("WARNING", logger="service.scheduler"):
            for _ in range(3):
                scheduler._next_lost_check = 0.0  # check for lost messages every tick
                scheduler.tick()
        failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
        assert len(failures) <= 1  # only the first tick meets the closed connection
    finally:
        scheduler.drainer.close()
        publisher.close()
