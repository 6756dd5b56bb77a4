"""`warren dlq list | groups | replay | purge`: the dead-letter inspector for admin scripts."""

import json

import pytest
import sqlalchemy as sa

from service.store import dead_letters
from tests.e2e.test_cli import enqueue, ok, one_error_line, show

pytestmark = pytest.mark.usefixtures("clean")


@pytest.fixture
def dead_job(run_cli, engine, settings):
    """A job that failed for good and sits in the DLQ, as the scheduler leaves it."""
    job_id = enqueue(run_cli, "test-noop", {"n": 1}, "--delay", "3600")
    error = {"type": "RuntimeError", "message": "boom 42", "retryable": True}
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE jobs SET status = 'failed', attempts = 1, error = :e WHERE id = :id"),
            {"e": json.dumps(error), "id": job_id},
        )
        dead_letters.record(
            conn,
            job_id=job_id,
            type="test-noop",
            queue=f"{settings.queue_prefix}.normal",
            message={"kwargs": {"n": 1}},
            error=error,
        )
    return job_id


def test_list_and_groups_show_the_dead_job(run_cli, dead_job):
    listed = json.loads(ok(run_cli("dlq", "list", "--json")))
    groups = json.loads(ok(run_cli("dlq", "groups", "--json")))["groups"]

    assert [m["jobId"] for m in listed["messages"]] == [dead_job]
    assert listed["messages"][0]["payload"] == {"n": 1}
    assert groups[0]["count"] == 1
    assert groups[0]["sampleError"]["message"] == "boom 42"
    assert dead_job in ok(run_cli("dlq", "list"))


def test_replay_returns_the_job_to_pending(run_cli, dead_job):
    assert json.loads(ok(run_cli("dlq", "replay", dead_job, "--json"))) == {"replayed": 1}

    job = show(run_cli, dead_job)["job"]
    assert job["status"] == "pending"
    assert job["attempts"] == 0
    assert "empty" in ok(run_cli("dlq", "list"))


def test_replay_of_a_job_not_in_the_dlq_fails_with_one_line(run_cli, dead_job):
    other = enqueue(run_cli)
    line = one_error_line(run_cli("dlq", "replay", other))
    assert "not in the dead-letter queue" in line


def test_purge_by_fingerprint_leaves_the_job_failed(run_cli, dead_job):
    [group] = json.loads(ok(run_cli("dlq", "groups", "--json")))["groups"]

    assert ok(run_cli("dlq", "purge", "--fingerprint", group["fingerprint"])).strip() == (
        "purged 1 dead letter"
    )
    assert show(run_cli, dead_job)["job"]["status"] == "failed"


def test_replay_needs_exactly_one_selection(run_cli):
    one_error_line(run_cli("dlq", "replay"), code=2)
    assert "'garbage' is not a job id" in one_error_line(run_cli("dlq", "replay", "garbage"), 2)
    one_error_line(run_cli("dlq", "purge", "--all", "--fingerprint", "x"), code=2)


def test_list_before_an_id_past_postgresql_s_bigint_is_a_usage_error(run_cli):
    line = one_error_line(run_cli("dlq", "list", "--before", str(2**63)), code=2)

    assert "'--before'" in line  # was a database error
