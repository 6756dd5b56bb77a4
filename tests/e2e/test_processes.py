"""The three processes of a deployment — `warren api`, `warren worker`, `warren scheduler` —
started as a user starts them and driven over real HTTP."""

import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.usefixtures("clean")


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


def test_a_worker_holds_its_prefetch_per_thread_as_rabbitmq_shows_it(spawn, settings):
    spawn("worker", "--processes", "1", "--threads", "2", "--prefetch", "3")
    broker = urllib.parse.urlsplit(settings.broker_url)
    queue = f"{settings.queue_prefix}.normal"

    def prefetch() -> int | None:
        consumers = httpx.get(
            f"http://{broker.hostname}:15672/api/consumers",
            auth=(broker.username or "guest", broker.password or "guest"),
            timeout=5,
        ).json()
        return next((c["prefetch_count"] for c in consumers if c["queue"]["name"] == queue), None)

    assert wait_for(prefetch, timeout=30, what="the worker's consumer in RabbitMQ") == 6


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


@pytest.fixture
def failing_endpoint() -> Iterator[tuple[str, list[str]]]:
    """A webhook receiver on 127.0.0.1 that answers every delivery with 500: its URL, and
    the `Warren-Job-Id` of each delivery it saw."""
    deliveries: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            deliveries.append(self.headers.get("Warren-Job-Id", ""))
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", deliveries
    finally:
        server.shutdown()
        server.server_close()


def test_a_retry_right_after_a_failure_gets_all_its_fresh_attempts(api, spawn, failing_endpoint):
    """Issue #9's first report, as a user met it: the failed job's old message is still in
    `.XQ` when the retry starts its new life, and the scheduler drains it moments later."""
    url, deliveries = failing_endpoint
    spawn("worker", "--processes", "1", "--threads", "2")
    spawn("scheduler")
    body = {
        "type": "webhook-delivery",
        "payload": {"url": url, "body": {"event": "paid"}},
        "maxAttempts": 2,
        "retry": {"strategy": "fixed", "baseSeconds": 0.1},
    }
    job_id = api.post("/jobs", json=body).json()["jobId"]

    def job() -> dict:
        return api.get(f"/jobs/{job_id}").json()["job"]

    wait_for(lambda: job()["status"] == "failed", timeout=30, what="the first life to fail")
    assert api.post(f"/jobs/{job_id}/retry").status_code == 202

    wait_for(lambda: len(deliveries) == 4, timeout=30, what="two fresh deliveries")
    ended = wait_for(lambda: (j := job())["status"] == "failed" and j, timeout=30)
    assert (ended["attempts"], ended["life"]) == (2, 2)
    letters = wait_for(lambda: api.get("/dlq").json()["messages"], timeout=30, what="the DLQ")
    assert [letter["jobId"] for letter in letters] == [job_id]
    assert deliveries == [job_id] * 4


def test_a_dashboard_form_is_accepted_by_every_worker_of_the_api(spawn):
    """With no secret configured, `warren api` draws the dashboard's CSRF key once, for all
    its workers: a form rendered by one is accepted by another."""
    port = free_port()
    spawn("api", "--port", str(port), "--workers", "2", "--threads", "2")
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(base + "/health"), timeout=30, what="warren api to answer")
    with httpx.Client(base_url=base, timeout=10) as browser:
        page = browser.get("/ui")
        csrf = page.text.split('"X-CSRF-Token": "', 1)[1].split('"', 1)[0]
        ids = [
            browser.post(
                "/jobs", json={"type": "test-noop", "payload": {}, "delaySeconds": 3600}
            ).json()["jobId"]
            for _ in range(12)
        ]
        for job_id in ids:  # a new connection each: the kernel spreads them over the workers
            answer = httpx.post(
                f"{base}/ui/jobs/{job_id}/cancel",
                data={"csrf": csrf},
                cookies=dict(browser.cookies),
            )
            assert answer.status_code in (200, 303), answer.text
        statuses = {browser.get(f"/jobs/{i}").json()["job"]["status"] for i in ids}
    assert statuses == {"cancelled"}


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
