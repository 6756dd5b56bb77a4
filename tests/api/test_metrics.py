"""GET /metrics on the real database and broker: Prometheus's text format, the gauges read at
scrape time matching what PostgreSQL and RabbitMQ hold, and request ids on every answer."""

import logging
from datetime import UTC, datetime, timedelta

import pytest
from falcon import testing
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.requestids import HEADER
from service.client import Warren


def scrape(client: testing.TestClient) -> dict[tuple[str, tuple], float]:
    """`{(sample name, sorted labels): value}` of one scrape."""
    response = client.simulate_get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_the_gauges_show_the_backlog_of_each_tier(client, warren: Warren):
    now = datetime.now(UTC)
    late = warren.enqueue("test-noop", {}, priority="high", scheduled_at=now - timedelta(60))
    warren.enqueue("test-noop", {}, priority="high", scheduled_at=now - timedelta(seconds=5))
    warren.enqueue("test-noop", {}, priority="low", delay_seconds=3600)
    warren.enqueue("test-noop", {}, priority="normal")

    metrics = scrape(client)

    def tier(name: str, tier: str) -> float:
        return metrics[(name, (("tier", tier),))]

    assert tier("warren_jobs_ready", "high") == 2
    assert tier("warren_jobs_ready", "normal") == 1
    assert tier("warren_jobs_ready", "low") == 0
    assert tier("warren_jobs_scheduled", "low") == 1
    assert tier("warren_jobs_scheduled", "high") == 0
    assert tier("warren_jobs_running", "high") == 0
    assert 60 * 86400 - 5 <= tier("warren_oldest_ready_job_age_seconds", "high") <= 60 * 86400 + 30
    assert tier("warren_oldest_ready_job_age_seconds", "low") == 0  # scheduled, not ready
    assert metrics[("warren_jobs", (("status", "pending"), ("type", "test-noop")))] == 4
    assert metrics[("warren_jobs", (("status", "completed"), ("type", "test-noop")))] == 0
    assert metrics[("warren_dead_letters", ())] == 0
    assert metrics[("warren_database_up", ())] == 1
    assert late.id


def test_a_job_due_a_minute_ago_is_about_a_minute_old(client, warren: Warren):
    warren.enqueue(
        "test-noop", {}, priority="normal", scheduled_at=datetime.now(UTC) - timedelta(seconds=60)
    )

    age = scrape(client)[("warren_oldest_ready_job_age_seconds", (("tier", "normal"),))]

    assert 59 <= age <= 75


def test_queue_depths_are_rabbitmq_s_including_delay_and_dead_letter_queues(
    client, warren: Warren, settings
):
    warren.enqueue("test-noop", {}, priority="high")  # published at once: one ready message
    warren.enqueue("test-noop", {}, priority="high", delay_seconds=300)  # waits in .DQ

    metrics = scrape(client)

    prefix = settings.queue_prefix
    assert metrics[("warren_queue_messages", (("queue", f"{prefix}.high"),))] == 1
    assert metrics[("warren_queue_messages", (("queue", f"{prefix}.high.DQ"),))] == 1
    assert metrics[("warren_queue_messages", (("queue", f"{prefix}.high.XQ"),))] == 0
    assert metrics[("warren_queue_consumers", (("queue", f"{prefix}.low"),))] == 0


def test_enqueues_are_counted_by_type_and_tier(client, warren: Warren):
    key = ("warren_jobs_enqueued_total", (("tier", "low"), ("type", "test-noop")))
    before = scrape(client).get(key, 0)

    client.simulate_post("/jobs", json={"type": "test-noop", "payload": {}, "priority": 2})
    for _ in range(2):  # the second is the first job again: not a new one
        body = {"type": "test-noop", "payload": {}, "priority": "low", "idempotencyKey": "k"}
        client.simulate_post("/jobs", json=body)

    assert scrape(client)[key] == before + 2


def test_metrics_need_a_read_token_when_tokens_are_set(settings, engine, clean):
    tokens = ["reader:r3ad-t0ken:read"]
    warren = Warren(settings.model_copy(update={"api_tokens": tokens}), engine=engine)
    client = testing.TestClient(create_app(warren=warren))
    try:
        refused = client.simulate_get("/metrics")
        allowed = client.simulate_get("/metrics", headers={"Authorization": "Bearer r3ad-t0ken"})
    finally:
        warren.publisher.close()

    assert refused.status_code == 401
    assert refused.json["error"]["code"] == "unauthorized"
    assert allowed.status_code == 200
    assert "warren_jobs_ready" in allowed.text


# -- request ids ------------------------------------------------------------------------------


def test_a_request_s_access_line_and_answer_carry_the_same_request_id(client, caplog):
    with caplog.at_level(logging.INFO, logger="warren.access"):
        response = client.simulate_get("/stats")

    request_id = response.headers[HEADER.lower()]
    [line] = [r for r in caplog.records if r.name == "warren.access"]
    assert len(request_id) == 32
    assert line.request_id == request_id
    assert (line.method, line.path, line.status) == ("GET", "/stats", 200)
    assert line.duration_ms >= 0


def test_a_safe_incoming_request_id_is_kept(client, caplog):
    incoming = "Root=1-67891233-abcdef012345678912345678"
    with caplog.at_level(logging.INFO, logger="warren.access"):
        response = client.simulate_get("/nowhere", headers={HEADER: incoming})

    assert response.status_code == 404
    assert response.headers[HEADER.lower()] == incoming
    assert [r.request_id for r in caplog.records if r.name == "warren.access"] == [incoming]


def test_a_line_break_in_a_path_cannot_forge_a_second_access_line(client, caplog):
    with caplog.at_level(logging.INFO, logger="warren.access"):
        response = client.simulate_get("/jobs%0AGET /stats 200")

    assert response.status_code == 404
    [line] = [r for r in caplog.records if r.name == "warren.access"]
    assert "\n" not in line.getMessage()
    assert line.path == "/jobs\\x0aGET /stats 200"


@pytest.mark.parametrize(
    "hostile",
    [
        "",
        "has space",
        "x" * 129,
        "new\r\nSet-Cookie: a=b",
        'quote"d',
        "ünïcode",
        "<script>",
        "a\x00b",
    ],
)
def test_a_hostile_request_id_is_replaced(client, hostile: str):
    response = client.simulate_get("/stats", headers={HEADER: hostile})

    assert response.status_code == 200
    replaced = response.headers[HEADER.lower()]
    assert replaced != hostile
    assert len(replaced) == 32 and replaced.isalnum()


def test_paused_tiers_and_types_are_shown_so_alerts_can_leave_them_out(client, warren: Warren):
    warren.enqueue("test-noop", {}, priority="low")
    warren.pause("tier", "low")
    warren.pause("type", "test-record")
    try:
        metrics = scrape(client)
    finally:
        warren.resume("tier", "low")
        warren.resume("type", "test-record")

    assert metrics[("warren_tier_paused", (("tier", "low"),))] == 1
    assert metrics[("warren_tier_paused", (("tier", "high"),))] == 0
    assert metrics[("warren_type_paused", (("type", "test-record"),))] == 1
    assert metrics[("warren_type_paused", (("type", "test-noop"),))] == 0
