"""The "webhook-delivery" job type against a real HTTP server on 127.0.0.1."""

import base64
import json
import threading
import time
from ipaddress import ip_address
from typing import Any

import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook

from actors.webhook_delivery import (
    WebhookDelivery,
    WebhookFailed,
    deliver_webhook,
    sign,
    signature_headers,
    verify,
    verify_signature,
)
from service import netguard
from service.bodies import AnswerRefused
from service.errors import JobCancelled, PermanentError
from service.netguard import ForbiddenAddress, ForbiddenURL
from service.registry import Enqueueing, registry
from service.settings import Settings
from tests.conftest import TEST_ALLOWED_NETWORK
from tests.helpers import wait_for


def deliver(**fields: Any) -> dict[str, Any]:
    return deliver_webhook(WebhookDelivery.model_validate(fields))


def enqueue_errors(url: str, settings: Settings | None = None) -> list[str]:
    """The messages refusing `url` when the payload is validated for enqueue ([] if valid)."""
    context = Enqueueing(settings or Settings(allowed_networks=[TEST_ALLOWED_NETWORK]))
    try:
        WebhookDelivery.model_validate({"url": url}, context=context)
    except ValidationError as exc:
        assert {error["loc"] for error in exc.errors()} == {("url",)}
        return [error["msg"] for error in exc.errors()]
    return []


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
    assert not {name.lower() for name in request.headers} & {"webhook-id", "webhook-signature"}


def test_response_excerpt_is_at_most_512_bytes_of_the_body(webhook_server) -> None:
    result = deliver(url=webhook_server.url("/long"), body={})
    assert result == {"statusCode": 200, "response": "x" * 512}


def test_the_excerpt_is_bounded_in_bytes_and_never_ends_in_half_a_character(
    webhook_server,
) -> None:
    excerpt = deliver(url=webhook_server.url("/long-utf8"))["response"]
    assert excerpt == "€" * 170  # 3 bytes each: 510 bytes, the 171st would be cut
    assert len(excerpt.encode()) <= 512


def test_an_error_keeps_the_same_bounded_excerpt(webhook_server) -> None:
    url = webhook_server.url("/long-error")
    with pytest.raises(WebhookFailed) as caught:
        deliver(url=url)
    assert str(caught.value) == f"HTTP 500 from {url}: " + "e" * 512


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
        ({"url": "https://example.com", "headers": {"X-A": "1\nX-B: 2"}}, "headers"),
        ({"url": "https://example.com", "headers": {"X-A": "nul\x00"}}, "headers"),
        ({"url": "https://example.com", "headers": {"X-A": "café"}}, "headers"),  # not ASCII
        ({"url": "https://example.com", "headers": {"X-A\r\nX-B": "2"}}, "headers"),
        ({"url": "https://example.com", "headers": {"webhook-signature": "v1,x"}}, "headers"),
        ({"url": "https://example.com", "headers": {"Webhook-Id": "x"}}, "headers"),
        ({"url": "https://example.com", "headers": {"WEBHOOK-TIMESTAMP": "1"}}, "headers"),
        ({"url": "https://example.com", "headers": {"warren-signature": "t=1,v1=0"}}, "headers"),
        ({"url": "https://example.com", "headers": {"Warren-Anything": "x"}}, "headers"),
        ({"url": "https://example.com", "secretRef": "bad ref"}, "secretRef"),
        ({"url": "https://example.com", "retries": 3}, "retries"),
    ],
)
def test_invalid_payloads_are_rejected_naming_the_field(fields, field) -> None:
    with pytest.raises(ValidationError) as caught:
        WebhookDelivery.model_validate(fields)
    assert field in {error["loc"][0] for error in caught.value.errors()}


# -- the network guard (issue #10: SSRF with exfiltration) -----------------------------------
# The tests allow 127.0.0.1/32, where the receiver listens; 127.0.0.2 is as refused as any
# internal address, and nothing listens there, so a guard that failed to refuse would show as
# a connection error rather than a refusal.

SPELLINGS_OF_127_0_0_2 = ["127.0.0.2", "2130706434", "0x7f000002", "127.2", "0177.0.0.2"]


