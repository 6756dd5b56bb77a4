"""A whole Warren deployment in processes, for fault injection: `warren api`, `warren
scheduler` and worker process groups on this test run's database and queue prefix, plus a
prober that keeps calling the API while a dependency is down."""

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from service.settings import Settings
from tests.e2e.conftest import ROOT, cli_argv
from tests.e2e.workers import WorkerProcesses, worker_env
from tests.helpers import free_port, wait_for

#: Faster than production, slower than the other tests: leases survive a PostgreSQL restart's
#: hiccup more often than not, and a lost worker's jobs come back within seconds.
TIMINGS = {"WARREN_LEASE_SECONDS": "5", "WARREN_DISPATCH_INTERVAL_SECONDS": "0.5"}


class Deployment:
    """API, scheduler and two worker groups; `close()` ends them all."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.workers = WorkerProcesses(settings, log_dir)
        self.env = worker_env(settings, threads=4, **TIMINGS)
        self.port = free_port()
        self.others: dict[str, tuple[subprocess.Popen, Path]] = {}
        self.groups = []

    def start(self) -> None:
        self._spawn("scheduler")
        self._spawn("api", "--port", str(self.port), "--workers", "2", "--threads", "4")
        self.groups = [self.start_worker(), self.start_worker()]
        wait_for(self._api_ready, timeout=30, what="warren api")

    def start_worker(self):
        return self.workers.start(threads=4, **TIMINGS)

    def replace_worker(self, index: int) -> None:
        """SIGKILL worker group `index` mid-work and start a fresh one in its place."""
        self.groups[index].kill()
        self.groups[index] = self.start_worker()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        for process, _ in self.others.values():
            if process.poll() is None:
                process.terminate()
        for process, _ in self.others.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
        self.workers.close()

    def report(self) -> str:
        parts = [self.workers.report()]
        for name, (process, log) in self.others.items():
            parts.append(
                f"--- {name} (exit {process.returncode})\n{log.read_text(errors='replace')}"
            )
        return "\n".join(parts)

    def _spawn(self, *args: str) -> None:
        log = self.log_dir / f"{args[0]}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                cli_argv(*args),
                cwd=ROOT,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.others[args[0]] = (process, log)

    def _api_ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False


@dataclass
class Call:
    route: str
    status: int | None  # None: no answer (transport error or timeout)
    seconds: float
    during_fault: bool


@dataclass
class Prober:
    """Calls the API in a loop — enqueue, health, list — and remembers every answer."""

    url: str
    calls: list[Call] = field(default_factory=list)
    fault: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Prober":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        probe = {"type": "test-noop", "payload": {}, "delaySeconds": 86400}
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                self._call(client, "POST /jobs", lambda: client.post("/jobs", json=probe))
                self._call(client, "GET /health", lambda: client.get("/health"))
                self._call(client, "GET /jobs", lambda: client.get("/jobs?limit=1"))
                self._stop.wait(0.1)

    def _call(self, client: httpx.Client, route: str, send) -> None:
        during = self.fault.is_set()
        started = time.monotonic()
        try:
            status = send().status_code
        except httpx.HTTPError:
            status = None
        self.calls.append(Call(route, status, time.monotonic() - started, during))

    def during_fault(self, route: str) -> list[Call]:
        return [c for c in self.calls if c.route == route and c.during_fault]
