"""Operating Warren from the command line, as a user would, in subprocesses: the API's
refusal to listen beyond loopback without tokens, `enqueue --file`, `stats --watch` and
`jobs tail`."""

import httpx
import pytest

from tests.e2e.test_cli import one_error_line
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
