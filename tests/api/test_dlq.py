"""The dead-letter inspector: GET /dlq, GET /dlq/groups, POST /dlq/replay, DELETE /dlq.

A job that fails for good is nacked into `<queue>.XQ`; the scheduler drains it into the
`dead_letters` table where these routes see it."""

import uuid

import pika
import pytest
import sqlalchemy as sa

from service.broker import Dispatch, pika_parameters
from service.enqueue import build_row, parse
from service.errors import BadRequest
from service.store import jobs
from tests.helpers import wait_for

FAST = {"strategy": "fixed", "baseSeconds": 0.1}


@pytest.fixture
def pipeline(worker, scheduler):
    """A worker and a scheduler: what a deployment runs."""
    scheduler()


def dlq(client, **params):
    response = client.simulate_get("/dlq", params=params)
    assert response.status_code == 200, response.json
    return response.json


def dead(client, job_id):
    return wait_for(
        lambda: [m for m in dlq(client)["messages"] if m["jobId"] == job_id],
        what=f"job {job_id} in the DLQ",
    )[0]


def fail_for_good(client, runs=2, **payload):
    body = {
        "type": "test-record",
        "payload": {"failRuns": runs, **payload},
        "maxAttempts": 2,
        "retry": FAST,
    }
    return client.simulate_post("/jobs", json=body).json["jobId"]


def test_a_job_that_exhausts_its_attempts_lands_in_the_dlq(client, warren, pipeline):
    job_id = fail_for_good(client)

    letter = dead(client, job_id)

    assert warren.get(job_id).status == "failed"
    assert letter["type"] == "test-record"
    assert letter["queue"] == f"{warren.settings.queue_prefix}.normal"
    assert letter["error"]["type"] == "RuntimeError"
    assert letter["payload"]["failRuns"] == 2
    assert letter["deadAt"].endswith("Z")
    assert letter["xDeath"][0]["reason"] == "rejected"


def test_groups_count_dead_letters_by_fingerprint(client, pipeline):
    ids = [fail_for_good(client, tag=str(n)) for n in range(2)]
    for job_id in ids:
        dead(client, job_id)

    [group] = client.simulate_get("/dlq/groups").json["groups"]

    assert group["count"] == 2
    assert group["sampleError"]["type"] == "RuntimeError"
    assert group["types"] == ["test-record"]
    filtered = dlq(client, fingerprint=group["fingerprint"])
    assert filtered["count"] == 2


def test_replay_runs_the_job_again_with_fresh_attempts(client, warren, pipeline):
    job_id = fail_for_good(client)
    dead(client, job_id)

    response = client.simulate_post("/dlq/replay", json={"jobIds": [job_id]})

    assert response.status_code == 202
    assert response.json["replayed"] == 1
    job = wait_for(lambda: (j := warren.get(job_id)).status == "completed" and j)
    assert job.attempts == 1
    assert dlq(client)["count"] == 0


def test_replay_all_and_replay_by_fingerprint(client, warren, pipeline):
    first, second = fail_for_good(client), fail_for_good(client)
    letter = dead(client, first)
    dead(client, second)

    by_fingerprint = client.simulate_post(
        "/dlq/replay", json={"fingerprint": letter["fingerprint"]}
    )

    assert by_fingerprint.json["replayed"] == 2
    for job_id in (first, second):
        wait_for(lambda job_id=job_id: warren.get(job_id).status == "completed")
    assert client.simulate_post("/dlq/replay", json={"all": True}).json["replayed"] == 0


def test_replaying_an_id_not_in_the_dlq_is_404_and_replays_nothing(client, pipeline):
    job_id = fail_for_good(client)
    dead(client, job_id)

    response = client.simulate_post("/dlq/replay", json={"jobIds": [job_id, str(uuid.uuid4())]})

    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"
    assert dlq(client)["count"] == 1


def test_a_letter_whose_job_retention_deleted_is_kept_not_lost_by_a_replay(
    client, warren, engine, pipeline
):
    """Failed jobs and dead letters are kept for their own number of days: a letter can
    outlive its job. Replaying it would start nothing; the letter stays for a person to see."""
    job_id = fail_for_good(client)
    dead(client, job_id)
    with engine.begin() as conn:  # the job finished 40 days ago; its letter is new
        conn.execute(
            sa.text("UPDATE jobs SET created_at = now() - interval '40 days',"
                    " completed_at = now() - interval '40 days' WHERE id = :id"),
            {"id": job_id},
        )  # fmt: skip
    assert warren.prune()["failed"] == 1

    by_id = client.simulate_post("/dlq/replay", json={"jobIds": [job_id]})
    everything = client.simulate_post("/dlq/replay", json={"all": True})

    assert by_id.status_code == 409 and by_id.json["error"]["code"] == "conflict"
    assert "deleted by retention" in by_id.json["error"]["message"]
    assert (everything.status_code, everything.json["replayed"]) == (202, 0)
    assert [m["jobId"] for m in dlq(client)["messages"]] == [job_id]


def test_purge_removes_dead_letters_and_leaves_the_job_failed(client, warren, pipeline):
    job_id = fail_for_good(client)
    dead(client, job_id)

    response = client.simulate_delete("/dlq", json={"jobIds": [job_id]})

    assert response.json == {"success": True, "purged": 1}
    assert dlq(client)["count"] == 0
    assert warren.get(job_id).status == "failed"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"jobIds": []},
        {"jobIds": ["nope"]},
        {"all": False},
        {"all": True, "x": 1},
        {"all": 1},  # replayed or purged every dead letter: 1 == True
        {"all": 1.0},
        {"all": "true"},
    ],
)
def test_a_bad_selection_is_400(client, body):
    assert client.simulate_post("/dlq/replay", json=body).status_code == 400
    assert client.simulate_delete("/dlq", json=body).status_code == 400


def test_a_job_no_worker_knows_fails_and_lands_in_the_dlq(client, warren, engine, pipeline):
    row = build_row(parse({"type": "test-noop", "payload": {}}), warren.registry)
    row["type"] = "retired-job-type"
    with engine.begin() as conn:
        jobs.insert(conn, [row])
    warren.publisher.publish(Dispatch(row["id"], "retired-job-type", {}, 5, 60))

    letter = dead(client, str(row["id"]))

    assert letter["error"]["type"] == "Undeliverable"
    assert "retired-job-type" in letter["error"]["message"]
    job = warren.get(row["id"])
    assert job.status == "failed"
    assert job.error["type"] == "Undeliverable"


def test_an_undecodable_message_lands_in_the_dlq(client, settings, pipeline):
    connection = pika.BlockingConnection(pika_parameters(settings))
    connection.channel().basic_publish("", f"{settings.queue_prefix}.normal", b"\x00not json")
    connection.close()

    letter = wait_for(lambda: dlq(client)["messages"], what="the message in the DLQ")[0]

    assert letter["error"]["type"] == "UndecodableMessage"
    assert letter["jobId"] is None


def test_the_python_client_refuses_a_nul_in_dead_letter_filters(warren):
    with pytest.raises(BadRequest):
        warren.dlq.list(type="a\x00b")
