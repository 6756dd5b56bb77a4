"""Scoped bearer tokens: `read` reads, `write` also enqueues and steers jobs, `admin` does
everything; a missing or unknown token is a 401, a known one without the scope a 403."""

import uuid

import pydantic
import pytest
from falcon import testing

from api.app import create_app
from api.auth import Scope, Tokens
from service.client import Warren
from service.settings import Settings

TOKENS = ["reader:r-secret:read", "writer:w-secret:write", "boss:a-secret:admin", "bare-secret"]


@pytest.fixture
def guarded(settings, engine, clean):
    warren = Warren(settings.model_copy(update={"api_tokens": TOKENS}), engine=engine)
    yield testing.TestClient(create_app(warren=warren))
    warren.publisher.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def enqueue(client, token: str):
    return client.simulate_post(
        "/jobs", json={"type": "test-noop", "payload": {}}, headers=bearer(token)
    )


def purge(client, token: str):
    return client.simulate_delete("/dlq", json={"all": True}, headers=bearer(token))


def test_a_read_token_reads_but_may_not_write(guarded):
    assert guarded.simulate_get("/jobs", headers=bearer("r-secret")).status_code == 200
    assert guarded.simulate_get("/stats", headers=bearer("r-secret")).status_code == 200

    refused = enqueue(guarded, "r-secret")

    assert refused.status_code == 403
    assert refused.json == {
        "success": False,
        "error": {
            "code": "forbidden",
            "message": "token 'reader' has the read scope; POST /jobs needs write",
            "details": [],
        },
    }


def test_a_write_token_enqueues_and_cancels_but_may_not_purge_dead_letters(guarded):
    created = enqueue(guarded, "w-secret")
    job_id = created.json["jobId"]
    cancelled = guarded.simulate_delete(f"/jobs/{job_id}", headers=bearer("w-secret"))
    refused = purge(guarded, "w-secret")

    assert created.status_code == 201
    assert cancelled.status_code == 200
    status = guarded.simulate_get(f"/jobs/{job_id}", headers=bearer("w-secret")).json["job"]
    assert status["status"] == "cancelled"
    assert refused.status_code == 403
    assert refused.json["error"]["code"] == "forbidden"
    assert "DELETE /dlq needs admin" in refused.json["error"]["message"]


def test_an_admin_token_and_a_bare_token_may_do_everything(guarded):
    for token in ("a-secret", "bare-secret"):
        assert enqueue(guarded, token).status_code == 201
        assert purge(guarded, token).status_code == 200
        assert guarded.simulate_get("/jobs", headers=bearer(token)).status_code == 200


def test_no_token_or_an_unknown_one_is_401_not_403(guarded):
    for headers in ({}, bearer("nope"), {"Authorization": "Basic r-secret"}):
        refused = guarded.simulate_post("/jobs", json={"type": "test-noop"}, headers=headers)
        assert refused.status_code == 401
        assert refused.json["error"]["code"] == "unauthorized"
        assert refused.headers["WWW-Authenticate"] == "Bearer"


def test_a_path_without_a_route_is_401_without_a_token_and_404_with_any(guarded):
    path = f"/jobs/{uuid.uuid4()}/nothing"

    assert guarded.simulate_post(path).status_code == 401
    assert guarded.simulate_post(path, headers=bearer("r-secret")).status_code == 404


def test_health_and_the_openapi_document_stay_open(guarded):
    assert guarded.simulate_get("/health").status_code == 200
    assert guarded.simulate_get("/openapi.json").status_code == 200


def test_routes_scope_table():
    assert Tokens.required_scope("GET", "/metrics") is Scope.READ
    assert Tokens.required_scope("post", "/jobs/{job_id:uuid}/retry") is Scope.WRITE
    assert Tokens.required_scope("POST", "/jobs/cancel") is Scope.WRITE
    assert Tokens.required_scope("POST", "/jobs/retry") is Scope.WRITE
    assert Tokens.required_scope("POST", "/queues/{tier}/pause") is Scope.ADMIN
    assert Tokens.required_scope("POST", "/types/{type}/resume") is Scope.ADMIN
    assert Tokens.required_scope("POST", "/dlq/replay") is Scope.ADMIN
    assert Tokens.required_scope("PATCH", "/schedules/{name}") is Scope.ADMIN
    assert Tokens.required_scope("PUT", "/something/new") is Scope.ADMIN


def test_scope_for_names_each_token_and_knows_when_none_is_set():
    tokens = Tokens(TOKENS)

    assert tokens.configured
    assert [tokens.scope_for(t) for t in ("r-secret", "w-secret", "a-secret", "bare-secret")] == [
        Scope.READ,
        Scope.WRITE,
        Scope.ADMIN,
        Scope.ADMIN,
    ]
    assert tokens.scope_for("r-secre") is None
    assert tokens.grant_for("bare-secret").name == "#4"
    assert not Tokens([]).configured


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ci:c1-secret:rw", "WARREN_API_TOKENS entry 1 ('ci') has an unknown scope"),
        ("ok-secret,ci:c1-secret", "WARREN_API_TOKENS entry 2 is neither a bare token"),
        (":c1-secret:read", "WARREN_API_TOKENS entry 1 is neither a bare token"),
        ("ci:c1-secret:read,ci:c2-secret:write", "entries ci, ci share a name"),
        ("ci:c1-secret:read,cd:c1-secret:write", "entries ci, cd share a token"),
    ],
)
def test_a_malformed_setting_is_refused_at_load_naming_the_entry_never_its_secret(
    monkeypatch, value, message
):
    monkeypatch.setenv("WARREN_API_TOKENS", value)

    with pytest.raises(pydantic.ValidationError) as refused:
        Settings()

    assert message in refused.value.errors()[0]["msg"]
    assert "secret" not in str(refused.value)  # not even pydantic's input_value


def test_a_token_may_contain_colons(monkeypatch):
    monkeypatch.setenv("WARREN_API_TOKENS", "ci:a:b:c:write")

    assert Tokens.from_settings(Settings()).scope_for("a:b:c") is Scope.WRITE


def test_operator_controls_and_metrics_have_their_scopes(guarded):
    bulk = {"filter": {"status": "pending"}, "dryRun": True}

    def pause(token: str) -> int:
        return guarded.simulate_post("/queues/low/pause", headers=bearer(token)).status_code

    def cancel(token: str) -> int:
        return guarded.simulate_post("/jobs/cancel", json=bulk, headers=bearer(token)).status_code

    assert (pause("w-secret"), pause("a-secret")) == (403, 200)
    assert (cancel("r-secret"), cancel("w-secret")) == (403, 202)
    assert guarded.simulate_get("/metrics").status_code == 401
    assert guarded.simulate_get("/metrics", headers=bearer("r-secret")).status_code == 200
