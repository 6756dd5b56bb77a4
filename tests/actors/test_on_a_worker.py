"""The real job types enqueued through Warren and run by a real worker against real local
servers: what a user sees in the job row."""

import base64
import json
import os
import time

import pytest
import sqlalchemy as sa
from falcon import testing
from pydantic import SecretStr

from actors.webhook_delivery import verify, verify_signature
from api.app import create_app
from api.views import job_json
from service import sealing
from service.client import Warren
from service.drain import Drainer
from service.errors import ValidationFailed
from tests.helpers import wait_for

FAST_RETRY = {"strategy": "fixed", "baseSeconds": 0.1}
RECEIVER = "whsec_" + base64.b64encode(b"the receiver's own key, 32 bytes").decode()
OTHER = "whsec_" + base64.b64encode(b"another receiver's key, 32 bytes").decode()


def final(warren, job_id, timeout: float = 20.0):
    return wait_for(
        lambda: (job := warren.get(job_id)).status in ("completed", "failed", "cancelled") and job,
        timeout=timeout,
        what=f"job {job_id} to finish",
    )


def test_a_webhook_is_delivered_and_signed(warren, start_worker, webhook_server):
    start_worker(webhook_secret="whsec-test")
    job_id = warren.enqueue(
        "webhook-delivery", {"url": webhook_server.url("/ok"), "body": {"event": "paid"}}
    ).id

    job = final(warren, job_id)

    assert job.status == "completed"
    assert job.result["statusCode"] == 200
    [request] = webhook_server.requests
    assert json.loads(request.body) == {"event": "paid"}
    assert request.headers["Warren-Job-Id"] == str(job_id)
    assert verify_signature("whsec-test", request.headers["Warren-Signature"], request.body)
    assert not verify_signature("other", request.headers["Warren-Signature"], request.body)


def test_a_failure_whose_message_holds_a_nul_is_recorded_at_once(warren, worker, webhook_server):
    """The receiver's 404 says `no hook\\0here`; PostgreSQL stores no NUL. The job fails with
    the rest of the message kept, instead of staying `processing` until its lease runs out."""
    job_id = warren.enqueue("webhook-delivery", {"url": webhook_server.url("/nul-error")}).id

    job = final(warren, job_id, timeout=10)

    assert job.status == "failed"
    assert job.error["message"].endswith("no hook\ufffdhere")


def test_a_webhook_answered_with_5xx_is_retried_until_attempts_run_out(
    warren, worker, webhook_server
):
    job_id = warren.enqueue(
        "webhook-delivery", {"url": webhook_server.url("/boom")}, max_attempts=3, retry=FAST_RETRY
    ).id

    job = final(warren, job_id)

    assert job.status == "failed"
    assert job.attempts == 3
    assert job.error["retryable"] is True
    assert "HTTP 500" in job.error["message"]
    assert len(webhook_server.requests) == 3


def test_a_webhook_answered_with_404_fails_at_once(warren, worker, webhook_server):
    job_id = warren.enqueue(
        "webhook-delivery", {"url": webhook_server.url("/missing")}, retry=FAST_RETRY
    ).id

    job = final(warren, job_id)

    assert job.status == "failed"
    assert job.attempts == 1
    assert job.error["retryable"] is False
    assert len(webhook_server.requests) == 1


def test_an_email_is_delivered_over_smtp(warren, start_worker, smtp_server):
    inbox = smtp_server()
    start_worker(smtp_url=os.environ["WARREN_SMTP_URL"])
    job_id = warren.enqueue(
        "send-email", {"to": "alice@example.com", "subject": "Welcome", "body": "<p>Hi</p>"}
    ).id

    job = final(warren, job_id)

    assert job.status == "completed"
    [envelope] = inbox.envelopes
    assert envelope.rcpt_tos == ["alice@example.com"]
    assert b"Subject: Welcome" in envelope.content
    assert job.result["messageId"] == f"<{job_id}@warren>"


def test_an_email_to_an_unreachable_server_is_retried(warren, start_worker, closed_port):
    start_worker(smtp_url=f"smtp://127.0.0.1:{closed_port}")
    job_id = warren.enqueue(
        "send-email",
        {"to": "bob@example.com", "subject": "Hi", "body": "text"},
        max_attempts=2,
        retry=FAST_RETRY,
    ).id

    job = final(warren, job_id)

    assert job.status == "failed"
    assert job.attempts == 2
    assert job.error["retryable"] is True


