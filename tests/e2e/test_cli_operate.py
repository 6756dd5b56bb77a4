"""Operating Warren from the command line, as a user would, in subprocesses: the API's
refusal to listen beyond loopback without tokens, `enqueue --file`, `stats --watch` and
`jobs tail`."""

import json
import re
import signal
import subprocess

import httpx
import pytest
import sqlalchemy as sa

from tests.e2e.conftest import ROOT, cli_argv
from tests.e2e.test_cli import ok, one_error_line
from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.usefixtures("clean")


def answers(url: str, headers: dict[str, str] | None = None) -> int | None:
    try:
        return httpx.get(url, headers=headers, timeout=1).status_code
    except httpx.TransportError:
        return None


# -- listening beyond loopback ----------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "api.example.com"])
def test_api_refuses_to_listen_beyond_loopback_without_tokens(run_cli, host):
    line = one_error_line(run_cli("api", "--host", host, "--port", str(free_port())))

    assert line.startswith(f"error: refusing to listen on {host}, beyond loopback")
    assert "--insecure" in line


def test_run_refuses_too_when_its_api_host_is_beyond_loopback(run_cli):
    line = one_error_line(run_cli("run", env={"WARREN_API_HOST": "0.0.0.0"}))

    assert "refusing to listen on 0.0.0.0" in line


def test_api_listens_beyond_loopback_with_tokens_and_asks_for_them(spawn):
    port = free_port()
    spawn(
        "api", "--host", "0.0.0.0", "--port", str(port), "--workers", "1",
        env={"WARREN_API_TOKENS": "ops:ops-token:read"},
    )  # fmt: skip
    jobs = f"http://127.0.0.1:{port}/jobs"

    assert wait_for(lambda: answers(jobs), timeout=60, what="the API") == 401
    assert answers(jobs, {"Authorization": "Bearer ops-token"}) == 200


def test_api_listens_beyond_loopback_without_tokens_when_told_insecure(spawn):
    port = free_port()
    spawn("api", "--host", "0.0.0.0", "--port", str(port), "--workers", "1", "--insecure")

    assert wait_for(lambda: answers(f"http://127.0.0.1:{port}/jobs"), timeout=60) == 200


def test_api_with_a_malformed_token_setting_stops_with_one_line(run_cli):
    result = run_cli("api", env={"WARREN_API_TOKENS": "ci:hunter2:superuser"})

    line = one_error_line(result)
    assert "WARREN_API_TOKENS entry 1 ('ci') has an unknown scope" in line
    assert "hunter2" not in line


def test_scheduler_with_a_nan_interval_stops_with_one_line(run_cli):
    result = run_cli("scheduler", env={"WARREN_DISPATCH_INTERVAL_SECONDS": "nan"})

    assert "WARREN_DISPATCH_INTERVAL_SECONDS:" in one_error_line(result)


# -- enqueue --file ---------------------------------------------------------------------------


