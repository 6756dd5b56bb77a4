"""The "webhook-delivery" job type against a real HTTP server on 127.0.0.1."""

import json
import time
from typing import Any

import pytest
from pydantic import ValidationError

from actors.webhook_delivery import (
    WebhookDelivery,
    WebhookFailed,
    deliver_webhook,
    sign,
    verify_signature,
)
from service.errors import PermanentError
from service.registry import registry
from service.settings import Settings


def deliver(**fields: Any) -> dict[str, Any]:
    return deliver_webhook(WebhookDelivery.model_validate(fields))


def test_registered_as_a_job_type() -> None:
    assert registry.get("webhook-delivery").handler is deliver_webhook


def test_2xx_returns_status_and_response_and_the_server_gets_the_request(webhook_server) -> None:
    body = {"event": "order.paid", "order": {"id": 42, "items": ["a", "b"]}, "note": "café"}

    result = deliver(url=webhook_server.url("/ok"), body=body, headers={"X-Trace": "abc"})

    assert result == {"statusCode": 200, "response": '{"received": true}'}
    [request] = webhook_server.requests
    assert (request.method, request.path) == ("POST", "/ok")
    assert json.loads(request.body) == body
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "warren-webhooks"
    assert request.headers["X-Trace"] == "abc"
    assert "Warren-Job-Id" not in request.headers  # not inside a job
    assert "Warren-Signature" not in request.headers  # no secret configured


def test_response_excerpt_is_cut_at_500_characters(webhook_server) -> None:
    result = deliver(url=webhook_server.url("/long"), body={})
    assert result == {"statusCode": 200, "response": "x" * 500}


def test_without_a_body_nothing_is_sent_and_no_content_type(webhook_server) -> None:
    deliver(url=webhook_server.url("/ok"), method="delete")

    [request] = webhook_server.requests
    assert request.method == "DELETE"
    assert request.body == b""
    assert "Content-Type" not in request.headers


def test_inside_a_job_the_job_id_is_sent_as_idempotency_key(webhook_server, running_job) -> None:
    running_job("job-1234")
    deliver(url=webhook_server.url("/ok"), body={"n": 1})
    deliver(url=webhook_server.url("/ok"), body={"n": 1})  # a retry of the same job

    assert [r.headers["Warren-Job-Id"] for r in webhook_server.requests] == ["job-1234"] * 2


@pytest.mark.parametrize(("path", "status"), [("/boom", 500), ("/throttle", 429)])
def test_server_errors_and_throttling_are_retryable(webhook_server, path, status) -> None:
    with pytest.raises(WebhookFailed, match=f"HTTP {status} from .*{path}") as caught:
        deliver(url=webhook_server.url(path), body={})
    assert caught.value.status_code == status
    assert not isinstance(caught.value, PermanentError)


def test_a_slow_receiver_times_out_retryably_within_the_timeout(webhook_server) -> None:
    started = time.monotonic()
    with pytest.raises(WebhookFailed, match=r"timed out after 0\.3s"):
        deliver(url=webhook_server.url("/slow"), body={}, timeoutSeconds=0.3)
    assert time.monotonic() - started < 5
    assert [r.path for r in webhook_server.requests] == ["/slow"]


def test_connection_refused_is_retryable(closed_port) -> None:
    with pytest.raises(WebhookFailed, match="could not reach"):
        deliver(url=f"http://127.0.0.1:{closed_port}/hook", body={})


def test_client_errors_fail_permanently_with_the_response(webhook_server) -> None:
    url = webhook_server.url("/missing")
    with pytest.raises(PermanentError) as caught:
        deliver(url=url, body={})
    assert str(caught.value) == f"HTTP 404 from {url}: no such hook"


def test_redirects_are_not_followed_and_fail_permanently(webhook_server) -> None:
    with pytest.raises(PermanentError, match="HTTP 302"):
        deliver(url=webhook_server.url("/moved"), body={})
    assert [r.path for r in webhook_server.requests] == ["/moved"]


def test_with_a_secret_the_request_is_signed(webhook_server, monkeypatch) -> None:
    monkeypatch.setenv("WARREN_WEBHOOK_SECRET", "s3cret")

    deliver(url=webhook_server.url("/ok"), body={"amount": 100})

    [request] = webhook_server.requests
    header = request.headers["Warren-Signature"]
    assert header.startswith("t=")
    assert verify_signature("s3cret", header, request.body)
    assert not verify_signature("wrong", header, request.body)
    assert not verify_signature("s3cret", header, request.body.replace(b"100", b"999"))


def test_a_signature_is_only_good_within_the_tolerance() -> None:
    body = b'{"amount":100}'
    header = sign("s3cret", body, timestamp=1_700_000_000)

    assert verify_signature("s3cret", header, body, now=1_700_000_299)
    assert not verify_signature("s3cret", header, body, now=1_700_000_301)
    assert not verify_signature("s3cret", header, body, tolerance=10, now=1_700_000_011)


@pytest.mark.parametrize("header", ["", "garbage", "t=abc,v1=00", "v1=00", "t=1700000000"])
def test_malformed_signature_headers_do_not_verify(header) -> None:
    assert not verify_signature("s3cret", header, b"{}", now=1_700_000_000)


def test_the_running_workers_secret_wins_over_the_environment(
    webhook_server, running_job, monkeypatch
) -> None:
    monkeypatch.setenv("WARREN_WEBHOOK_SECRET", "from-env")
    running_job(settings=Settings(webhook_secret="from-worker"))

    deliver(url=webhook_server.url("/ok"), body=[1, 2, 3])

    [request] = webhook_server.requests
    assert verify_signature("from-worker", request.headers["Warren-Signature"], request.body)


def test_payload_defaults_and_round_trip() -> None:
    model = WebhookDelivery.model_validate({"url": "https://hooks.example.com/in"})
    assert (model.method, model.headers, model.body, model.timeout_seconds) == (
        "POST",
        {},
        None,
        10.0,
    )
    full = {
        "url": "https://hooks.example.com/in?x=1",
        "method": "put",
        "headers": {"Authorization": "Bearer t"},
        "body": {"a": [1, None, "b"]},
        "timeoutSeconds": 2.5,
    }
    stored = WebhookDelivery.model_validate(full).model_dump(mode="json", by_alias=True)
    assert stored["method"] == "PUT"
    assert WebhookDelivery.model_validate(stored).model_dump(mode="json", by_alias=True) == stored


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"url": "not a url"}, "url"),
        ({"url": "ftp://files.example.com/x"}, "url"),
        ({}, "url"),
        ({"url": "https://example.com", "method": "HEAD"}, "method"),
        ({"url": "https://example.com", "timeoutSeconds": -1}, "timeoutSeconds"),
        ({"url": "https://example.com", "timeoutSeconds": 0}, "timeoutSeconds"),
        ({"url": "https://example.com", "timeoutSeconds": 301}, "timeoutSeconds"),
        ({"url": "https://example.com", "headers": {"Warren-Job-Id": "x"}}, "headers"),
        ({"url": "https://example.com", "headers": {"X-A": "1\r\nX-B: 2"}}, "headers"),
        ({"url": "https://example.com", "retries": 3}, "retries"),
    ],
)
def test_invalid_payloads_are_rejected_naming_the_field(fields, field) -> None:
    with pytest.raises(ValidationError) as caught:
        WebhookDelivery.model_validate(fields)
    assert field in {error["loc"][0] for error in caught.value.errors()}
