"""Operator controls over HTTP: pause and resume tiers and job types, and cancel or retry
every job a filter selects, in batches."""

import pytest

from service.store import jobs as job_store

LATER = 3600  # beyond the delay horizon: the jobs stay rows, nothing is published


def enqueue_later(warren, count: int, type: str = "test-noop", **options) -> list:
    """`count` pending jobs due in an hour, in batches of 1,000."""
    ids = []
    for start in range(0, count, 1000):
        bodies = [
            {"type": type, "payload": {}, "delaySeconds": LATER, **options}
            for _ in range(min(1000, count - start))
        ]
        ids += [outcome.id for outcome in warren.submit(bodies)]
    return ids


def statuses(warren, job_ids) -> set[str]:
    return {warren.get(job_id).status for job_id in job_ids}


# -- pause and resume ---------------------------------------------------------------------------


def test_pausing_a_tier_answers_everything_paused_and_is_idempotent(client):
    first = client.simulate_post("/queues/high/pause")
    again = client.simulate_post("/queues/high/pause")
    typed = client.simulate_post("/types/send-email/pause")

    assert first.status_code == again.status_code == typed.status_code == 200
    assert first.json == again.json == {"success": True, "paused": {"tiers": ["high"], "types": []}}
    assert typed.json["paused"] == {"tiers": ["high"], "types": ["send-email"]}

    resumed = client.simulate_post("/queues/high/resume")
    assert resumed.json["paused"] == {"tiers": [], "types": ["send-email"]}
    assert client.simulate_post("/queues/high/resume").json == resumed.json
    assert client.simulate_post("/types/send-email/resume").json["paused"] == {
        "tiers": [],
        "types": [],
    }


@pytest.mark.parametrize(
    "path",
    [
        "/queues/urgent/pause",
        "/queues/HIGH/resume",
        "/types/no-such-type/pause",
        "/types/no-such-type/resume",
        "/types/send%00email/pause",
    ],
)
def test_an_unknown_tier_or_type_is_404(client, path):
    response = client.simulate_post(path)

    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"
    assert client.simulate_get("/stats").json["stats"]["paused"] == {"tiers": [], "types": []}


def test_stats_and_health_show_what_is_paused(client):
    client.simulate_post("/queues/low/pause")
    client.simulate_post("/types/test-noop/pause")
    expected = {"tiers": ["low"], "types": ["test-noop"]}

    assert client.simulate_get("/stats").json["stats"]["paused"] == expected
    assert client.simulate_get("/health").json["paused"] == expected


# -- cancel and retry by filter -----------------------------------------------------------------


def test_cancel_by_filter_counts_what_matched_and_what_changed(client, warren):
    waiting = enqueue_later(warren, 3)
    other_type = enqueue_later(warren, 2, type="test-record")
    done = enqueue_later(warren, 1)
    warren.cancel(done[0])

    response = client.simulate_post("/jobs/cancel", json={"filter": {"type": "test-noop"}})

    assert response.status_code == 202
    assert response.json == {"success": True, "matched": 4, "changed": 3, "dryRun": False}
    assert statuses(warren, waiting) == {"cancelled"}
    assert statuses(warren, other_type) == {"pending"}


def test_a_dry_run_counts_and_changes_nothing(client, warren):
    failed_later = enqueue_later(warren, 2)
    for job_id in failed_later:
        warren.cancel(job_id)
    pending = enqueue_later(warren, 3)
    body = {"filter": {}, "dryRun": True}

    cancel = client.simulate_post("/jobs/cancel", json=body)
    retry = client.simulate_post("/jobs/retry", json=body)

    assert cancel.json == {"success": True, "matched": 5, "changed": 3, "dryRun": True}
    assert retry.json == {"success": True, "matched": 5, "changed": 2, "dryRun": True}
    assert statuses(warren, pending) == {"pending"}
    assert statuses(warren, failed_later) == {"cancelled"}


