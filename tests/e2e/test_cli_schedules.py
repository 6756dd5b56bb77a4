"""`warren schedules`: add, list, show, pause, resume, run and delete from the command line."""

import json

import pytest

from tests.e2e.test_cli import ok, one_error_line

pytestmark = pytest.mark.usefixtures("clean")  # no schedule left by an earlier test


def test_a_schedule_from_add_to_delete(run_cli):
    added = json.loads(
        ok(
            run_cli(
                "schedules", "add", "hourly-noop", "@hourly", "test-noop",
                "--timezone", "Europe/Berlin", "--priority", "low", "--json",
            )
        )
    )  # fmt: skip
    assert added["name"] == "hourly-noop" and added["priority"] == 1

    [listed] = json.loads(ok(run_cli("schedules", "list", "--json")))
    assert listed["name"] == "hourly-noop"
    assert "hourly-noop" in ok(run_cli("schedules", "list"))

    paused = json.loads(ok(run_cli("schedules", "pause", "hourly-noop", "--json")))
    assert paused["enabled"] is False
    assert "resumed" in ok(run_cli("schedules", "resume", "hourly-noop"))

    job = json.loads(ok(run_cli("schedules", "run", "hourly-noop", "--json")))
    assert job["scheduleName"] == "hourly-noop"
    made = json.loads(ok(run_cli("jobs", "list", "--schedule", "hourly-noop", "--json")))
    assert [j["id"] for j in made["jobs"]] == [job["id"]]
    shown = json.loads(ok(run_cli("schedules", "show", "hourly-noop", "--json")))
    assert shown["lastJobId"] == job["id"]

    assert (
        ok(run_cli("schedules", "delete", "hourly-noop")).strip() == "schedule hourly-noop deleted"
    )


def test_a_bad_cron_is_one_error_line(run_cli):
    line = one_error_line(run_cli("schedules", "add", "bad", "61 * * * *", "test-noop"))
    assert "cron" in line


def test_a_bad_option_is_named_as_typed(run_cli):
    add = ("schedules", "add", "nightly", "0 3 * * *", "test-noop")
    line = one_error_line(run_cli(*add, "--catch-up", "sometimes", "--timezone", "Mars/Base"))

    assert "--catch-up: " in line and "--timezone: " in line
    assert "catchUp" not in line
    assert "no schedules" in ok(run_cli("schedules", "list"))


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--payload", "[" * 100_000, "--payload is not valid JSON"),  # was a RecursionError
        ("--payload", "[1]", "--payload must be a JSON object"),
        ("--priority", "\u0663", "--priority: "),  # an Arabic-Indic 3, which int() reads
    ],
)
def test_a_bad_payload_or_priority_is_one_error_line_and_adds_nothing(run_cli, option, value, says):
    add = ("schedules", "add", "nightly", "0 3 * * *", "test-noop")
    line = one_error_line(run_cli(*add, option, value))

    assert says in line
    assert "no schedules" in ok(run_cli("schedules", "list"))
