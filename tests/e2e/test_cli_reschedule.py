"""`warren jobs reschedule`: a pending job's new time and priority from the command line."""

import json

from tests.e2e.test_cli import enqueue, ok, one_error_line, show


def test_reschedule_moves_a_pending_job(run_cli):
    job_id = enqueue(run_cli, "test-noop", {}, "--delay", "3600")

    job = json.loads(ok(run_cli("jobs", "reschedule", job_id, "--priority", "high", "--json")))
    assert job["priority"] == 10 and job["status"] == "pending"

    out = ok(run_cli("jobs", "reschedule", job_id, "--at", "2030-01-01T00:00:00+00:00"))
    assert out.strip() == f"job {job_id} runs at 2030-01-01T00:00:00+00:00, priority 10"


def test_a_bad_time_is_one_error_line(run_cli):
    job_id = enqueue(run_cli, "test-noop", {}, "--delay", "3600")

    line = one_error_line(run_cli("jobs", "reschedule", job_id, "--at", "tomorrow"))
    assert "--at: must be an ISO 8601 time" in line
    assert "scheduledAt" not in line


def test_a_time_and_a_delay_together_are_a_usage_error(run_cli):
    job_id = enqueue(run_cli, "test-noop", {}, "--delay", "3600")

    result = run_cli("jobs", "reschedule", job_id, "--at", "2030-01-01T00:00:00Z", "--delay", "5")
    assert one_error_line(result, code=2) == "error: --at and --delay exclude each other"


def test_a_priority_not_written_with_the_digits_0_to_9_is_refused(run_cli):
    job_id = enqueue(run_cli, "test-noop", {}, "--delay", "3600")

    line = one_error_line(run_cli("jobs", "reschedule", job_id, "--priority", "\u0663"))
    assert "--priority: " in line
    assert show(run_cli, job_id)["job"]["priority"] == 5