def test_a_filter_matching_2500_jobs_changes_them_in_batches_of_1000(client, warren, monkeypatch):
    ids = enqueue_later(warren, 2500, priority="low")
    enqueue_later(warren, 5, priority="high")
    batches: list[int] = []
    real = job_store.cancel_many

    def counted(conn, selected):
        batches.append(len(selected))
        return real(conn, selected)

    monkeypatch.setattr(job_store, "cancel_many", counted)

    response = client.simulate_post(
        "/jobs/cancel", json={"filter": {"status": "pending", "priority": "low"}}
    )

    assert response.json == {"success": True, "matched": 2500, "changed": 2500, "dryRun": False}
    assert batches == [1000, 1000, 500]
    assert statuses(warren, ids) == {"cancelled"}
    assert warren.stats()["pending"] == 5


def test_retry_by_filter_starts_a_new_life_once(client, warren):
    ids = enqueue_later(warren, 3, type="test-record")
    client.simulate_post("/jobs/cancel", json={"filter": {"type": "test-record"}})
    body = {"filter": {"status": "cancelled", "type": "test-record"}}

    first = client.simulate_post("/jobs/retry", json=body)
    second = client.simulate_post("/jobs/retry", json=body)

    assert first.status_code == 202
    assert (first.json["matched"], first.json["changed"]) == (3, 3)
    assert (second.json["matched"], second.json["changed"]) == (0, 0)
    jobs = [warren.get(job_id) for job_id in ids]
    assert {(job.status, job.life, job.attempts) for job in jobs} == {("pending", 2, 0)}


def test_a_payload_filter_selects_as_on_get_jobs(client, warren):
    warren.enqueue("test-noop", {"n": 7}, delay_seconds=LATER)
    warren.enqueue("test-noop", {"n": 8}, delay_seconds=LATER)

    by_text = client.simulate_post(
        "/jobs/cancel", json={"filter": {"payload.n": "7"}, "dryRun": True}
    )
    by_number = client.simulate_post("/jobs/cancel", json={"filter": {"payload.n": 8}})

    assert (by_text.json["matched"], by_number.json["changed"]) == (1, 1)


@pytest.mark.parametrize(
    "bad_filter",
    [{"colour": "red"}, {"status": "lost"}, {"priority": 11}, {"createdAfter": "yesterday"},
     {"type": ""}, {"schedule": ""}],  # an empty name once selected every job
)  # fmt: skip
def test_a_bad_filter_is_400_as_on_get_jobs(client, warren, bad_filter):
    enqueue_later(warren, 1)
    listed = client.simulate_get("/jobs", params={k: str(v) for k, v in bad_filter.items()})

    for path in ("/jobs/cancel", "/jobs/retry"):
        response = client.simulate_post(path, json={"filter": bad_filter})
        assert response.status_code == 400
        assert response.json["error"] == listed.json["error"]
    assert warren.stats()["pending"] == 1


@pytest.mark.parametrize("paging", ["limit", "cursor", "offset"])
def test_paging_is_not_a_filter(client, paging):
    response = client.simulate_post("/jobs/cancel", json={"filter": {paging: "10"}})

    assert response.status_code == 400
    assert f"unknown filter {paging!r}" in response.json["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"filter": {}, "dryrun": True}, "dryrun"),
        ({}, "filter"),
        ({"filter": "status=failed"}, "filter"),
        ({"filter": {"status": True}}, "filter.status"),
        ({"filter": {}, "dryRun": "yes"}, "dryRun"),
        ({"filter": {"type": "a\x00b"}}, "filter.type"),
    ],
)
def test_a_malformed_body_is_422_naming_the_field(client, warren, body, field):
    enqueue_later(warren, 1)

    response = client.simulate_post("/jobs/cancel", json=body)

    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"
    assert any(d["field"].startswith(field) for d in response.json["error"]["details"])
    assert warren.stats()["pending"] == 1
