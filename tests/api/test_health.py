"""GET /health: 200 when PostgreSQL and RabbitMQ answer, 503 naming the one that does not;
and bearer tokens, which guard every route but this one."""

from falcon import testing

from api.app import create_app
from service.client import Warren


def test_health_is_ok_when_both_services_answer(client):
    response = client.simulate_get("/health")

    assert response.status_code == 200
    assert response.json["status"] == "ok"
    assert response.json["service"] == "queue"
    assert response.json["checks"] == {"database": "ok", "broker": "ok"}
    assert response.json["timestamp"].endswith("Z")


def test_health_is_503_naming_rabbitmq_when_it_is_unreachable(settings, engine, clean):
    offline = settings.model_copy(update={"broker_url": "amqp://guest:guest@127.0.0.1:1/%2F"})
    client = testing.TestClient(create_app(warren=Warren(offline, engine=engine)))

    response = client.simulate_get("/health")

    assert response.status_code == 503
    assert response.json["status"] == "degraded"
    assert response.json["checks"]["database"] == "ok"
    assert response.json["checks"]["broker"].startswith("unreachable")


def test_health_is_503_naming_postgresql_when_it_is_unreachable(settings, clean):
    offline = settings.model_copy(
        update={"database_url": "postgresql+psycopg://postgres@127.0.0.1:1/warren"}
    )
    client = testing.TestClient(create_app(warren=Warren(offline)))

    response = client.simulate_get("/health")

    assert response.status_code == 503
    assert response.json["checks"]["database"].startswith("unreachable")
    assert response.json["checks"]["broker"] == "ok"


def test_other_routes_answer_503_not_500_when_postgresql_is_unreachable(settings, clean):
    offline = settings.model_copy(
        update={"database_url": "postgresql+psycopg://postgres@127.0.0.1:1/warren"}
    )
    client = testing.TestClient(create_app(warren=Warren(offline)))

    for response in (
        client.simulate_get("/jobs"),
        client.simulate_post("/jobs", json={"type": "test-noop", "payload": {}}),
    ):
        assert response.status_code == 503
        assert response.json["error"]["code"] == "unavailable"


def test_with_tokens_set_every_route_but_health_needs_a_bearer_token(settings, engine, clean):
    guarded = settings.model_copy(update={"api_tokens": ["s3cret"]})
    client = testing.TestClient(create_app(warren=Warren(guarded, engine=engine)))

    refused = client.simulate_get("/jobs")
    wrong = client.simulate_get("/jobs", headers={"Authorization": "Bearer nope"})
    allowed = client.simulate_get("/jobs", headers={"Authorization": "Bearer s3cret"})

    assert refused.status_code == 401
    assert refused.json["error"]["code"] == "unauthorized"
    assert wrong.status_code == 401
    assert allowed.status_code == 200
    assert client.simulate_get("/health").status_code == 200
