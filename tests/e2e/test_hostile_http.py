"""Hostile input over real HTTP (issue #10): a `warren api` process under gunicorn, on this
test run's database and queue prefix. What the Falcon test client cannot show: chunked request
bodies, and the refusals gunicorn answers itself before the application sees the request."""

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis import checks

from api import openapi
from service.registry import registry
from tests.conftest import test_settings as run_settings
from tests.e2e.conftest import ROOT, cli_argv
from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.usefixtures("clean")

LIMIT = 128 * 1024  # WARREN_MAX_PAYLOAD_BYTES's default


@pytest.fixture(scope="module")
def api_url(cli_env: dict[str, str], tmp_path_factory) -> Iterator[str]:
    """One `warren api` for the module: starting gunicorn per test would dominate its time."""
    port = free_port()
    log = Path(tmp_path_factory.mktemp("api")) / "api.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            cli_argv("api", "--port", str(port), "--workers", "1", "--threads", "4"),
            cwd=ROOT,
            env=cli_env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"warren api exited:\n{log.read_text(errors='replace')}")
        try:
            return httpx.get(f"{base}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, timeout=30, what="warren api to answer")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(f"--- warren api\n{log.read_text(errors='replace')}")


@pytest.fixture
def api(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=10) as client:
        yield client


def raw_exchange(
    api_url: str, request: bytes, *, then_stop: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are and read the whole answer (gunicorn closes after refusing).
    With `then_stop`, the client stops sending after them (it closes its side for writing)."""
    host, port = api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        if then_stop:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, content = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, content


def chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    """A body httpx sends with `Transfer-Encoding: chunked`, having no length to announce."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


# -- chunked request bodies ----------------------------------------------------------------------


def test_a_chunked_body_is_read(api):
    body = json.dumps({"type": "test-noop", "payload": {"n": 7}}).encode()
    response = api.post(
        "/jobs", content=chunks(body, 10), headers={"Content-Type": "application/json"}
    )

    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 201, response.text
    job = api.get(f"/jobs/{response.json()['jobId']}").json()["job"]
    assert job["payload"] == {"n": 7}


def test_a_chunked_batch_and_dlq_body_are_read(api):
    batch = json.dumps({"jobs": [{"type": "test-noop", "payload": {}}] * 3}).encode()
    headers = {"Content-Type": "application/json"}

    assert api.post("/jobs/batch", content=chunks(batch), headers=headers).status_code == 201
    purge = api.request("DELETE", "/dlq", content=chunks(b'{"all": true}', 4), headers=headers)
    assert purge.status_code == 200, purge.text
    assert purge.json() == {"success": True, "purged": 0}


def test_a_chunked_body_over_the_limit_is_413(api):
    body = json.dumps({"type": "test-noop", "payload": {"pad": "x" * LIMIT}}).encode()
    response = api.post(
        "/jobs", content=chunks(body, 8192), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"
    assert api.get("/jobs").json()["count"] == 0


def test_a_malformed_chunk_is_400_in_json(api_url):
    request = (
        b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n"
    )
    status, headers, content = raw_exchange(api_url, request)

    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(content)["error"]["code"] == "bad_request"


JOB_HEAD = b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
JOB = b'{"type": "test-noop", "payload": {}}'


@pytest.mark.parametrize(
    "request_bytes",
    [
        JOB_HEAD + b"Transfer-Encoding: chunked\r\n\r\n",
        JOB_HEAD + b"Transfer-Encoding: chunked\r\n\r\n40\r\n" + JOB,
        JOB_HEAD + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(JOB) + JOB + b"\r\n",
        JOB_HEAD + b"Content-Length: 500\r\n\r\n" + JOB,
    ],
    ids=["no-chunk", "chunk-cut-off", "no-last-chunk", "shorter-than-its-length"],
)
def test_a_body_that_ends_before_it_is_complete_is_400_and_stores_nothing(
    api_url, api, request_bytes
):
    status, headers, content = raw_exchange(api_url, request_bytes, then_stop=True)

    assert status == 400, content
    assert headers["content-type"] == "application/json"
    assert json.loads(content)["error"]["code"] == "bad_request"
    assert api.get("/jobs").json()["count"] == 0


# -- gunicorn's own refusals, in the contract's shape ----------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /jobs?x=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /jobs HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /jobs HTTP/1.1\r\nHost: x\r\n" + b"X-N: 1\r\n" * 200 + b"\r\n", 431),
        (b"NOT A REQUEST\r\n\r\n", 400),
        (b"GET /jobs HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n", 400),
        (b"GET /jobs HTTP/9.9\r\nHost: x\r\n\r\n", 400),
        (b"POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: br\r\n\r\n", 400),
    ],
    ids=[
        "uri-too-long",
        "header-too-large",
        "too-many-headers",
        "garbage",
        "nul-header",
        "http-9",
        "unknown-coding",
    ],
)
def test_gunicorn_refusals_carry_the_json_error_shape(api_url, request_bytes, status):
    answer_status, headers, content = raw_exchange(api_url, request_bytes)

    assert answer_status == status
    assert headers["content-type"] == "application/json"
    error = json.loads(content)
    assert error["success"] is False
    assert error["error"]["code"] == "bad_request"
    assert error["error"]["message"]


# -- the whole API against its own document --------------------------------------------------------


#: The document `warren api` serves with this run's job types, built in-process: schemathesis
#: makes its tests at collection, before any server runs (and its lazy `from_fixture` loader
#: does not work with pytest 9). `test_the_live_document_is_this_one` ties the two together.
DOCUMENT = openapi.document(registry.load(run_settings().job_modules))
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_live_document_is_this_one(api):
    assert api.get("/openapi.json").json() == DOCUMENT


#: What every answer must satisfy: no 5xx, a documented status, JSON, and the shape the
#: document gives that status (errors: the contract's error shape).
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@schema.parametrize()
@hypothesis.settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_every_route_answers_fuzzed_input_as_its_document_says(api_url, case):
    case.call_and_validate(base_url=api_url, checks=CHECKS)