@pytest.mark.parametrize("host", [*SPELLINGS_OF_127_0_0_2, "[::ffff:127.0.0.2]", "[::1]"])
def test_a_forbidden_address_is_refused_before_connecting_in_every_spelling(
    webhook_server, host
) -> None:
    port = webhook_server.url("").rsplit(":", 1)[1]

    with pytest.raises(ForbiddenAddress, match="a loopback address: refused") as caught:
        deliver(url=f"http://{host}:{port}/secret", method="GET")

    assert isinstance(caught.value, PermanentError)  # never retried
    assert webhook_server.requests == []


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "127.1", "0177.0.0.1", "localhost"])
def test_the_allowed_network_is_reached_in_every_spelling(webhook_server, host) -> None:
    port = webhook_server.url("").rsplit(":", 1)[1]
    assert deliver(url=f"http://{host}:{port}/ok")["statusCode"] == 200


def test_without_the_allowed_network_even_127_0_0_1_is_refused(webhook_server, monkeypatch):
    monkeypatch.delenv("WARREN_ALLOWED_NETWORKS")
    with pytest.raises(ForbiddenAddress, match=r"^127\.0\.0\.1 is a loopback address"):
        deliver(url=webhook_server.url("/secret"), method="GET")
    assert webhook_server.requests == []


def test_the_running_workers_allowed_networks_apply(webhook_server, running_job) -> None:
    running_job(settings=Settings(allowed_networks=[]))  # the environment allows 127.0.0.1
    with pytest.raises(ForbiddenAddress):
        deliver(url=webhook_server.url("/ok"))
    assert webhook_server.requests == []


def test_a_host_name_resolving_to_a_forbidden_address_is_refused_at_connect(
    webhook_server, dns
) -> None:
    port = webhook_server.url("").rsplit(":", 1)[1]
    dns["internal.test"] = ["127.0.0.2"]
    dns["mixed.test"] = ["127.0.0.1", "::1"]  # one refused address refuses the name

    for name, address in (("internal.test", "127.0.0.2"), ("mixed.test", "::1")):
        with pytest.raises(ForbiddenAddress, match=rf"^{name} \({address}\) is a loopback"):
            deliver(url=f"http://{name}:{port}/ok")
    assert webhook_server.requests == []


def test_the_checked_address_is_the_one_connected_to_and_the_host_name_is_kept(
    webhook_server, dns, monkeypatch
) -> None:
    """A name whose DNS answers an allowed address first and an internal one next (DNS
    rebinding) is looked up once: the connection goes to the address that was checked."""
    port = webhook_server.url("").rsplit(":", 1)[1]
    answers = iter([["127.0.0.1"], ["127.0.0.2"]])
    lookups = []
    real = netguard.resolve

    def rebinding(host: str, port: int) -> list[Any]:
        if host != "rebind.test":
            return real(host, port)
        lookups.append(host)
        return [ip_address(address) for address in next(answers)]

    monkeypatch.setattr(netguard, "resolve", rebinding)

    assert deliver(url=f"http://rebind.test:{port}/ok")["statusCode"] == 200

    assert lookups == ["rebind.test"]
    [request] = webhook_server.requests
    assert request.headers["Host"] == f"rebind.test:{port}"


def test_credentials_in_the_url_are_refused_without_sending_them(webhook_server) -> None:
    url = webhook_server.url("/ok").replace("http://", "http://guest:hunter2@")

    with pytest.raises(ForbiddenURL, match="carries credentials") as caught:
        deliver(url=url)

    assert "hunter2" not in str(caught.value)
    assert webhook_server.requests == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        *[(f"http://{host}:15672/api/overview", "loopback") for host in SPELLINGS_OF_127_0_0_2],
        ("http://localhost.:8000/", None),  # a name: checked when connecting
        ("http://[::1]:8000/jobs", "loopback"),
        ("http://[::ffff:7f00:2]/", "IPv6 form of 127.0.0.2"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "cloud metadata"),
        ("http://10.0.0.8/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://0.0.0.0:5432/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://127.0.0.1:8000/", None),  # the test setting allows it
        ("https://hooks.example.com/in", None),
        ("http://93.184.215.14/", None),
    ],
)
def test_at_enqueue_a_literal_forbidden_address_is_refused(url, reason) -> None:
    errors = enqueue_errors(url)
    if reason is None:
        assert errors == []
    else:
        [message] = errors
        assert reason in message


def test_at_enqueue_credentials_in_the_url_are_refused() -> None:
    [message] = enqueue_errors("https://guest:guest@hooks.example.com/in")
    assert "credentials" in message
    assert "guest" not in message


def test_at_enqueue_the_enqueuing_sides_allowed_networks_apply() -> None:
    assert enqueue_errors("http://10.1.2.3/", Settings(allowed_networks="10.1.2.0/24")) == []
    assert enqueue_errors("http://10.1.3.3/", Settings(allowed_networks="10.1.2.0/24"))