def job_types(engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT type, count(*) FROM jobs GROUP BY type")).all()
    return dict(rows)


def test_enqueue_file_enqueues_the_good_lines_and_names_the_bad_ones(run_cli, engine, tmp_path):
    good = [json.dumps({"type": "test-noop", "payload": {}}) for _ in range(1200)]
    bad = [
        "{not json",
        "",
        json.dumps(["a list"]),
        json.dumps({"type": "no-such-type", "payload": {}}),
        json.dumps({"type": "send-email", "payload": {"to": "a@example.com"}}),
        json.dumps({"type": "test-record", "payload": {"tag": "x" * 200_000}}),
        '{"type": "test-noop", "payload": {"n": ' + "9" * 5000 + "}}",  # Python's limit: 4,300
        '{"type": "test-noop", "payload": {"n": ' + "[" * 5000 + "]" * 5000 + "}}",
        '{"type": "test-noop", "payload": {"n": NaN}}',
    ]
    lines = [*good[:600], *bad, *good[600:]]
    path = tmp_path / "jobs.ndjson"
    path.write_text("\n".join(lines) + "\n")

    result = run_cli("enqueue", "--file", str(path), timeout=120)

    assert result.returncode == 1
    assert result.stdout.strip() == "enqueued 1200 jobs; refused 8 lines"
    refused = result.stderr.strip().splitlines()
    assert [line.split(":")[0] for line in refused] == [
        "line 601", "line 603", "line 604", "line 605", "line 606", "line 607", "line 608",
        "line 609"
    ]  # fmt: skip
    assert refused[0].startswith("line 601: not JSON")
    assert refused[1] == "line 603: not a JSON object"
    assert "unknown job type" in refused[2].lower() or "no-such-type" in refused[2]
    assert "payload.subject: Field required" in refused[3]
    assert refused[4] == "line 606: longer than 131072 bytes (WARREN_MAX_PAYLOAD_BYTES)"
    assert refused[5].startswith("line 607: not JSON (Exceeds the limit (4300 digits)")
    assert refused[6] == "line 608: not JSON (it nests too deeply)"
    assert refused[7] == "line 609: not JSON (NaN is not a JSON value)"
    assert job_types(engine) == {"test-noop": 1200}


def test_enqueue_file_reads_stdin_and_reports_json(cli_env, engine):
    lines = [
        json.dumps({"type": "test-record", "payload": {"tag": str(n)}, "idempotencyKey": "k1"})
        for n in range(3)
    ]  # one key: the first line creates the job, the others find it

    result = subprocess.run(
        cli_argv("enqueue", "--file", "-", "--json"),
        input="\n".join(lines),
        cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"enqueued": 1, "existing": 2, "refused": []}
    assert job_types(engine) == {"test-record": 1}


def test_enqueue_file_stops_at_a_line_without_end_and_keeps_the_lines_before_it(
    run_cli, engine, tmp_path
):
    good = json.dumps({"type": "test-noop", "payload": {}}).encode() + b"\n"
    path = tmp_path / "jobs.ndjson"
    path.write_bytes(good + bytes(65 * 2**20) + b"\n" + good)  # a line of 65 MiB of NULs

    line = one_error_line(run_cli("enqueue", "--file", str(path), timeout=60))

    assert line.startswith("error: line 2 has no end within 64 MiB")
    assert "(1 new), none from line 2 on" in line
    assert job_types(engine) == {"test-noop": 1}
    assert "line 1 has no end" in one_error_line(run_cli("enqueue", "--file", "/dev/zero"))


def test_enqueue_file_that_cannot_be_read_is_one_line(run_cli, tmp_path):
    line = one_error_line(run_cli("enqueue", "--file", str(tmp_path / "missing.ndjson")))

    assert line.startswith("error: cannot read")
    assert one_error_line(run_cli("enqueue", "test-noop", "--file", "-"), code=2)


# -- stats --watch ----------------------------------------------------------------------------


def test_stats_watch_redraws_until_ctrl_c_and_exits_0(spawn, run_cli, warren):
    warren.pause("type", "test-noop")  # the `clean` fixture resumes it
    watcher = spawn("stats", "--watch", "--interval", "0.5")
    wait_for(lambda: watcher.output().count("warren stats at") >= 1, timeout=60)
    ok(run_cli("enqueue", "test-noop"))

    wait_for(lambda: watcher.output().count("warren stats at") >= 3, timeout=60)
    watcher.process.send_signal(signal.SIGINT)

    assert watcher.process.wait(30) == 0
    last = watcher.output().rsplit("warren stats at", 1)[1]
    assert "test-noop" in last
    assert "paused: types test-noop" in last
    assert "Traceback" not in watcher.output()


# -- jobs tail --------------------------------------------------------------------------------


def start_tail(spawn, *args: str):
    tail = spawn("jobs", "tail", "--interval", "0.2", *args)
    wait_for(lambda: "following changes" in tail.output(), timeout=60, what="tail to start")
    return tail


def test_jobs_tail_shows_a_new_job_then_its_run_by_a_worker(spawn, run_cli):
    tail = start_tail(spawn)
    job_id = ok(run_cli("enqueue", "test-record", "--payload", '{"tag": "tail"}')).strip()

    wait_for(lambda: f"{job_id}  test-record  pending" in tail.output(), timeout=30)
    spawn("worker", "--processes", "1", "--threads", "2")
    wait_for(
        lambda: re.search(rf"{job_id}  test-record  completed \(was \w+\)", tail.output()),
        timeout=60,
        what="the completion",
    )
    tail.process.send_signal(signal.SIGINT)

    assert tail.process.wait(30) == 0


def test_jobs_tail_json_follows_only_the_type_asked_for(spawn, run_cli):
    tail = start_tail(spawn, "--type", "test-record", "--json")

    def statuses() -> list[tuple[str, str]]:
        lines = [line for line in tail.output().splitlines() if line.startswith("{")]
        return [(job["id"], job["type"], job["status"]) for job in map(json.loads, lines)]

    ok(run_cli("enqueue", "test-noop"))
    job_id = ok(run_cli("enqueue", "test-record", "--delay", "600")).strip()
    # A tail shows each job as it is at each look: a change made before the look that would
    # have seen the one before it is shown alone. So the cancel waits for the pending line.
    wait_for(lambda: statuses(), timeout=30, what="the pending line")
    ok(run_cli("jobs", "cancel", job_id))

    wait_for(lambda: len(statuses()) >= 2, timeout=30, what="two lines")
    assert statuses() == [
        (job_id, "test-record", "pending"), (job_id, "test-record", "cancelled")
    ]  # fmt: skip


def test_jobs_tail_refuses_an_unknown_status_in_one_line(run_cli):
    line = one_error_line(run_cli("jobs", "tail", "--status", "sleeping"))

    assert "status must be one of" in line


def test_stats_watch_says_when_postgresql_is_unreachable_and_goes_on(spawn):
    offline = {"WARREN_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/warren"}
    watcher = spawn("stats", "--watch", "--interval", "0.5", env=offline)

    wait_for(lambda: watcher.output().count("database unreachable") >= 2, timeout=60)
    watcher.process.send_signal(signal.SIGINT)

    assert watcher.process.wait(30) == 0
