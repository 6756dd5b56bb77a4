"""`warren pause | resume | paused` and `warren cancel | retry` by filter, as an operator runs
them, against real `warren worker` and `warren scheduler` processes."""

import json

import pytest
import sqlalchemy as sa

from tests.e2e.test_cli import enqueue, ok, one_error_line
from tests.helpers import wait_for


def states(engine: sa.Engine, job_ids: list[str]) -> set[tuple[str, int]]:
    """`(status, life)` of the jobs."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT status, life FROM jobs WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": job_ids},
        ).all()
    return {tuple(row) for row in rows}


def test_pause_resume_and_paused(run_cli, clean):
    assert "tier high paused" in ok(run_cli("pause", "tier", "high"))
    ok(run_cli("pause", "type", "send-email"))
    ok(run_cli("pause", "type", "send-email"))  # again: no change, no error

    assert json.loads(ok(run_cli("paused", "--json"))) == {
        "paused": {"tiers": ["high"], "types": ["send-email"]}
    }
    listed = ok(run_cli("paused"))
    assert "high" in listed and "send-email" in listed

    resumed = json.loads(ok(run_cli("resume", "tier", "high", "--json")))
    assert resumed == {"paused": {"tiers": [], "types": ["send-email"]}}
    ok(run_cli("resume", "type", "send-email"))
    assert "nothing is paused" in ok(run_cli("paused"))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("pause", "tier", "urgent"), "unknown tier 'urgent'"),
        (("resume", "type", "no-such-type"), "unknown job type 'no-such-type'"),
    ],
)
def test_an_unknown_tier_or_type_is_one_error_line(run_cli, clean, args, says):
    assert says in one_error_line(run_cli(*args))


def test_pausing_something_else_is_a_usage_error(run_cli, clean):
    line = one_error_line(run_cli("pause", "queue", "high"), code=2)

    assert "'tier'" in line and "'type'" in line


def test_a_paused_type_waits_for_resume_then_runs_on_real_processes(run_cli, spawn, engine, clean):
    ok(run_cli("pause", "type", "test-noop"))
    spawn("scheduler")
    spawn("worker", "--processes", "1", "--threads", "2")
    held = [enqueue(run_cli, "test-noop") for _ in range(3)]
    ran = enqueue(run_cli, "test-record")

    wait_for(
        lambda: states(engine, [ran]) == {("completed", 1)},
        timeout=60,
        interval=0.2,
        what="an unpaused job to run",
    )
    wait_for(
        lambda: states(engine, held) == {("pending", 2)},
        timeout=30,
        interval=0.2,
        what="the worker to park the paused jobs",
    )

    ok(run_cli("resume", "type", "test-noop"))
    wait_for(
        lambda: states(engine, held) == {("completed", 2)},
        timeout=60,
        interval=0.2,
        what="the parked jobs to run once resumed",
    )


def test_cancel_and_retry_by_filter_with_a_dry_run(run_cli, engine, clean):
    ids = [enqueue(run_cli, "test-noop", {"n": 1}, "--delay", "3600") for _ in range(3)]
    enqueue(run_cli, "test-record", {}, "--delay", "3600")

    counted = json.loads(ok(run_cli("cancel", "--type", "test-noop", "--dry-run", "--json")))
    assert counted == {"matched": 3, "changed": 3, "dryRun": True}
    assert "would cancel 3 of 3 matching jobs" in ok(
        run_cli("cancel", "--payload", "n=1", "--dry-run")
    )
    assert states(engine, ids) == {("pending", 1)}

    assert "cancelled 3 of 3 matching jobs" in ok(run_cli("cancel", "--type", "test-noop"))
    assert states(engine, ids) == {("cancelled", 1)}

    retried = json.loads(ok(run_cli("retry", "--status", "cancelled", "--json")))
    assert retried == {"matched": 3, "changed": 3, "dryRun": False}
    assert states(engine, ids) == {("pending", 2)}


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("cancel",), 2),  # no filter and no --all: refused, nothing cancelled
        (("cancel", "--all", "--type", "test-noop"), 2),
        (("retry", "--status", "lost"), 1),
        (("cancel", "--colour", "red"), 2),
        (("cancel", "--type", ""), 1),  # an empty name once selected every job
        (("retry", "--schedule", ""), 1),
    ],
)
def test_a_bulk_command_without_a_clear_filter_changes_nothing(run_cli, engine, clean, args, code):
    job_id = enqueue(run_cli, "test-noop", {}, "--delay", "3600")

    result = run_cli(*args)

    assert result.returncode == code
    assert result.stdout == ""
    assert states(engine, [job_id]) == {("pending", 1)}


def test_cancel_all(run_cli, engine, clean):
    ids = [enqueue(run_cli, "test-noop", {}, "--delay", "3600") for _ in range(2)]

    assert "cancelled 2 of 2 matching jobs" in ok(run_cli("cancel", "--all"))
    assert states(engine, ids) == {("cancelled", 1)}
