"""The real job types enqueued through Warren and run by a real worker against real local
servers: what a user sees in the job row."""

import json
import os

from actors.webhook_delivery import verify_signature
from tests.helpers import wait_for

FAST_RETRY = {"strategy": "fixed", "baseSeconds": 0.1}


def final(warren, job_id):
    return wait_for(
        lambda: (job := warren.get(job_id)).status in ("completed", "failed") and job,
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
