"""The `warren` command line end to end: real subprocesses, PostgreSQL and RabbitMQ."""

import json
import subprocess
import uuid
from importlib.metadata import version

import pytest
import sqlalchemy as sa

from service.client import Warren
from tests.conftest import test_settings as run_settings
from tests.e2e.conftest import ROOT, cli_argv
from tests.helpers import wait_for

pytestmark = pytest.mark.usefixtures("clean")

CLOSED_BROKER = "amqp://guest:guest@127.0.0.1:1/%2F"


def ok(result) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def one_error_line(result, code: int = 1) -> str:
    """The single `error: ...` line a failed command prints; no traceback, nothing on stdout."""
    assert result.returncode == code, f"exit {result.returncode}\n{result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert result.stdout == ""
    return lines[0]


def enqueue(run_cli, type: str = "test-noop", payload: dict | None = None, *args: str) -> str:
    out = ok(run_cli("enqueue", type, "--payload", json.dumps(payload or {}), *args))
    return str(uuid.UUID(out.strip()))


def show(run_cli, job_id: str) -> dict:
    return json.loads(ok(run_cli("jobs", "show", job_id, "--json")))


def test_db_upgrade_is_repeatable(run_cli, settings):
    name = sa.make_url(settings.database_url).database
    for _ in range(2):
        assert ok(run_cli("db", "upgrade")).strip() == f"database {name} is at the newest schema"


def test_enqueue_then_show(run_cli):
    job_id = enqueue(run_cli, "test-record", {"tag": "a"}, "--priority", "high")

    shown = show(run_cli, job_id)

    assert shown["job"]["id"] == job_id
    assert shown["job"]["status"] == "pending"
    assert shown["job"]["priority"] == 10
    assert shown["job"]["payload"]["tag"] == "a"
    assert shown["attempts"] == []
    human = ok(run_cli("jobs", "show", job_id))
    assert job_id in human and "pending" in human


def test_enqueue_with_an_idempotency_key_twice(run_cli):
    args = ("enqueue", "test-noop", "--idempotency-key", "k-1", "--json")
    first = json.loads(ok(run_cli(*args)))
    second = json.loads(ok(run_cli(*args)))

    assert first["created"] is True
    assert second == {"jobId": first["jobId"], "created": False}


def test_enqueue_of_an_unknown_type_names_the_known_ones(run_cli):
    line = one_error_line(run_cli("enqueue", "no-such-type", "--payload", "{}"))

    assert "no-such-type" in line
    assert "known types" in line and "test-noop" in line and "test-record" in line
    assert line.count("known types") == 1  # the detail naming `type` is not repeated


@pytest.mark.parametrize(
    "payload", ["{not json", '{"n": NaN}', '{"n": ' + "9" * 5000 + "}", "[" * 5000 + "]" * 5000]
)
def test_enqueue_with_invalid_json(run_cli, payload):
    line = one_error_line(run_cli("enqueue", "test-noop", "--payload", payload))

    assert "--payload is not valid JSON" in line


def test_enqueue_with_a_payload_past_the_size_the_api_takes_is_refused(run_cli, settings):
    payload = json.dumps({"tag": "x" * settings.max_payload_bytes})

    line = one_error_line(run_cli("enqueue", "test-record", "--payload", payload))

    assert "--payload is longer than" in line and "WARREN_MAX_PAYLOAD_BYTES" in line


def test_enqueue_with_an_invalid_payload_names_the_field(run_cli):
    line = one_error_line(run_cli("enqueue", "test-noop", "--payload", '{"n": "many"}'))

    assert "payload.n" in line


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--delay", "-1"),
        ("--max-attempts", "0"),
        ("--timeout", "0"),
        ("--scheduled-at", "tomorrow"),
        ("--priority", "11"),
        ("--priority", "\u0663"),  # an Arabic-Indic 3, which int() reads
        ("--priority", " 3"),
        ("--idempotency-key", ""),
    ],
)
def test_enqueue_with_a_bad_option_names_the_option(run_cli, option, value):
    line = one_error_line(run_cli("enqueue", "test-noop", option, value))

    assert f"{option}: " in line
    assert "_" not in line.partition("(")[2], line  # no Python name such as delay_seconds


