"""The relay: `POST /jobs` answers once the row is committed, and the scheduler's relay publishes
the job within moments, once; a job stored while no scheduler ran waits for one, and nothing
is lost."""

import json
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from falcon import testing

from api.app import create_app
from service.broker import Publisher, build_broker, queue_name
from service.client import Warren
from service.relay import BUSY_INTERVAL, IDLE_INTERVAL, PUBLISH_INTERVAL, Relay
from service.store import dead_letters
from tests.helpers import ready_messages, wait_for

RECORD = {"type": "test-record", "payload": {}}
#: A tick that publishes nothing the relay should have: stranded rows only after five minutes.
QUIET_TICKS = {"dispatch_interval_seconds": 60.0, "stranded_after_seconds": 300.0}


@pytest.fixture
def api(settings, engine) -> Iterator[testing.TestClient]:
    """`POST /jobs` as `warren api` serves it: it stores jobs and leaves publishing to a relay."""
    server = Warren(settings, engine=engine, relayed=True)
    yield testing.TestClient(create_app(warren=server))
    server.close()


@pytest.fixture
def relays(settings, engine) -> Iterator:
    """Start relays of their own (without a scheduler's tick): `relays(count)`."""
    stop, started = threading.Event(), []

    def start(count: int = 1, publisher: Publisher | None = None, **options) -> list[Relay]:
        for _ in range(count):
            relay = Relay(
                publisher or Publisher(build_broker(settings), settings), settings, **options
            )
            thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
            thread.start()
            started.append((relay, thread))
        return [relay for relay, _ in started]

    yield start
    stop.set()
    for _, thread in started:
        thread.join(timeout=10)


def enqueue_over_http(api, singles: int, batched: int) -> list[str]:
    ids = [api.simulate_post("/jobs", json=RECORD).json["jobId"] for _ in range(singles)]
    if batched:
        ids += api.simulate_post("/jobs/batch", json={"jobs": [RECORD] * batched}).json["jobIds"]
    return ids


def test_jobs_enqueued_over_http_are_published_by_the_scheduler_relay_and_run(
    api, warren, worker, scheduler
):
    scheduler(**QUIET_TICKS)
    ids = enqueue_over_http(api, singles=20, batched=300)

    wait_for(
        lambda: all(warren.get(job_id).status == "completed" for job_id in ids),
        what="every job to run, published by the relay (the tick waits a minute)",
    )


def test_each_job_gets_one_message_however_many_relays_listen_and_scripts_enqueue(
    api, settings, warren, relays
):
    relays(2)
    ids = enqueue_over_http(api, singles=30, batched=450)
    ids += [warren.enqueue("test-record", {}).id for _ in range(30)]  # a script publishes its own

    wait_for(lambda: all(warren.get(job_id).published_at for job_id in ids), what="all published")
    queue = queue_name(settings, "normal")
    wait_for(lambda: ready_messages(settings, queue) >= len(ids), what="every message")
    assert ready_messages(settings, queue) == len(ids)


def test_jobs_stored_while_no_scheduler_ran_are_published_when_one_starts(
    api, warren, worker, scheduler
):
    ids = enqueue_over_http(api, singles=3, batched=5)
    assert all(warren.get(job_id).published_at is None for job_id in ids)  # nobody relays yet

    scheduler(**QUIET_TICKS)
    wait_for(lambda: all(warren.get(job_id).status == "completed" for job_id in ids))


def test_what_the_tick_published_meanwhile_the_relay_does_not_publish_again(
    api, settings, warren, scheduler
):
    ids = enqueue_over_http(api, singles=2, batched=3)
    scheduler(stranded_after_seconds=0.0, dispatch_interval_seconds=60.0)  # both find them
    queue = queue_name(settings, "normal")

    wait_for(lambda: ready_messages(settings, queue) >= len(ids), what="every message")
    with pytest.raises(AssertionError):  # and no second message comes
        wait_for(lambda: ready_messages(settings, queue) > len(ids), timeout=1.0)


