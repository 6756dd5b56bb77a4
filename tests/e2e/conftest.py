"""Running the `warren` command line as a user would: in processes of its own, on this test
run's database and queue prefix. Long-running commands (`spawn`) are fresh `python -m cli`
processes; one-shot commands (`run_cli`) are forked from a process that imported the CLI once
(`tests.e2e.forkserver`), which saves each about 1.5 s of imports."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.settings import Settings
from tests.e2e.forkserver import ForkedCommand

ROOT = Path(__file__).resolve().parents[2]

#: Settings the CLI processes take from the session's, as `WARREN_*` variables.
PASSED_SETTINGS = (
    "database_url",
    "broker_url",
    "queue_prefix",
    "job_modules",
    "lease_seconds",
    "dispatch_interval_seconds",
    "stranded_after_seconds",
    "retry_base_seconds",
    "retry_max_seconds",
    "retry_jitter",
    "smtp_url",
    "allowed_networks",
)


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


@pytest.fixture(scope="session")
def cli_env(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a CLI process: no inherited `WARREN_*`, this run's settings, and
    this run's own metrics directory (pytest's temporary directory: nothing left elsewhere)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WARREN_")}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path_factory.mktemp("metrics"))
    for name in PASSED_SETTINGS:
        value = getattr(settings, name)
        env[f"WARREN_{name.upper()}"] = (
            ",".join(map(str, value)) if isinstance(value, list) else str(value)
        )
    env["PYTHONUNBUFFERED"] = "1"
    # Dramatiq's threads wait for work in slices of this many ms (1000 by default), and a
    # worker stops only after each thread's slice ends: as the in-process workers, a tenth of
    # a second, so each of the tier's many worker stops takes under a second, not three.
    env["dramatiq_worker_timeout"] = "100"
    return env


@pytest.fixture(scope="session")
def fork_server(
    cli_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The socket of this run's CLI fork server (`tests.e2e.forkserver`), ready to fork."""
    path = tmp_path_factory.mktemp("forkserver") / "cli.sock"
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.forkserver", str(path)], cwd=ROOT, env=cli_env
    )
    deadline = time.monotonic() + 60
    while not path.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"the CLI fork server did not start (exit code {server.poll()})")
        time.sleep(0.05)
    yield path
    server.terminate()
    server.wait(10)


@pytest.fixture
def run_cli(
    cli_env: dict[str, str], fork_server: Path
) -> Callable[..., subprocess.CompletedProcess]:
    """`run_cli("jobs", "show", id)`: run one command to its end, as `python -m cli` would,
    forked from the fork server; output as text. `env` adds or overrides variables of this
    run's environment."""

    def run(
        *args: str, timeout: float = 60, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
            command = ForkedCommand(
                fork_server, list(args), {**cli_env, **(env or {})}, ROOT, stdout, stderr
            )
            try:
                code = command.wait(timeout)
            except TimeoutError:
                raise subprocess.TimeoutExpired(cli_argv(*args), timeout) from None
            outputs = []
            for stream in (stdout, stderr):
                stream.seek(0)
                outputs.append(stream.read().decode(errors="replace"))
        return subprocess.CompletedProcess(cli_argv(*args), code, *outputs)

    return run


@dataclass
class Spawned:
    """A long-running CLI process whose output goes to a file."""

    args: tuple[str, ...]
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then SIGKILL to its whole process group after `timeout` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def spawn(cli_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Spawned]]:
    """`spawn("worker", "--processes", "1")`: start a CLI process (`env=` adds variables); it
    is always stopped at the end of the test, and its output printed (pytest shows it when the
    test fails)."""
    started: list[Spawned] = []

    def start(*args: str, env: Mapping[str, str] | None = None) -> Spawned:
        log = tmp_path / f"{len(started)}-{args[0]}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                cli_argv(*args),
                cwd=ROOT,
                env={**cli_env, **(env or {})},
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: killable with its children
            )
        started.append(Spawned(args, process, log))
        return started[-1]

    yield start
    for spawned in started:
        code = spawned.stop()
        print(f"--- warren {' '.join(spawned.args)} (exit code {code})\n{spawned.output()}")
