"""Real worker processes for crash tests: `python -m dramatiq service.worker:setup`, exactly as
`warren worker` runs it, each in its own session so a test can SIGKILL the whole process group
(Dramatiq's main process and its worker process) at once.

`WorkerProcesses` starts them, kills them, and always cleans them up; its `report()` is every
process's output (written to a file, never a pipe that could fill up and block the worker).
"""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from service.broker import TIERS
from service.settings import Settings
from service.worker import prefetch_env
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


def worker_env(settings: Settings, threads: int, **overrides: str) -> dict[str, str]:
    """A worker's environment: nothing inherited from `WARREN_*`, this run's database and
    queue prefix, the test job types, short leases."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WARREN_")}
    env.update(
        {
            "WARREN_DATABASE_URL": settings.database_url,
            "WARREN_BROKER_URL": settings.broker_url,
            "WARREN_QUEUE_PREFIX": settings.queue_prefix,
            "WARREN_JOB_MODULES": "actors,tests.jobtypes",
            "WARREN_ALLOWED_NETWORKS": ",".join(map(str, settings.allowed_networks)),
            "WARREN_LEASE_SECONDS": "3",
            **prefetch_env(threads, settings.worker_prefetch),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` still runs (zombies waiting to be reaped by an
    init that may never reap them do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel, zombies included
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            return True
    return False


class WorkerProcess:
    """One `dramatiq` main process with its worker process, leading its own process group."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # leads its own group: killable with its children
            )
        self.pgid = self.process.pid

    def exited(self) -> bool:
        """Whether Dramatiq's main process has ended (it does when its worker process dies)."""
        return self.process.poll() is not None

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL the whole group and wait until none of it runs."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.process.wait(timeout)
        wait_for(lambda: not group_alive(self.pgid), timeout, what=f"{self.name} to die")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the main process (Dramatiq's graceful shutdown: it signals its worker
        process once), then SIGKILL whatever of the group is left after `timeout` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class WorkerProcesses:
    """Starts worker process groups for one test; `close()` ends every one of them."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.started: list[WorkerProcess] = []

    def start(self, threads: int = 2, **env: str) -> WorkerProcess:
        queues = [f"{self.settings.queue_prefix}.{tier}" for tier in TIERS]
        argv = [sys.executable, "-m", "dramatiq", "service.worker:setup"]
        argv += ["--processes", "1", "--threads", str(threads), "--queues", *queues]
        name = f"worker-{len(self.started) + 1}"
        worker = WorkerProcess(
            name, argv, worker_env(self.settings, threads, **env), self.log_dir / f"{name}.log"
        )
        self.started.append(worker)
        return worker

    def close(self) -> None:
        """Stop every worker group, even when stopping one of them fails."""
        errors = []
        for worker in self.started:
            try:
                worker.stop()
            except Exception as exc:  # try the others, then report
                errors.append(exc)
        if errors:
            raise errors[0]

    def report(self) -> str:
        return "\n".join(
            f"--- {w.name} (pid {w.pgid}, exit code {w.process.returncode})\n{w.output()}"
            for w in self.started
        )