def test_what_rabbitmq_refuses_stays_flagged_and_a_later_batch_publishes_it(
    api, settings, warren, worker, relays
):
    offline = settings.model_copy(update={"broker_url": "amqp://guest:guest@127.0.0.1:1/%2F"})
    relays(publisher=Publisher(build_broker(offline), offline))
    job_id = api.simulate_post("/jobs", json=RECORD).json["jobId"]

    with pytest.raises(AssertionError):  # the relay tries, and its marks are rolled back
        wait_for(lambda: warren.get(job_id).published_at, timeout=1.5)
    assert warren.get(job_id).for_relay

    relays()  # RabbitMQ is back, for a relay that can reach it
    wait_for(lambda: warren.get(job_id).status == "completed", what="the job to run")


def test_the_relay_leaves_a_paused_type_parked_until_it_is_resumed(
    api, settings, warren, worker, scheduler
):
    warren.pause("type", "test-record")
    scheduler(dispatch_interval_seconds=0.2, stranded_after_seconds=0.0)
    job_id = api.simulate_post("/jobs", json=RECORD).json["jobId"]
    queue = queue_name(settings, "normal")

    with pytest.raises(AssertionError):  # neither the relay nor the tick publishes it
        wait_for(lambda: warren.get(job_id).published_at, timeout=1.0)
    assert not warren.get(job_id).for_relay  # left to the tick
    assert ready_messages(settings, queue) == 0

    warren.resume("type", "test-record")
    wait_for(lambda: warren.get(job_id).status == "completed", what="the job to run")


def test_a_stream_of_requests_shares_publishing_transactions(api, warren, worker, relays):
    (relay,) = relays(publish_interval=1.0)
    sizes: list[int] = []
    publish_many = relay.publisher.publish_many

    def counted(due):
        due = list(due)
        sizes.append(len(due))
        return publish_many(due)

    relay.publisher.publish_many = counted
    ids = enqueue_over_http(api, singles=20, batched=0)
    wait_for(lambda: all(warren.get(job_id).status == "completed" for job_id in ids))

    # The relay looks once a second here: twenty requests share two or three transactions.
    transactions = [size for size in sizes if size]
    assert sum(transactions) == 20 and len(transactions) <= 3, sizes


def test_the_relay_looks_less_often_under_load_and_when_idle(relays):
    (relay,) = relays()

    assert relay.pause_after(taken=1, quiet_for=0.0) == PUBLISH_INTERVAL
    # A busy look (five jobs or more) lets the next batch grow for 50 ms.
    assert relay.pause_after(taken=40, quiet_for=0.0) == BUSY_INTERVAL
    # After a second without a job, every 100 ms.
    assert relay.pause_after(taken=0, quiet_for=1.5) == IDLE_INTERVAL


def flagged_and_unpublished(engine, ids: list[str]) -> int:
    with engine.connect() as conn:
        return conn.scalar(
            sa.text(
                "SELECT count(*) FROM jobs WHERE id = ANY(CAST(:ids AS uuid[]))"
                " AND for_relay AND published_at IS NULL"
            ),
            {"ids": ids},
        )


def test_jobs_the_api_retries_or_replays_in_bulk_are_left_to_the_relay_and_run(
    api, warren, engine, settings, relays, worker
):
    cancelled = [str(warren.enqueue("test-record", {}, delay_seconds=3600).id) for _ in range(40)]
    for job_id in cancelled:
        warren.cancel(job_id)
    dead = [str(warren.enqueue("test-record", {}, delay_seconds=3600).id) for _ in range(10)]
    error = {"type": "RuntimeError", "message": "boom", "retryable": True}
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE jobs SET status = 'failed', error = :e WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"e": json.dumps(error), "ids": dead},
        )
        for job_id in dead:
            dead_letters.record(
                conn,
                job_id=job_id,
                type="test-record",
                queue=queue_name(settings, "normal"),
                message={"kwargs": {}},
                error=error,
            )

    retried = api.simulate_post("/jobs/retry", json={"filter": {"status": "cancelled"}})
    replayed = api.simulate_post("/dlq/replay", json={"all": True})

    assert retried.json["changed"] == 40 and replayed.json["replayed"] == 10
    assert flagged_and_unpublished(engine, cancelled + dead) == 50  # the requests wrote rows only
    relays(1)
    wait_for(
        lambda: all(warren.get(job_id).status == "completed" for job_id in cancelled + dead),
        what="every job retried or replayed to run, published by the relay",
    )
    assert {warren.get(job_id).life for job_id in cancelled + dead} == {2}