def test_a_worker_revalidating_the_payload_leaves_the_refusal_to_the_connection() -> None:
    """Without the enqueue context the payload stays valid, so the job fails with the
    handler's `ForbiddenAddress` rather than "payload no longer valid" quoting the URL."""
    model = WebhookDelivery.model_validate({"url": "http://u:p@127.0.0.2/"})
    assert model.url.host == "127.0.0.2"


# -- Standard Webhooks signatures, one secret per destination (issue #10, item 6) -------------
# A receiver verifies with its own secret a signature over the job id, a timestamp and the
# body; a caller who may enqueue cannot make Warren sign for another receiver.


def whsec(seed: str) -> str:
    return "whsec_" + base64.b64encode(seed.encode().ljust(32, b"!")).decode()


RECEIVER = whsec("the receiver's own key")
OTHER = whsec("another destination's key")
GLOBAL = whsec("the deployment-wide key")


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def test_a_receiver_verifies_the_standard_webhooks_signature_with_its_own_secret(
    webhook_server, running_job, monkeypatch
) -> None:
    secrets = {"127.0.0.1": RECEIVER, "hooks.example.com": OTHER}
    monkeypatch.setenv("WARREN_WEBHOOK_SECRETS", json.dumps(secrets))
    running_job("job-5150")
    before = int(time.time())

    deliver(url=webhook_server.url("/ok"), body={"event": "paid"})

    [request] = webhook_server.requests
    headers = lower(request.headers)
    assert headers["webhook-id"] == "job-5150"
    assert before <= int(headers["webhook-timestamp"]) <= time.time()
    assert headers["webhook-signature"].startswith("v1,")
    # The reference implementation of the scheme agrees, as any receiver's library would.
    assert Webhook(RECEIVER).verify(request.body, headers) == {"event": "paid"}
    assert verify(RECEIVER, request.headers, request.body)


def test_the_signature_does_not_verify_with_another_destinations_secret(
    webhook_server, running_job, monkeypatch
) -> None:
    secrets = {"127.0.0.1": RECEIVER, "hooks.example.com": OTHER}
    monkeypatch.setenv("WARREN_WEBHOOK_SECRETS", json.dumps(secrets))
    monkeypatch.setenv("WARREN_WEBHOOK_SECRET", GLOBAL)
    running_job("job-5150")

    deliver(url=webhook_server.url("/ok"), body={"event": "paid"})

    [request] = webhook_server.requests
    for secret in (OTHER, GLOBAL):
        assert not verify(secret, request.headers, request.body)
        with pytest.raises(Exception, match="No matching signature"):
            Webhook(secret).verify(request.body, lower(request.headers))
        assert not verify_signature(secret, request.headers["Warren-Signature"], request.body)


def test_a_signature_is_bound_to_the_message_id_the_body_and_the_time() -> None:
    body = b'{"amount":100}'
    headers = signature_headers(RECEIVER, "job-1", body, timestamp=1_700_000_000)
    now = 1_700_000_100

    assert verify(RECEIVER, headers, body, now=now)
    assert not verify(RECEIVER, {**headers, "webhook-id": "job-2"}, body, now=now)
    assert not verify(RECEIVER, headers, body.replace(b"100", b"999"), now=now)
    assert not verify(RECEIVER, headers, body, now=1_700_000_301)
    assert not verify(RECEIVER, headers, body, now=1_699_999_699)
    assert verify(RECEIVER, headers, body, tolerance=10, now=1_700_000_005)


def test_several_signatures_verify_if_one_does_so_secrets_can_rotate() -> None:
    body = b"{}"
    new = signature_headers(RECEIVER, "job-1", body, timestamp=1_700_000_000)
    old = signature_headers(OTHER, "job-1", body, timestamp=1_700_000_000)
    both = {**new, "webhook-signature": f"{old['webhook-signature']} {new['webhook-signature']}"}

    assert verify(RECEIVER, both, body, now=1_700_000_000)
    assert verify(OTHER, both, body, now=1_700_000_000)
    assert not verify(GLOBAL, both, body, now=1_700_000_000)


@pytest.mark.parametrize(
    "changes",
    [
        {"webhook-id": None},
        {"webhook-timestamp": None},
        {"webhook-signature": None},
        {"webhook-timestamp": "soon"},
        {"webhook-timestamp": "1700000000.5"},
        {"webhook-signature": ""},
        {"webhook-signature": "v1"},
        {"webhook-signature": "v1,!!not base64!!"},
        {"webhook-signature": "v1a,AAAA"},
    ],
)
def test_malformed_standard_headers_do_not_verify(changes) -> None:
    headers = signature_headers(RECEIVER, "job-1", b"{}", timestamp=1_700_000_000)
    headers = {k: v for k, v in {**headers, **changes}.items() if v is not None}
    assert not verify(RECEIVER, headers, b"{}", now=1_700_000_000)


