"""The API's relay: `POST /jobs` answers once the row is committed, and the relay publishes the
job right after; when it cannot, the row waits for the scheduler and nothing is lost."""

from falcon import testing

from api.app import create_app
from service.client import Warren
from tests.helpers import wait_for

CLOSED_BROKER = "amqp://guest:guest@127.0.0.1:1/%2F"


def offline_api(settings, engine) -> Warren:
    """The API's client with a relay, on a RabbitMQ that cannot be reached."""
    offline = settings.model_copy(update={"broker_url": CLOSED_BROKER})
    return Warren(offline, engine=engine, publish_in_background=True)


def test_jobs_enqueued_over_http_are_published_and_run(settings, engine, warren, worker):
    api = Warren(settings, engine=engine, publish_in_background=True)
    client = testing.TestClient(create_app(warren=api))
    try:
        ids = [
            client.simulate_post("/jobs", json={"type": "test-record", "payload": {}}).json["jobId"]
            for _ in range(20)
        ]
        batch = client.simulate_post(
            "/jobs/batch", json={"jobs": [{"type": "test-record", "payload": {}}] * 30}
        )
        ids += batch.json["jobIds"]

        def all_done():
            return all(warren.get(job_id).status == "completed" for job_id in ids)

        wait_for(all_done, what="every job to run")
    finally:
        api.relay.close()


def test_what_the_relay_cannot_publish_stays_for_the_scheduler(
    settings, engine, warren, worker, scheduler
):
    offline = offline_api(settings, engine)
    client = testing.TestClient(create_app(warren=offline))

    job_id = client.simulate_post("/jobs", json={"type": "test-record", "payload": {}}).json[
        "jobId"
    ]
    offline.relay.close()  # its publish has failed by now

    assert warren.get(job_id).published_at is None
    scheduler()
    wait_for(lambda: warren.get(job_id).status == "completed", what="the job to run")


def test_while_rabbitmq_is_down_the_relay_holds_a_bounded_number_of_jobs(
    settings, engine, warren, worker, scheduler
):
    offline = offline_api(settings, engine)
    offline.relay.max_waiting = 5
    client = testing.TestClient(create_app(warren=offline))

    body = {"jobs": [{"type": "test-record", "payload": {}}] * 4}
    ids = [
        job_id
        for _ in range(3)
        for job_id in client.simulate_post("/jobs/batch", json=body).json["jobIds"]
    ]

    assert offline.relay.waiting <= 5
    offline.relay.close()
    scheduler()
    wait_for(lambda: all(warren.get(job_id).status == "completed" for job_id in ids))


def test_a_stream_of_requests_shares_publishing_transactions(settings, engine, warren, worker):
    api = Warren(settings, engine=engine, publish_in_background=True)
    api.relay.publish_interval = 1.0
    sizes: list[int] = []
    publish_many = api.publisher.publish_many

    def counted(due):
        sizes.append(len(due))
        return publish_many(due)

    api.publisher.publish_many = counted
    client = testing.TestClient(create_app(warren=api))
    try:
        ids = [
            client.simulate_post("/jobs", json={"type": "test-record", "payload": {}}).json["jobId"]
            for _ in range(20)
        ]
        wait_for(lambda: all(warren.get(job_id).status == "completed" for job_id in ids))
    finally:
        api.relay.close()

    # The first job goes at once (with any that arrived before the relay's thread ran), the
    # rest share the next transaction: two publishing transactions for twenty requests.
    assert len(sizes) == 2 and sum(sizes) == 20 and sizes[0] < sizes[1], sizes