def test_enqueue_with_both_a_delay_and_a_time_is_a_usage_error(run_cli):
    result = run_cli("enqueue", "test-noop", "--delay", "5", "--scheduled-at", "2031-01-01")

    assert one_error_line(result, code=2) == "error: --delay and --scheduled-at exclude each other"


def test_list_filters_by_status(run_cli):
    kept = enqueue(run_cli)
    cancelled = enqueue(run_cli)
    ok(run_cli("jobs", "cancel", cancelled))

    listed = json.loads(ok(run_cli("jobs", "list", "--status", "pending", "--json")))

    assert listed["count"] == 1
    assert [job["id"] for job in listed["jobs"]] == [kept]
    assert listed["nextCursor"] is None
    assert kept in ok(run_cli("jobs", "list"))


def test_list_filters_by_payload_field_and_pages(run_cli):
    x = enqueue(run_cli, "test-record", {"tag": "x"})
    enqueue(run_cli, "test-record", {"tag": "y"})

    listed = json.loads(ok(run_cli("jobs", "list", "--payload", "tag=x", "--json")))
    page = json.loads(ok(run_cli("jobs", "list", "--limit", "1", "--json")))

    assert [job["id"] for job in listed["jobs"]] == [x]
    assert page["count"] == 1 and page["nextCursor"]
    rest = json.loads(ok(run_cli("jobs", "list", "--cursor", page["nextCursor"], "--json")))
    assert [job["id"] for job in rest["jobs"]] == [x]


def test_list_with_a_bad_filter(run_cli):
    line = one_error_line(run_cli("jobs", "list", "--status", "sleeping"))

    assert "status must be one of" in line


def test_cancel_then_retry(run_cli):
    job_id = enqueue(run_cli)

    assert f"job {job_id} cancelled" in ok(run_cli("jobs", "cancel", job_id))
    assert show(run_cli, job_id)["job"]["status"] == "cancelled"
    again = one_error_line(run_cli("jobs", "cancel", job_id))
    assert "already cancelled" in again

    retried = json.loads(ok(run_cli("jobs", "retry", job_id, "--json")))
    assert retried["jobId"] == job_id and retried["status"] == "pending"
    assert show(run_cli, job_id)["job"]["status"] == "pending"
    assert "only failed or cancelled" in one_error_line(run_cli("jobs", "retry", job_id))


def test_show_prints_a_payload_as_written_and_its_escape_sequences_inert(run_cli):
    job_id = enqueue(run_cli, "test-record", {"tag": "[/bold] [link=http://x]\u001b]0;pwned\u0007"})

    out = ok(run_cli("jobs", "show", job_id))  # rich read `[/bold]` as markup, and failed

    assert "[/bold] [link=http://x]" in out
    assert "\\u001b]0;pwned\\u0007" in out  # as JSON writes it
    assert "\x1b" not in out and "\x07" not in out


def test_show_of_an_unknown_job(run_cli):
    missing = str(uuid.uuid4())

    assert missing in one_error_line(run_cli("jobs", "show", missing))
    assert "not found" in one_error_line(run_cli("jobs", "show", "not-a-uuid"))


def test_stats_counts(run_cli):
    enqueue(run_cli)
    ok(run_cli("jobs", "cancel", enqueue(run_cli)))
    enqueue(run_cli, "test-record", {})

    stats = json.loads(ok(run_cli("stats", "--json")))

    assert stats["total"] == 3
    assert (stats["pending"], stats["cancelled"], stats["completed"]) == (2, 1, 0)
    assert stats["byType"]["test-noop"]["total"] == 2
    assert stats["byType"]["test-noop"]["cancelled"] == 1
    assert stats["byType"]["test-record"]["pending"] == 1
    assert "test-record" in ok(run_cli("stats"))


def test_stats_before_any_worker_declared_the_queues_says_so_without_warnings(run_cli, cli_env):
    result = run_cli("stats", env={"WARREN_QUEUE_PREFIX": f"{cli_env['WARREN_QUEUE_PREFIX']}-new"})

    assert "queues: none declared yet" in ok(result)
    assert result.stderr == ""