def test_each_host_is_signed_with_its_own_secret(webhook_server, dns, monkeypatch) -> None:
    port = webhook_server.url("").rsplit(":", 1)[1]
    dns["receiver-a.test"] = dns["receiver-b.test"] = ["127.0.0.1"]
    secrets = f"Receiver-A.test={RECEIVER},receiver-b.test={OTHER}"  # host names: any case
    monkeypatch.setenv("WARREN_WEBHOOK_SECRETS", secrets)
    monkeypatch.setenv("WARREN_WEBHOOK_SECRET", GLOBAL)

    deliver(url=f"http://receiver-a.test:{port}/ok", body={})
    deliver(url=f"http://receiver-b.test:{port}/ok", body={})

    to_a, to_b = webhook_server.requests
    assert verify(RECEIVER, to_a.headers, to_a.body)
    assert not verify(OTHER, to_a.headers, to_a.body)
    assert verify(OTHER, to_b.headers, to_b.body)
    assert not verify(RECEIVER, to_b.headers, to_b.body)


def test_a_host_without_its_own_secret_is_signed_with_the_global_one(
    webhook_server, monkeypatch
) -> None:
    monkeypatch.setenv("WARREN_WEBHOOK_SECRETS", f"hooks.example.com={OTHER}")
    monkeypatch.setenv("WARREN_WEBHOOK_SECRET", GLOBAL)

    deliver(url=webhook_server.url("/ok"), body={})

    [request] = webhook_server.requests
    assert verify(GLOBAL, request.headers, request.body)
    assert verify_signature(GLOBAL, request.headers["Warren-Signature"], request.body)


def test_a_host_without_a_secret_is_sent_unsigned_when_there_is_no_global_one(
    webhook_server, monkeypatch
) -> None:
    monkeypatch.setenv("WARREN_WEBHOOK_SECRETS", f"hooks.example.com={OTHER}")

    deliver(url=webhook_server.url("/ok"), body={})

    [request] = webhook_server.requests
    signed = {"webhook-id", "webhook-timestamp", "webhook-signature", "warren-signature"}
    assert not signed & set(lower(request.headers))


def test_a_secret_ref_picks_the_named_secret_of_the_urls_host(webhook_server, monkeypatch):
    secrets = {"127.0.0.1": RECEIVER, "tenant-b@127.0.0.1": OTHER}
    monkeypatch.setenv("WARREN_WEBHOOK_SECRETS", json.dumps(secrets))

    deliver(url=webhook_server.url("/ok"), body={}, secretRef="tenant-b")
    deliver(url=webhook_server.url("/ok"), body={})

    with_ref, without = webhook_server.requests
    assert verify(OTHER, with_ref.headers, with_ref.body)
    assert not verify(RECEIVER, with_ref.headers, with_ref.body)
    assert verify(RECEIVER, without.headers, without.body)


def secret_ref_errors(url: str, secret_ref: str) -> list[str]:
    """The messages refusing `secretRef` when the payload is validated for enqueue."""
    settings = Settings(webhook_secrets={"tenant-b@hooks.example.com": OTHER})
    try:
        WebhookDelivery.model_validate(
            {"url": url, "secretRef": secret_ref}, context=Enqueueing(settings)
        )
    except ValidationError as exc:
        assert {error["loc"] for error in exc.errors()} == {("secretRef",)}
        return [error["msg"] for error in exc.errors()]
    return []


def test_at_enqueue_a_secret_ref_must_name_a_secret_of_the_urls_host() -> None:
    assert secret_ref_errors("https://hooks.example.com/in", "tenant-b") == []
    assert secret_ref_errors("https://HOOKS.example.com/in", "Tenant-B") == []
    [unknown] = secret_ref_errors("https://hooks.example.com/in", "tenant-c")
    assert "no secret 'tenant-c' for hooks.example.com" in unknown
    # Another host must not get a signature its receiver's secret would verify.
    [elsewhere] = secret_ref_errors("https://attacker.example/in", "tenant-b")
    assert "no secret 'tenant-b' for attacker.example" in elsewhere
    assert OTHER not in unknown + elsewhere


def test_a_secret_ref_no_longer_configured_fails_at_once_sending_nothing(webhook_server):
    with pytest.raises(PermanentError, match=r"no secret 'tenant-b' for 127\.0\.0\.1"):
        deliver(url=webhook_server.url("/ok"), body={}, secretRef="tenant-b")
    assert webhook_server.requests == []


