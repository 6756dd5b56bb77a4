"""`PATCH /jobs/{id}`: a pending job moves to a new time and/or priority, and runs once, then,
from its new tier; a message published before cannot run it early or twice."""

from datetime import UTC, datetime, timedelta

import dramatiq
import pytest

from service.broker import queue_family
from tests.helpers import ready_messages, runs, wait_for


def enqueue(client, **fields) -> str:
    body = {"type": "test-record", "payload": {}, **fields}
    response = client.simulate_post("/jobs", json=body)
    assert response.status_code == 201, response.json
    return response.json["jobId"]


def patch(client, job_id: str, body) -> "object":
    return client.simulate_patch(f"/jobs/{job_id}", json=body)


class Skipped(dramatiq.Middleware):
    """Records the messages a worker skipped (the lifecycle refused to claim their job)."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def after_skip_message(self, broker, message) -> None:
        self.ids.append(message.message_id)


def test_a_job_moved_later_does_not_run_at_its_old_time(client, warren, worker, engine):
    skipped = Skipped()
    worker.broker.add_middleware(skipped)
    job_id = enqueue(client, delaySeconds=1)
    later = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)

    response = patch(client, job_id, {"scheduledAt": later.isoformat()})

    assert response.status_code == 200, response.json
    assert datetime.fromisoformat(response.json["job"]["scheduledAt"]) == later
    # Its old message comes due a second later; the worker takes it and drops it.
    wait_for(lambda: job_id in skipped.ids, what="the old message dropped")
    assert warren.get(job_id).status == "pending"
    assert runs(engine, job_id) == []


def test_a_job_moved_sooner_runs_once_at_its_new_time(client, warren, worker, engine):
    job_id = enqueue(client, delaySeconds=3600)

    assert patch(client, job_id, {"delaySeconds": 0}).status_code == 200

    wait_for(lambda: warren.get(job_id).status == "completed")
    assert len(runs(engine, job_id)) == 1


def test_a_raised_priority_moves_the_job_to_the_high_tier(client, warren, settings):
    job_id = enqueue(client, priority="low", delaySeconds=300)
    assert ready_messages(settings, queue_family(settings, "low").delayed) == 1

    response = patch(client, job_id, {"priority": "high"})

    assert response.status_code == 200 and response.json["job"]["priority"] == 10
    assert ready_messages(settings, queue_family(settings, "high").delayed) == 1


def test_the_old_message_of_a_rescheduled_job_does_not_run_it_twice(
    client, warren, engine, start_worker
):
    job_id = enqueue(client)  # its message waits: no worker runs yet
    assert patch(client, job_id, {"priority": "high"}).status_code == 200

    start_worker()

    wait_for(lambda: warren.get(job_id).status == "completed")
    assert len(runs(engine, job_id)) == 1


def test_only_a_pending_job_can_be_rescheduled(client, warren, worker):
    job_id = enqueue(client)
    wait_for(lambda: warren.get(job_id).status == "completed")

    response = patch(client, job_id, {"priority": 9})

    assert response.status_code == 409
    assert response.json["error"]["code"] == "conflict"
    assert "only pending jobs can be rescheduled" in response.json["error"]["message"]


def test_an_unknown_job_is_a_404(client, warren):
    response = patch(client, "5b0c7f3e-7d7e-4d0e-9a55-3f1c2b1f0a11", {"priority": 9})

    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "(body)"),
        ({"priority": 11}, "priority"),
        ({"priority": "urgent"}, "priority"),
        ({"scheduledAt": "tomorrow"}, "scheduledAt"),
        ({"scheduledAt": "2030-01-01T00:00:00"}, "scheduledAt"),
        ({"delaySeconds": -1}, "delaySeconds"),
        ({"delaySeconds": 5, "scheduledAt": "2030-01-01T00:00:00Z"}, "(body)"),
        ({"status": "completed"}, "status"),
        ([], "(body)"),
    ],
)
def test_a_bad_reschedule_is_a_422_naming_the_field(client, warren, body, field):
    job_id = enqueue(client, delaySeconds=3600)

    response = patch(client, job_id, body)

    assert response.status_code == 422, response.json
    assert field in [d["field"] for d in response.json["error"]["details"]]
    assert warren.get(job_id).life == 1  # nothing changed