def test_database_unreachable_is_one_line(cli_env):
    env = {**cli_env, "WARREN_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/x"}
    result = subprocess.run(
        cli_argv("jobs", "list"), cwd=ROOT, env=env, capture_output=True, text=True
    )

    assert "database unreachable" in one_error_line(result)


def test_a_job_module_that_does_not_exist_is_one_line_naming_it(run_cli):
    result = run_cli("jobs", "list", env={"WARREN_JOB_MODULES": "actors,billing.jobs"})

    assert "WARREN_JOB_MODULES: no module named 'billing.jobs'" in one_error_line(result)


@pytest.mark.parametrize(
    ("args", "says", "help_of"),
    [
        (("jobs", "show"), "Missing argument 'ID'", "warren jobs show"),
        (("enqueue", "test-noop", "extra"), "unexpected extra argument", "warren enqueue"),
        (("jobs", "list", "--limit", "many"), "'--limit'", "warren jobs list"),
        (("--colour",), "No such option: --colour", "warren"),
        # a count past 1,024 once forked that many worker processes
        (("worker", "--processes", "99999999999999999999"), "'--processes'", "warren worker"),
        (("worker", "--threads", "1025"), "'--threads'", "warren worker"),
        (("api", "--workers", "5000"), "'--workers'", "warren api"),
        (("api", "--port", "99999"), "'--port'", "warren api"),
    ],
)
def test_a_command_line_that_does_not_parse_is_one_line_naming_the_help(
    run_cli, args, says, help_of
):
    line = one_error_line(run_cli(*args), code=2)

    assert says in line
    assert line.endswith(f"(see '{help_of} --help')")


def test_warren_alone_prints_its_commands_and_exits_2(run_cli):
    result = run_cli()

    assert result.returncode == 2
    assert "enqueue" in result.stdout and "Commands" in result.stdout
    assert result.stderr == ""


def test_version_is_the_installed_package_s(run_cli):
    assert ok(run_cli("--version")).strip() == f"warren {version('warren')}"


def test_worker_rejects_an_unknown_tier(run_cli):
    line = one_error_line(run_cli("worker", "--queues", "high,urgent"), code=2)

    assert "urgent" in line


def test_enqueue_to_a_broker_that_never_answers_keeps_the_job_for_the_scheduler(
    run_cli, mute_broker, engine
):
    result = run_cli("enqueue", "test-noop", env={"WARREN_BROKER_URL": mute_broker})

    job_id = ok(result).strip()  # exit 0: a second run of the command would enqueue it twice
    assert "the scheduler will retry" in result.stderr
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT status, published_at FROM jobs WHERE id = :id"), {"id": job_id}
        ).one()
    assert tuple(row) == ("pending", None)


def test_retry_to_a_broker_that_never_answers_keeps_the_retry_for_the_scheduler(
    run_cli, mute_broker
):
    job_id = enqueue(run_cli)
    ok(run_cli("jobs", "cancel", job_id))

    retried = run_cli("jobs", "retry", job_id, env={"WARREN_BROKER_URL": mute_broker})

    assert f"job {job_id}" in ok(retried)
    assert show(run_cli, job_id)["job"]["status"] == "pending"


def test_scheduler_publishes_a_job_whose_publish_failed(run_cli, spawn, engine):
    offline = Warren(run_settings(broker_url=CLOSED_BROKER))
    try:
        job_id = offline.enqueue("test-record", {"tag": "stranded"}).id
    finally:
        offline.close()

    def status() -> str:
        with engine.connect() as conn:
            return conn.scalar(sa.text("SELECT status FROM jobs WHERE id = :id"), {"id": job_id})

    assert status() == "pending"
    scheduler = spawn("scheduler")
    spawn("worker", "--processes", "1", "--threads", "2")

    wait_for(lambda: status() == "completed", timeout=60, interval=0.2, what="job completed")

    assert show(run_cli, str(job_id))["job"]["result"] == {"attempt": 1, "tag": "stranded"}
    assert scheduler.stop() == 0
    assert "scheduler stopped" in scheduler.output()
