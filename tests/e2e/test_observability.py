"""Observability as an operator meets it: `warren api` and two `warren worker` processes
share one metrics directory, `GET /metrics` sums what every process counted, and each
process writes JSON lines that name the job or request they are about."""

import json
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.broker import queue_name
from tests.e2e.conftest import Spawned
from tests.e2e.test_processes import free_port
from tests.helpers import consumers, wait_for

pytestmark = pytest.mark.usefixtures("clean")


@pytest.fixture
def observed(tmp_path: Path) -> dict[str, str]:
    """The environment of every process of the test: one metrics directory, JSON logs."""
    return {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "WARREN_LOG_FORMAT": "json"}


def answering(client: httpx.Client) -> bool:
    try:
        return client.get("/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def api(spawn, observed):
    """`warren api` with two processes, in the test's environment; its output in `.process`.
    A scheduler runs beside it: its relay publishes the jobs the API stores."""
    port = free_port()
    process = spawn("api", "--port", str(port), "--workers", "2", "--threads", "2", env=observed)
    spawn("scheduler", env=observed)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        wait_for(lambda: answering(client), timeout=60, what="warren api to answer")
        client.process = process
        yield client


def samples(api: httpx.Client) -> dict[tuple[str, tuple], float]:
    response = api.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, tuple]:
    return (name, tuple(sorted(labels.items())))


def json_lines(process: Spawned) -> list[dict]:
    return [json.loads(line) for line in process.output().splitlines() if line.startswith("{")]


def finished(api: httpx.Client, ids: list[str]) -> list[dict]:
    jobs = [api.get(f"/jobs/{job_id}").json()["job"] for job_id in ids]
    return jobs if all(job["status"] in ("completed", "failed") for job in jobs) else []


def test_two_workers_counts_are_summed_and_their_lines_name_the_job(api, spawn, observed, settings):
    workers = [spawn("worker", "--processes", "1", "--threads", "1", env=observed) for _ in "ab"]
    for worker in workers:
        wait_for(lambda w=worker: "ready for action" in w.output(), timeout=60, what="a worker")
    normal = queue_name(settings, "normal")  # both consume before the jobs come: both run some
    wait_for(lambda: consumers(settings, normal) == 2, timeout=30, what="both workers consuming")
    slow = {"type": "test-record", "payload": {"seconds": 0.3}}
    ok = [api.post("/jobs", json=slow).json()["jobId"] for _ in range(8)]
    failing = {
        "type": "test-record",
        "payload": {"failTimes": 9},
        "maxAttempts": 2,
        "retry": {"strategy": "fixed", "baseSeconds": 0.1},
    }
    dead = api.post("/jobs", json=failing).json()["jobId"]

    jobs = wait_for(lambda: finished(api, [*ok, dead]), timeout=90, what="every job to end")

    assert len({job["id"] for job in jobs[:8] if job["status"] == "completed"}) == 8
    ran_on = {attempt["worker"] for job_id in ok for attempt in attempts(api, job_id)}
    assert len(ran_on) == 2, ran_on  # both processes ran some: the sum is of two processes
    record = "test-record"
    completed = key("warren_jobs_finished_total", status="completed", type=record)
    wait_for(lambda: samples(api).get(completed) == 8, timeout=10, what="8 completions")
    metrics = samples(api)
    assert metrics[key("warren_jobs_finished_total", status="dead", type=record)] == 1
    assert metrics[key("warren_job_retries_total", type=record)] == 1
    assert metrics[key("warren_job_duration_seconds_count", type=record)] == 10
    assert metrics[key("warren_job_wait_seconds_count", type=record)] == 10
    assert metrics[key("warren_jobs_enqueued_total", tier="normal", type=record)] == 9
    assert metrics[key("warren_jobs", status="completed", type=record)] == 8
    assert metrics[key("warren_jobs", status="failed", type=record)] == 1

    lines = [line for w in workers for line in json_lines(w) if line.get("job_id") == dead]
    failure = next(line for line in lines if "unhandled exception" in line["message"])
    assert failure["type"] == "test-record"
    assert failure["attempt"] in (1, 2)
    assert failure["worker"] in {attempt["worker"] for attempt in attempts(api, dead)}


def attempts(api: httpx.Client, job_id: str) -> list[dict]:
    return api.get(f"/jobs/{job_id}/attempts").json()["attempts"]


def test_an_api_request_s_access_line_carries_the_id_its_answer_does(api):
    response = api.get("/stats", headers={"X-Request-ID": "trace-42.a"})
    hostile = api.get("/stats", headers={"X-Request-ID": "bad id\t<script>"})

    assert response.headers["x-request-id"] == "trace-42.a"
    replaced = hostile.headers["x-request-id"]
    assert replaced != "bad id\t<script>" and len(replaced) == 32

    def access(request_id: str) -> dict | None:
        return next(
            (
                line
                for line in json_lines(api.process)
                if line.get("logger") == "warren.access" and line.get("request_id") == request_id
            ),
            None,
        )

    line = wait_for(lambda: access("trace-42.a"), timeout=10, what="the access line")
    assert (line["method"], line["path"], line["status"]) == ("GET", "/stats", 200)
    assert line["duration_ms"] >= 0
    assert wait_for(lambda: access(replaced), timeout=10, what="the replaced id's line")


def test_with_access_lines_off_a_request_keeps_its_id_and_writes_no_line(spawn, observed):
    port = free_port()
    quiet = {**observed, "WARREN_ACCESS_LOG": "false"}
    process = spawn("api", "--port", str(port), "--workers", "1", "--threads", "2", env=quiet)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        wait_for(lambda: answering(client), timeout=60, what="warren api to answer")
        response = client.get("/stats", headers={"X-Request-ID": "quiet-1"})

    assert response.status_code == 200 and response.headers["x-request-id"] == "quiet-1"
    assert process.stop() == 0
    lines = json_lines(process)
    # gunicorn's lines of its stop come after the request's: had it been written, it is there
    assert any("Shutting down" in line["message"] for line in lines)
    assert not [line for line in lines if line.get("logger") == "warren.access"]