def test_a_webhook_to_a_forbidden_target_fails_at_once_keeping_nothing_of_it(
    warren, start_worker, scheduler, webhook_server
):
    """Issue #10: a webhook pointed at an internal service must not bring back its answer.
    The enqueuing side allows 127.0.0.1 (the environment of these tests); the worker does
    not, as a deployment's worker would refuse RabbitMQ's admin API on its own machine."""
    start_worker(allowed_networks=[])
    scheduler()  # drains dead letters into /dlq
    job_id = warren.enqueue(
        "webhook-delivery",
        {"url": webhook_server.url("/secret"), "method": "GET"},
        retry=FAST_RETRY,
    ).id

    job = final(warren, job_id)
    letter = wait_for(
        lambda: [d for d in warren.dlq.list() if d.job_id == job_id], what="the dead letter"
    )[0]

    assert job.status == "failed"
    assert job.attempts == 1
    assert job.error["type"] == "ForbiddenAddress"
    assert job.error["retryable"] is False
    assert job.error["message"].startswith("127.0.0.1 is a loopback address: refused")
    assert job.result is None
    assert webhook_server.requests == []
    kept = [job.model_dump_json(), letter.model_dump_json()]
    kept += [attempt.model_dump_json() for attempt in warren.attempts(job_id)]
    assert not [text for text in kept if "SECRET" in text]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2:15672/api/overview",
        "http://2130706434/",
        "http://169.254.169.254/latest/meta-data/",
        "http://guest:guest@hooks.example.com/in",
    ],
)
def test_a_webhook_to_a_forbidden_url_is_refused_at_enqueue(warren, url):
    with pytest.raises(ValidationFailed) as caught:
        warren.enqueue("webhook-delivery", {"url": url})

    assert [detail["field"] for detail in caught.value.details] == ["payload.url"]
    assert warren.list({"type": "webhook-delivery"}).jobs == []


def test_a_webhook_is_signed_with_its_receivers_own_secret(warren, start_worker, webhook_server):
    start_worker(webhook_secrets={"127.0.0.1": RECEIVER, "other.example": OTHER})
    job_id = warren.enqueue(
        "webhook-delivery", {"url": webhook_server.url("/ok"), "body": {"event": "paid"}}
    ).id

    assert final(warren, job_id).status == "completed"

    [request] = webhook_server.requests
    assert {k.lower(): v for k, v in request.headers.items()}["webhook-id"] == str(job_id)
    assert verify(RECEIVER, request.headers, request.body)
    assert not verify(OTHER, request.headers, request.body)


def test_a_secret_ref_unknown_for_the_urls_host_is_refused_at_enqueue(warren, webhook_server):
    with pytest.raises(ValidationFailed) as caught:
        warren.enqueue(
            "webhook-delivery", {"url": webhook_server.url("/ok"), "secretRef": "tenant-b"}
        )

    assert [detail["field"] for detail in caught.value.details] == ["payload.secretRef"]
    assert warren.list({"type": "webhook-delivery"}).jobs == []


def wait_until_cancelled(warren, job_id) -> float:
    """Cancel the job and wait for it to end; returns the seconds that took."""
    asked = time.monotonic()
    warren.cancel(job_id)
    job = final(warren, job_id, timeout=15)
    assert job.status == "cancelled"
    return time.monotonic() - asked


def test_a_webhook_cancelled_while_its_server_holds_the_answer_ends_cancelled_at_once(
    warren, worker, webhook_server
):
    """/slow holds its answer for 10 s: a job blocked reading it must still stop when asked."""
    job_id = warren.enqueue(
        "webhook-delivery", {"url": webhook_server.url("/slow"), "timeoutSeconds": 30}
    ).id
    wait_for(lambda: webhook_server.requests, what="the request to reach the server")

    assert wait_until_cancelled(warren, job_id) < 1.5
    assert warren.get(job_id).result is None


def test_an_email_cancelled_while_its_server_says_nothing_ends_cancelled_at_once(
    warren, start_worker, silent_port
):
    start_worker(smtp_url=f"smtp://127.0.0.1:{silent_port}")
    job_id = warren.enqueue(
        "send-email", {"to": "carol@example.com", "subject": "Hi", "body": "text"}
    ).id
    wait_for(lambda: warren.get(job_id).status == "processing", what="the job to start")

    assert wait_until_cancelled(warren, job_id) < 1.5


@pytest.mark.parametrize("encrypted", [True, False], ids=["with-key", "without-key"])
def test_webhook_headers_are_secret_everywhere_but_on_the_wire(
    settings, engine, start_worker, webhook_server, encrypted
):
    key = SecretStr(sealing.new_key()) if encrypted else None
    keyed = Warren(settings.model_copy(update={"secret_key": key}), engine=engine)
    start_worker(secret_key=key)
    job_id = keyed.enqueue(
        "webhook-delivery",
        {"url": webhook_server.url("/missing"), "headers": {"Authorization": "Bearer s3cr3t"}},
    ).id

    job = final(keyed, job_id)
    [request] = webhook_server.requests
    assert request.headers["Authorization"] == "Bearer s3cr3t"  # the receiver gets it
    client = testing.TestClient(create_app(warren=keyed))
    shown = client.simulate_get(f"/jobs/{job_id}").json["job"]["payload"]
    assert shown["headers"] == "[secret]"
    assert "s3cr3t" not in json.dumps(job_json(job))
    drainer = Drainer(engine, keyed.settings, keyed.publisher.broker)
    wait_for(drainer.drain, what="the dead letter")  # as the scheduler drains it
    drainer.close()
    [letter] = client.simulate_get("/dlq").json["messages"]
    assert letter["payload"]["headers"] == "[secret]"
    with engine.connect() as conn:
        stored = conn.scalar(
            sa.text("SELECT payload::text FROM jobs WHERE id = :id"), {"id": job_id}
        )
    assert ("s3cr3t" in stored) is not encrypted
    keyed.publisher.close()
