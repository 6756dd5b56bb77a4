"""The three processes of a deployment — `warren api`, `warren worker`, `warren scheduler` —
started as a user starts them and driven over real HTTP."""

import socket

import httpx
import pytest

from tests.helpers import wait_for

pytestmark = pytest.mark.usefixtures("clean")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def api(spawn):
    port = free_port()
    spawn("api", "--port", str(port), "--workers", "1", "--threads", "4")
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, timeout=30, what="warren api to answer")
    with httpx.Client(base_url=base, timeout=10) as client:
        yield client


def test_a_job_posted_to_the_api_is_run_by_the_worker(api, spawn):
    spawn("worker", "--processes", "1", "--threads", "2")
    spawn("scheduler")

    response = api.post("/jobs", json={"type": "test-record", "payload": {"tag": "e2e"}})
    assert response.status_code == 201
    job_id = response.json()["jobId"]

    job = wait_for(
        lambda: (j := api.get(f"/jobs/{job_id}").json()["job"])["status"] == "completed" and j,
        timeout=30,
    )
    assert job["result"] == {"attempt": 1, "tag": "e2e"}
    stats = api.get("/stats").json()["stats"]
    assert stats["completed"] == 1


def test_a_job_that_keeps_failing_reaches_the_dlq_through_the_scheduler(api, spawn):
    spawn("worker", "--processes", "1", "--threads", "2")
    spawn("scheduler")
    body = {
        "type": "test-record",
        "payload": {"failRuns": 9},
        "maxAttempts": 2,
        "retry": {"strategy": "fixed", "baseSeconds": 0.1},
    }
    job_id = api.post("/jobs", json=body).json()["jobId"]

    letters = wait_for(lambda: api.get("/dlq").json()["messages"], timeout=30, what="a dead letter")

    assert letters[0]["jobId"] == job_id
    assert api.get(f"/jobs/{job_id}").json()["job"]["status"] == "failed"


def test_bad_requests_get_the_contract_error_shape_over_http(api):
    response = api.post("/jobs", content=b"{oops", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    assert api.get("/nowhere").json()["error"]["code"] == "not_found"
