"""The deployment the README recommends, `warren api` behind nginx (deploy/nginx), keeps
`/health` answering while slow and idle clients hold connections, passes requests through
unchanged, and refuses oversized bodies with the API's own error. Skipped on a developer's
machine without nginx; in CI (`CI=true`) a missing nginx fails (`make test` installs it).
`bench.slowclients` measures the same at scale and against plain `warren api`."""

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench import front
from bench.slowclients import LIMIT_SECONDS, TOKEN, Siege, probe
from tests.e2e.conftest import Spawned
from tests.helpers import free_port, wait_for

# Skipped on a developer's machine without nginx; in CI (`CI=true`), `make test` installs it,
# so a missing nginx fails the run instead of hiding the test.
pytestmark = [
    pytest.mark.usefixtures("clean"),
    pytest.mark.skipif(
        front.nginx_binary() is None and os.environ.get("CI") != "true",
        reason=front.NOT_INSTALLED,
    ),
]


@pytest.fixture(autouse=True)
def _nginx_installed() -> None:
    if front.nginx_binary() is None:  # only reached in CI: elsewhere the module is skipped
        pytest.fail(front.NOT_INSTALLED)


IDLE, SLOW = 100, 40  # 40 never-finishing bodies are more than the API's 2 x 8 threads
MAX_PAYLOAD = 4096


def healthy(port: int) -> bool:
    return probe("127.0.0.1", port, 1).error is None


def start_nginx(argv: list[str], log: Path) -> Spawned:
    """nginx as a child in its own process group, so that `Spawned.stop` can end it."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Spawned(("nginx",), process, log)


@pytest.fixture
def nginx_port(spawn, tmp_path: Path) -> Iterator[int]:
    """`warren api` (tokens required) and an nginx in front of it; the port of nginx."""
    api_port, port = free_port(), free_port()
    env = {"WARREN_API_TOKENS": TOKEN, "WARREN_MAX_PAYLOAD_BYTES": str(MAX_PAYLOAD)}
    spawn("api", "--port", str(api_port), env=env)
    wait_for(lambda: healthy(api_port), timeout=30, what="warren api to answer")
    prefix = tmp_path / "nginx"
    conf = front.write_config(prefix, port, f"127.0.0.1:{api_port}", MAX_PAYLOAD, 1024)
    nginx = start_nginx(
        front.nginx_argv(front.nginx_binary(), prefix, conf), tmp_path / "nginx.log"
    )
    try:
        wait_for(lambda: healthy(port), timeout=15, what="nginx to pass /health on")
        yield port
    finally:
        nginx.stop()
        print(f"--- nginx error log\n{(prefix / 'error.log').read_text(errors='replace')}")


def test_health_answers_within_a_second_while_slow_and_idle_clients_hold_connections(
    nginx_port,
):
    with Siege("127.0.0.1", nginx_port, IDLE, SLOW, trickle=2) as siege:
        time.sleep(1)  # the API would have handed every thread to a slow body by now
        probes = []
        for _ in range(5):
            probes.append(probe("127.0.0.1", nginx_port, 5))
            time.sleep(0.3)
        assert len(siege.held) == IDLE + SLOW and siege.connect_errors == 0
    assert [p.error for p in probes] == [None] * 5
    assert max(p.seconds for p in probes) < LIMIT_SECONDS


def test_requests_pass_through_and_oversized_bodies_get_the_api_error(nginx_port):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{nginx_port}", timeout=10) as client:
        created = client.post("/jobs", json={"type": "test-record", "payload": {}}, headers=auth)
        assert created.status_code == 201, created.text
        job = client.get(f"/jobs/{created.json()['jobId']}", headers=auth)
        assert job.json()["job"]["status"] == "pending"
        assert client.get("/stats").status_code == 401  # the API's answer, passed on

        big = json.dumps({"type": "test-record", "payload": {"x": "y" * MAX_PAYLOAD}})
        refused = client.post("/jobs", content=big, headers=auth)
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "payload_too_large"