def test_the_legacy_header_is_signed_with_the_destinations_secret(webhook_server, monkeypatch):
    monkeypatch.setenv("WARREN_WEBHOOK_SECRETS", f"127.0.0.1={RECEIVER}")

    deliver(url=webhook_server.url("/ok"), body={"n": 1})

    [request] = webhook_server.requests
    assert verify_signature(RECEIVER, request.headers["Warren-Signature"], request.body)


def test_payload_headers_never_replace_or_repeat_warrens_own(
    webhook_server, running_job, monkeypatch
) -> None:
    """Enqueue refuses these names; a payload that skipped validation still cannot send them."""
    monkeypatch.setenv("WARREN_WEBHOOK_SECRET", GLOBAL)
    running_job("job-5150")
    forged = {name: "forged" for name in ("webhook-id", "Webhook-Signature", "warren-job-id")}
    payload = WebhookDelivery.model_validate({"url": webhook_server.url("/ok"), "body": {}})
    payload.headers = {**forged, "X-Kept": "yes"}  # as if it had skipped validation

    deliver_webhook(payload)

    [request] = webhook_server.requests
    names = [name.lower() for name, _ in request.header_lines]
    assert names.count("webhook-id") == names.count("webhook-signature") == 1
    assert names.count("warren-job-id") == 1
    assert "forged" not in {value for _, value in request.header_lines}
    assert request.headers["X-Kept"] == "yes"
    assert verify(GLOBAL, request.headers, request.body)


@pytest.mark.parametrize(
    "value",
    [
        json.dumps({"Hooks.Example.com": "s1", "t@hooks.example.com": "whsec_YWJj"}),
        " Hooks.Example.com=s1 , t@hooks.example.com=whsec_YWJj ",
    ],
)
def test_webhook_secrets_are_read_as_json_or_as_host_equals_secret(monkeypatch, value):
    monkeypatch.setenv("WARREN_WEBHOOK_SECRETS", value)
    assert Settings().webhook_secrets == {
        "hooks.example.com": "s1",
        "t@hooks.example.com": "whsec_YWJj",
    }


@pytest.mark.parametrize(
    "value", ["@hooks.example.com=s", "name@=s", "hooks.example.com=", "h=whsec_not base64!"]
)
def test_unusable_webhook_secrets_are_refused_at_startup(monkeypatch, value) -> None:
    monkeypatch.setenv("WARREN_WEBHOOK_SECRETS", value)
    with pytest.raises(ValidationError, match="webhook_secrets"):
        Settings()


# -- cancellation (issue #10: a cancelled delivery ended `completed`) -------------------------


def test_a_cancel_stops_a_request_whose_answer_is_held(webhook_server, running_job) -> None:
    """/slow holds its answer for 10 s; the cancel, asked once the request arrived, stops the
    handler within a second (the worker's heartbeat sets the flag the same way)."""
    job = running_job()
    asked: list[float] = []

    def cancel_once_received() -> None:
        wait_for(lambda: webhook_server.requests, what="the request")
        asked.append(time.monotonic())
        job.cancel_requested.set()

    threading.Thread(target=cancel_once_received, daemon=True).start()
    with pytest.raises(JobCancelled):
        deliver(url=webhook_server.url("/slow"), timeoutSeconds=30)

    assert time.monotonic() - asked[0] < 1.0


# -- hostile receivers --------------------------------------------------------------------


def test_a_nul_in_the_answer_is_kept_as_a_replacement_character(webhook_server) -> None:
    """PostgreSQL stores no NUL: the result keeps the rest of what the receiver said."""
    assert deliver(url=webhook_server.url("/nul-ok"))["response"] == "fine\ufffd"
    with pytest.raises(PermanentError, match="no hook\ufffdhere"):
        deliver(url=webhook_server.url("/nul-error"))


def test_an_answer_encoded_twice_is_refused_unread(webhook_server) -> None:
    """gzip over gzip would decode a few hundred bytes into gigabytes."""
    with pytest.raises(AnswerRefused, match="'gzip, gzip'"):
        deliver(url=webhook_server.url("/bomb"))


def test_timeout_seconds_bounds_the_whole_exchange(webhook_server) -> None:
    """/trickle never lets a single read wait a second, for ten seconds in all."""
    started = time.monotonic()

    with pytest.raises(WebhookFailed, match="timed out after 1s"):
        deliver(url=webhook_server.url("/trickle"), timeoutSeconds=1)

    assert time.monotonic() - started < 2.0
