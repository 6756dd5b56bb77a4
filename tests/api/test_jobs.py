"""POST /jobs, POST /jobs/batch, GET /jobs/{id}, GET /jobs/{id}/attempts, GET /jobs,
POST /jobs/{id}/retry and DELETE /jobs/{id}: the contract of CONTRACT.md."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import wait_for

EMAIL = {"to": "user@example.com", "subject": "Test", "body": "Hello!"}


def enqueue(client, **body):
    body = {"type": "test-noop", "payload": {}, **body}
    return client.simulate_post("/jobs", json=body)


def job(client, job_id):
    response = client.simulate_get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.json
    return response.json["job"]


# -- POST /jobs --------------------------------------------------------------------------------


def test_enqueue_answers_201_with_the_job_id_and_stores_a_pending_job(client):
    response = client.simulate_post("/jobs", json={"type": "send-email", "payload": EMAIL})

    assert response.status_code == 201
    assert response.json["success"] is True
    assert response.json["message"] == "Job enqueued successfully"
    stored = job(client, response.json["jobId"])
    assert stored["type"] == "send-email"
    assert stored["status"] == "pending"
    assert stored["payload"]["subject"] == "Test"
    assert stored["priority"] == 5
    assert stored["maxAttempts"] == 5  # send-email's own default
    assert stored["attempts"] == 0
    assert stored["createdAt"].endswith("Z")


def test_enqueue_over_http_runs_on_a_real_worker(client, worker):
    response = enqueue(client, type="test-record", payload={"tag": "http"})
    job_id = response.json["jobId"]

    done = wait_for(lambda: (j := job(client, job_id))["status"] == "completed" and j)

    assert done["result"] == {"attempt": 1, "tag": "http"}
    assert done["attempts"] == 1
    assert done["completedAt"] is not None


@pytest.mark.parametrize(("given", "stored"), [("high", 10), ("normal", 5), ("low", 1), (7, 7)])
def test_priority_takes_names_and_numbers(client, given, stored):
    response = enqueue(client, priority=given)
    assert response.status_code == 201
    assert job(client, response.json["jobId"])["priority"] == stored


def test_options_override_the_job_type_defaults(client):
    response = enqueue(client, maxAttempts=7, timeoutSeconds=12)
    stored = job(client, response.json["jobId"])
    assert (stored["maxAttempts"], stored["timeoutSeconds"]) == (7, 12)


def test_a_repeated_idempotency_key_returns_the_first_job_with_200(client, job_count):
    first = enqueue(client, idempotencyKey="welcome-42")
    again = enqueue(client, idempotencyKey="welcome-42", priority="high")

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json["jobId"] == first.json["jobId"]
    assert job_count() == 1


def test_a_delay_of_a_month_is_a_row_not_a_message(client):
    response = enqueue(client, delaySeconds=30 * 86400)
    stored = job(client, response.json["jobId"])

    scheduled = datetime.fromisoformat(stored["scheduledAt"])
    assert scheduled > datetime.now(UTC) + timedelta(days=29)
    assert stored["status"] == "pending"


def test_scheduled_at_sets_when_the_job_may_start(client):
    response = enqueue(client, scheduledAt="2031-12-01T09:00:00Z")
    assert job(client, response.json["jobId"])["scheduledAt"] == "2031-12-01T09:00:00.000Z"


BAD_REQUESTS = [
    ("not json", 400, "bad_request", None),
    ({"type": "no-such-type", "payload": {}}, 400, "unknown_job_type", None),
    ({"payload": {}}, 422, "validation_error", "type"),
    ({"type": "test-noop"}, 422, "validation_error", "payload"),
    ({"type": "test-noop", "payload": {}, "colour": "red"}, 422, "validation_error", "colour"),
    ({"type": "test-noop", "payload": {}, "priority": 11}, 422, "validation_error", "priority"),
    (
        {"type": "test-noop", "payload": {}, "priority": "urgent"},
        422,
        "validation_error",
        "priority",
    ),
    (
        {"type": "test-noop", "payload": {}, "maxAttempts": 0},
        422,
        "validation_error",
        "maxAttempts",
    ),
    (
        {"type": "test-noop", "payload": {}, "maxAttempts": 26},
        422,
        "validation_error",
        "maxAttempts",
    ),
    (
        {"type": "test-noop", "payload": {}, "timeoutSeconds": 0},
        422,
        "validation_error",
        "timeoutSeconds",
    ),
    (
        {"type": "test-noop", "payload": {}, "delaySeconds": -1},
        422,
        "validation_error",
        "delaySeconds",
    ),
    (
        {
            "type": "test-noop",
            "payload": {},
            "delaySeconds": 5,
            "scheduledAt": "2031-01-01T00:00:00Z",
        },
        422,
        "validation_error",
        None,
    ),
    (
        {"type": "test-noop", "payload": {}, "scheduledAt": "tomorrow"},
        422,
        "validation_error",
        "scheduledAt",
    ),
    ({"type": "test-noop", "payload": {"n": "many"}}, 422, "validation_error", "payload.n"),
    (
        {"type": "send-email", "payload": {"subject": "x", "body": "y"}},
        422,
        "validation_error",
        "payload.to",
    ),
    ([1, 2], 422, "validation_error", None),
]


@pytest.mark.parametrize(("body", "status", "code", "field"), BAD_REQUESTS)
def test_bad_requests_get_their_status_and_code_and_change_nothing(
    client, job_count, body, status, code, field
):
    if isinstance(body, str):
        response = client.simulate_post("/jobs", body=body, content_type="application/json")
    else:
        response = client.simulate_post("/jobs", json=body)

    assert response.status_code == status
    assert response.json["success"] is False
    assert response.json["error"]["code"] == code
    assert response.json["error"]["message"]
    if field:
        assert field in [d["field"] for d in response.json["error"]["details"]]
    assert "Traceback" not in response.text
    assert job_count() == 0


def test_unknown_type_lists_the_known_types(client):
    response = enqueue(client, type="no-such-type")
    assert "send-email" in response.json["error"]["message"]
    assert "webhook-delivery" in response.json["error"]["message"]


def test_unknown_type_names_the_type_field(client, job_count):
    response = enqueue(client, type="no-such-type")

    assert response.status_code == 400
    [detail] = response.json["error"]["details"]
    assert detail["field"] == "type"
    assert "'no-such-type'" in detail["message"] and "send-email" in detail["message"]
    assert job_count() == 0


def test_a_body_over_the_limit_is_413(client, job_count, warren):
    big = {"type": "test-noop", "payload": {"pad": "x" * warren.settings.max_payload_bytes}}
    response = client.simulate_post("/jobs", json=big)

    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"
    assert job_count() == 0


# -- POST /jobs/batch --------------------------------------------------------------------------


def test_a_batch_enqueues_every_job_and_returns_their_ids_in_order(client):
    items = [{"type": "test-noop", "payload": {"n": n}} for n in range(3)]
    response = client.simulate_post("/jobs/batch", json={"jobs": items})

    assert response.status_code == 201
    ids = response.json["jobIds"]
    assert [job(client, i)["payload"]["n"] for i in ids] == [0, 1, 2]


def test_a_batch_with_one_bad_item_enqueues_nothing_and_names_the_item(client, job_count):
    items = [
        {"type": "test-noop", "payload": {}},
        {"type": "test-noop", "payload": {"n": "x"}},
    ]
    response = client.simulate_post("/jobs/batch", json={"jobs": items})

    assert response.status_code == 422
    assert [d["field"] for d in response.json["error"]["details"]] == ["jobs[1].payload.n"]
    assert job_count() == 0


@pytest.mark.parametrize(
    "body",
    [{"jobs": []}, {"jobs": "x"}, {}, {"jobs": [{"type": "test-noop", "payload": {}}], "x": 1}],
)
def test_a_malformed_batch_is_422(client, job_count, body):
    response = client.simulate_post("/jobs/batch", json=body)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"
    assert job_count() == 0


def test_a_batch_over_1000_jobs_is_refused(client, job_count):
    items = [{"type": "test-noop", "payload": {}}] * 1001
    response = client.simulate_post("/jobs/batch", json={"jobs": items})
    assert response.status_code == 422
    assert job_count() == 0


def test_a_batch_with_an_unknown_type_is_400_and_names_the_item(client, job_count):
    items = [{"type": "test-noop", "payload": {}}, {"type": "nope", "payload": {}}]
    response = client.simulate_post("/jobs/batch", json={"jobs": items})

    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "unknown_job_type"
    assert "jobs[1]" in error["message"]
    assert "send-email" in error["message"] and "test-noop" in error["message"]
    [detail] = error["details"]
    assert detail["field"] == "jobs[1].type"
    assert "'nope'" in detail["message"] and "webhook-delivery" in detail["message"]
    assert job_count() == 0
    assert client.simulate_get("/jobs").json["count"] == 0


def test_a_batch_names_every_unknown_type_and_every_invalid_field(client, job_count):
    items = [
        {"type": "nope", "payload": {}},
        {"type": "test-noop", "payload": {}},
        {"type": "test-noop", "payload": {"n": "x"}},
        {"type": "also-nope", "payload": {}},
        {"type": "test-noop", "payload": {}, "priority": 11},
    ]
    response = client.simulate_post("/jobs/batch", json={"jobs": items})

    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "unknown_job_type"
    assert "jobs[0], jobs[3]" in error["message"] and "send-email" in error["message"]
    assert [d["field"] for d in error["details"]] == [
        "jobs[0].type",
        "jobs[2].payload.n",
        "jobs[3].type",
        "jobs[4].priority",
    ]
    assert "'also-nope'" in error["details"][2]["message"]
    assert job_count() == 0


# -- GET /jobs/{id} and /attempts --------------------------------------------------------------


@pytest.mark.parametrize("path", [f"/jobs/{uuid.uuid4()}", "/jobs/not-a-uuid"])
def test_an_unknown_job_is_404(client, path):
    for suffix in ("", "/attempts"):
        response = client.simulate_get(path + suffix)
        assert response.status_code == 404
        assert response.json["error"]["code"] == "not_found"


def test_attempts_list_each_attempt_with_its_error_and_traceback(client, worker):
    response = enqueue(
        client, type="test-record", payload={"failTimes": 1}, retry={"baseSeconds": 0.1}
    )
    job_id = response.json["jobId"]
    wait_for(lambda: job(client, job_id)["status"] == "completed")

    attempts = client.simulate_get(f"/jobs/{job_id}/attempts").json["attempts"]

    assert [(a["number"], a["status"]) for a in attempts] == [(1, "failed"), (2, "completed")]
    assert attempts[0]["error"]["type"] == "RuntimeError"
    assert "failed on purpose" in attempts[0]["traceback"]
    assert attempts[1]["durationMs"] >= 0
    assert attempts[1]["worker"]


# -- GET /jobs ---------------------------------------------------------------------------------


def test_list_filters_and_pages_newest_first(client):
    ids = [enqueue(client, payload={"n": n}, priority=n + 1).json["jobId"] for n in range(5)]
    enqueue(client, type="send-email", payload=EMAIL)

    first = client.simulate_get("/jobs", params={"type": "test-noop", "limit": "2"}).json
    second = client.simulate_get(
        "/jobs", params={"type": "test-noop", "limit": "2", "cursor": first["nextCursor"]}
    ).json
    third = client.simulate_get(
        "/jobs", params={"type": "test-noop", "limit": "2", "cursor": second["nextCursor"]}
    ).json

    listed = [j["id"] for page in (first, second, third) for j in page["jobs"]]
    assert listed == ids[::-1]
    assert first["count"] == 2
    assert third["nextCursor"] is None


def test_list_offset_skips_the_newest(client):
    ids = [enqueue(client, payload={"n": n}).json["jobId"] for n in range(3)]
    page = client.simulate_get("/jobs", params={"offset": "1"}).json
    assert [j["id"] for j in page["jobs"]] == ids[::-1][1:]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"payload.tag": "7"}, ["tag 7"]),  # a string field
        ({"payload.n": "7"}, ["n 7"]),  # a number field, matched by its text
        ({"payload.permanent": "true"}, ["permanent"]),
        ({"payload.to": "ann@example.com"}, ["email"]),  # a member of a list
        ({"payload.tag": "7", "payload.permanent": "true"}, []),  # every filter must match
        ({"payload.tag": "nobody"}, []),
    ],
)
def test_list_by_payload_field(client, params, expected):
    names = {
        enqueue(client, type="test-record", payload={"tag": "7"}).json["jobId"]: "tag 7",
        enqueue(client, payload={"n": 7}).json["jobId"]: "n 7",
        enqueue(client, type="test-record", payload={"permanent": True}).json["jobId"]: "permanent",
        enqueue(
            client,
            type="send-email",
            payload={"to": "ann@example.com", "subject": "Hi", "body": "Hello"},
        ).json["jobId"]: "email",
    }

    response = client.simulate_get("/jobs", params=params)

    assert response.status_code == 200
    assert [names[j["id"]] for j in response.json["jobs"]] == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "pending"}, 2),
        ({"status": "cancelled"}, 1),
        ({"priority": "high"}, 1),
        ({"priority": "5"}, 2),
        ({"payload.n": "1"}, 1),
        ({"createdAfter": "2000-01-01T00:00:00Z"}, 3),
        ({"createdBefore": "2000-01-01T00:00:00Z"}, 0),
    ],
)
def test_list_filters(client, params, expected):
    enqueue(client, payload={"n": 1}, priority="high")
    enqueue(client, payload={"n": 2})
    cancelled = enqueue(client, payload={"n": 3}).json["jobId"]
    client.simulate_delete(f"/jobs/{cancelled}")

    response = client.simulate_get("/jobs", params=params)

    assert response.status_code == 200
    assert response.json["count"] == expected


@pytest.mark.parametrize(
    "params",
    [
        {"colour": "red"},
        {"status": "done"},
        {"priority": "11"},
        {"limit": "0"},
        {"limit": "501"},
        {"createdAfter": "yesterday"},
        {"cursor": "garbage"},
    ],
)
def test_list_rejects_unknown_filters_and_bad_values(client, params):
    response = client.simulate_get("/jobs", params=params)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "bad_request"


def test_errors_read_as_sentences_without_pydantic_s_prefixes(client):
    both = {
        "type": "test-noop",
        "payload": {},
        "delaySeconds": 5,
        "scheduledAt": "2031-01-01T00:00:00Z",
    }
    refused = client.simulate_post("/jobs", json=both).json["error"]["details"]
    listed = client.simulate_get("/jobs", params={"limit": "501"}).json["error"]["message"]

    assert refused == [
        {"field": "(body)", "message": "delaySeconds and scheduledAt exclude each other"}
    ]
    assert listed == "limit should be less than or equal to 500"


# -- DELETE /jobs/{id} and POST /jobs/{id}/retry -----------------------------------------------


def test_cancel_a_pending_job(client):
    job_id = enqueue(client, delaySeconds=3600).json["jobId"]

    response = client.simulate_delete(f"/jobs/{job_id}")

    assert response.status_code == 200
    assert response.json["message"] == "Job cancelled"
    cancelled = job(client, job_id)
    assert cancelled["status"] == "cancelled"
    assert cancelled["completedAt"] is not None


def test_cancel_a_final_job_is_409_and_an_unknown_one_404(client):
    job_id = enqueue(client).json["jobId"]
    client.simulate_delete(f"/jobs/{job_id}")

    assert client.simulate_delete(f"/jobs/{job_id}").status_code == 409
    assert client.simulate_delete(f"/jobs/{uuid.uuid4()}").status_code == 404


def test_retry_runs_a_cancelled_job_again(client, worker):
    job_id = enqueue(client, type="test-record", payload={}, delaySeconds=3600).json["jobId"]
    client.simulate_delete(f"/jobs/{job_id}")

    response = client.simulate_post(f"/jobs/{job_id}/retry")

    assert response.status_code == 202
    assert response.json["message"] == "Job retry queued"
    done = wait_for(lambda: (j := job(client, job_id))["status"] == "completed" and j)
    assert done["attempts"] == 1


def test_retry_of_a_job_that_is_not_final_is_409(client):
    job_id = enqueue(client, delaySeconds=3600).json["jobId"]
    response = client.simulate_post(f"/jobs/{job_id}/retry")
    assert response.status_code == 409
    assert response.json["error"]["code"] == "conflict"
    assert client.simulate_post(f"/jobs/{uuid.uuid4()}/retry").status_code == 404
