"""Shared plumbing of the benchmarks: one throw-away Warren deployment per run, the processes
that run on it, and the reporting.

A benchmark module is a `measure(env, args) -> dict` function and a `main()` that hands it to
`run()`:

    def measure(env: BenchEnv, args) -> dict:
        worker = env.start_worker(processes=2, threads=8)
        ...
        return {"drainPerSecond": 1234.5}

    run("throughput", measure, args, max_seconds=900)

`run()` creates the database `warren_bench_<id>` (migrated) and declares the queues
`warren_bench_<id>.high/.normal/.low`; on the way out (success, error, Ctrl-C, SIGTERM or the
time limit) it stops every process started through the environment, deletes the queues (and
the exchanges a benchmark added with `env.add_exchange`) and drops the database. The last line
printed is always one JSON object: the results, or the error. Everything talks to PostgreSQL
and RabbitMQ on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import httpx
import pika
import sqlalchemy as sa

from cli.processes import api_argv
from service import db
from service.broker import TIERS, build_broker, connection_url
from service.client import Warren
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432"
BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
JOB_MODULES = ("actors", "bench.jobtypes")
READY_TIMEOUT = 90.0
WARREN_APP = "api.app:create_app()"  # what `warren api` has gunicorn serve
CLEANUP_PATIENCE = 60.0


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to."""


class BenchTimeout(BenchError):
    """Something took longer than the benchmark allows."""


# -- small helpers ----------------------------------------------------------------------------


def say(text: str = "") -> None:
    """One human line of output."""
    print(text, flush=True)


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
    process: Process | None = None,
) -> Any:
    """Poll `predicate` until it returns something true, and return that. Raises `BenchTimeout`
    after `timeout` seconds, or `BenchError` at once when `process` has exited meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if process is not None and process.exited():
            raise BenchError(
                f"{process.name} exited with code {process.popen.returncode} "
                f"while waiting for {what}"
            )
        if time.monotonic() >= deadline:
            raise BenchTimeout(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) of `values`, interpolating between the nearest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of durations given in seconds, in milliseconds."""
    return {
        f"{name}Ms": round(1000 * value, 2)
        for name, value in (
            ("p50", percentile(seconds, 50)),
            ("p95", percentile(seconds, 95)),
            ("p99", percentile(seconds, 99)),
            ("max", max(seconds, default=math.nan)),
        )
    }


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago; nothing listens on it once this returns.

    It lies below the kernel's ephemeral range, the ports outgoing connections take: a port
    the kernel handed out (`bind(0)`) can become the local end of the next connection to
    PostgreSQL or RabbitMQ before the server a test or benchmark starts binds it, and that
    server then fails with "Address already in use"."""
    lowest_ephemeral = _lowest_ephemeral_port()
    for port in _random.sample(range(lowest_ephemeral // 2, lowest_ephemeral), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port below {lowest_ephemeral}")


def _lowest_ephemeral_port() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_random = random.SystemRandom()  # not the seeded module state a test may have set


def warren_argv(*args: str) -> list[str]:
    """The `warren` command line, run with this interpreter."""
    return [sys.executable, "-m", "cli", *args]


# -- /proc ------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses
    state, ppid, pgrp = text.rsplit(")", 1)[1].split()[:3]
    return state, int(ppid), int(pgrp)


def _all_stats() -> dict[int, tuple[str, int, int]]:
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    return stats


def process_tree(pid: int) -> list[int]:
    """`pid` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for child, (state, ppid, _) in _all_stats().items():
        if state not in ("Z", "X"):
            children.setdefault(ppid, []).append(child)
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` still runs (zombies do not count)."""
    return any(pgrp == pgid and state not in ("Z", "X") for state, _, pgrp in _all_stats().values())


def rss_kib(pid: int) -> int | None:
    """VmRSS of one process in KiB, or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return 0


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


# -- processes --------------------------------------------------------------------------------


class Process:
    """A process the benchmark started, leading its own session: Ctrl-C in the terminal
    reaches only the benchmark, which then stops it. Output goes to a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as sink:
            self.popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid = self.popen.pid

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM (a graceful stop), then SIGKILL to whatever of its group is left."""
        if self.popen.poll() is None:
            self.popen.terminate()
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        deadline = time.monotonic() + 10
        while group_alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.1)

    def rss(self) -> dict[int, tuple[str, int]]:
        """{pid: (command line, VmRSS KiB)} of this process and all its descendants."""
        sizes = {}
        for pid in process_tree(self.pid):
            kib = rss_kib(pid)
            if kib is not None:
                sizes[pid] = (command_line(pid), kib)
        return sizes

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Api:
    """A running `warren api`."""

    process: Process
    url: str


# -- RabbitMQ ---------------------------------------------------------------------------------


def queue_family(name: str) -> list[str]:
    """A Dramatiq queue and its delay and dead-letter companions."""
    return [name, f"{name}.DQ", f"{name}.XQ"]


def queue_info(names: Sequence[str]) -> dict[str, tuple[int, int] | None]:
    """{queue: (messages ready, consumers)} as RabbitMQ reports them; None for a missing one."""
    info: dict[str, tuple[int, int] | None] = {}
    connection = pika.BlockingConnection(pika.URLParameters(connection_url(BROKER_URL)))
    try:
        channel = connection.channel()
        for name in names:
            try:
                ok = channel.queue_declare(name, passive=True).method
                info[name] = (ok.message_count, ok.consumer_count)
            except pika.exceptions.ChannelClosedByBroker:  # 404: not declared
                info[name] = None
                channel = connection.channel()
    finally:
        connection.close()
    return info


def delete_queues(names: Sequence[str], exchanges: Sequence[str] = ()) -> None:
    """Delete queues, then exchanges; deleting one that does not exist is no error."""
    connection = pika.BlockingConnection(pika.URLParameters(connection_url(BROKER_URL)))
    try:
        channel = connection.channel()
        for name in names:
            channel.queue_delete(name)
        for name in exchanges:
            channel.exchange_delete(name)
    finally:
        connection.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# -- the environment --------------------------------------------------------------------------


class BenchEnv:
    """One benchmark run's own Warren deployment: database and queue prefix `warren_bench_<id>`,
    and every process and client started on it."""

    def __init__(self, run_id: str, workdir: Path) -> None:
        self.run_id = run_id
        self.name = f"warren_bench_{run_id}"
        self.workdir = workdir
        self.settings = Settings(
            database_url=f"{POSTGRES_URL}/{self.name}",
            broker_url=BROKER_URL,
            queue_prefix=self.name,
            job_modules=list(JOB_MODULES),
        )
        self.tier_queues = [f"{self.name}.{tier}" for tier in TIERS]
        self.queues = [q for name in self.tier_queues for q in queue_family(name)]
        self.exchanges: list[str] = []
        self.processes: list[Process] = []
        self._clients: list[Warren] = []
        self._engine: sa.Engine | None = None

    # -- setting up and tearing down

    def create(self) -> None:
        """Create and migrate the database; declare the tier queues."""
        db.upgrade(self.settings)
        broker = build_broker(self.settings)
        try:
            for name in self.tier_queues:
                broker.declare_queue(name, ensure=True)
        finally:
            broker.close()

    def destroy(self, failed: bool) -> None:
        """Stop the processes, delete the queues, drop the database; keep the logs (and say
        where) when the run failed. Each step runs even when an earlier one fails."""
        steps: list[tuple[str, Callable[[], None], str]] = [
            (f"stop {p.name}", p.stop, "") for p in reversed(self.processes)
        ]
        steps.append(("close clients", self._close_clients, ""))
        if failed:
            steps.append(("show logs", self._show_logs, ""))
        steps.append(
            (
                "delete queues",
                lambda: _persist(lambda: delete_queues(self.queues, self.exchanges)),
                f"queues left: {' '.join(self.queues)}; exchanges left: "
                f"{' '.join(self.exchanges) or '-'}",
            )
        )
        steps.append(
            (
                "drop database",
                lambda: _persist(lambda: db.drop_database(self.settings.database_url)),
                f"database left: {self.name}",
            )
        )
        for what, step, left in steps:
            try:
                step()
            except Exception as exc:
                print(f"cleanup: could not {what}: {exc!r} {left}", file=sys.stderr, flush=True)
        if failed:
            print(f"logs kept in {self.workdir}", file=sys.stderr, flush=True)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _close_clients(self) -> None:
        for client in self._clients:
            client.close()
        if self._engine is not None:
            self._engine.dispose()

    def _show_logs(self) -> None:
        for process in self.processes:
            print(f"--- {process.name} (last lines of {process.log})", file=sys.stderr)
            print(process.tail(), file=sys.stderr, flush=True)

    # -- clients

    @property
    def engine(self) -> sa.Engine:
        """A small connection pool on this run's database, for the benchmark's own queries."""
        if self._engine is None:
            self._engine = db.make_engine(self.settings, pool_size=2, max_overflow=2)
        return self._engine

    def client(self) -> Warren:
        """A `Warren` Python client on this run's deployment (closed at the end)."""
        warren = Warren(self.settings)
        self._clients.append(warren)
        return warren

    def add_queue(self, name: str, companions: bool = True) -> None:
        """Have a queue of the benchmark's own deleted at the end, with its Dramatiq
        companions `.DQ` and `.XQ` unless `companions` is false. Adding one again is a no-op."""
        names = queue_family(name) if companions else [name]
        self.queues.extend(queue for queue in names if queue not in self.queues)

    def add_exchange(self, name: str) -> None:
        """Have an exchange of the benchmark's own deleted at the end (after the queues)."""
        if name not in self.exchanges:
            self.exchanges.append(name)

    # -- processes

    def process_env(self, **extra: str) -> dict[str, str]:
        """A child's environment: nothing inherited from `WARREN_*`, this run's settings."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("WARREN_")}
        env.update(
            {
                "WARREN_DATABASE_URL": self.settings.database_url,
                "WARREN_BROKER_URL": self.settings.broker_url,
                "WARREN_QUEUE_PREFIX": self.settings.queue_prefix,
                "WARREN_JOB_MODULES": ",".join(self.settings.job_modules),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra)
        return env

    def start(self, name: str, argv: list[str], **extra_env: str) -> Process:
        """Start a process with this run's environment; it is stopped at the end."""
        log = self.workdir / f"{len(self.processes) + 1}-{name}.log"
        process = Process(name, argv, self.process_env(**extra_env), log)
        self.processes.append(process)
        return process

    def start_api(self, workers: int = 2, threads: int = 8, **extra_env: str) -> Api:
        """`warren api` on a free port of 127.0.0.1, once `/health` answers 200; `extra_env`
        adds `WARREN_*` settings of its own (`WARREN_API_TOKENS="t"`)."""
        port = free_port()
        options = ["--host", "127.0.0.1", "--port", str(port)]
        options += ["--workers", str(workers), "--threads", str(threads)]
        process = self.start("api", warren_argv("api", *options), **extra_env)
        return self._serving(process, port)

    def start_scheduler(self) -> Process:
        """`warren scheduler`, whose relay publishes the jobs the API stores."""
        return self.start("scheduler", warren_argv("scheduler"))

    def start_app(
        self, name: str, app: str, workers: int = 2, threads: int = 8, **extra_env: str
    ) -> Api:
        """Another WSGI app (`"bench.plainapi:create_app()"`) served on a free port of
        127.0.0.1 as `warren api` serves Warren's: gunicorn with `warren api`'s own command
        line (worker class, processes, threads, access log), only the app replaced. Returns
        once its `/health` answers 200."""
        port = free_port()
        argv = api_argv("127.0.0.1", port, workers, threads)
        if WARREN_APP not in argv:
            raise BenchError(f"`warren api`'s gunicorn command names no {WARREN_APP}: {argv}")
        argv = [app if part == WARREN_APP else part for part in argv]
        return self._serving(self.start(name, argv, **extra_env), port)

    def _serving(self, process: Process, port: int) -> Api:
        url = f"http://127.0.0.1:{port}"
        what = f"{process.name}'s /health"
        wait_until(lambda: _healthy(url), READY_TIMEOUT, what, interval=0.2, process=process)
        return Api(process, url)

    def start_worker(self, processes: int, threads: int, wait: bool = True) -> Process:
        """`warren worker`, once each of its processes consumes every tier queue (at once when
        `wait` is false: then `wait_for_consumers(env.tier_queues, processes, worker)`)."""
        process = self.start(
            "worker",
            warren_argv("worker", "--processes", str(processes), "--threads", str(threads)),
        )
        if wait:
            self.wait_for_consumers(self.tier_queues, processes, process)
        return process

    def wait_for_consumers(
        self, queues: Sequence[str], count: int, process: Process, *others: Process
    ) -> None:
        """Wait until each queue has at least `count` consumers (one per worker process);
        fail as soon as `process` or one of `others` exits."""
        processes = (process, *others)

        def ready() -> bool:
            for each in processes:
                if each.exited():
                    raise BenchError(
                        f"{each.name} exited with code {each.popen.returncode} while "
                        f"waiting for it to consume {', '.join(queues)}"
                    )
            info = queue_info(queues)
            return all(entry is not None and entry[1] >= count for entry in info.values())

        names = ", ".join(each.name for each in processes)
        what = f"{names} to consume {', '.join(queues)}"
        wait_until(ready, READY_TIMEOUT, what, interval=0.5)


def _persist(step: Callable[[], None], patience: float = CLEANUP_PATIENCE) -> None:
    """Run a cleanup step, again every 2 s while PostgreSQL or RabbitMQ is unreachable (as
    when someone restarts them), for up to `patience` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return step()
        except (pika.exceptions.AMQPConnectionError, sa.exc.OperationalError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(2)


@contextmanager
def _shielded() -> Iterator[None]:
    """No time limit, Ctrl-C or SIGTERM while cleaning up: a second Ctrl-C must not leave a
    database or processes behind."""
    signal.alarm(0)
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def bench_environment() -> Iterator[BenchEnv]:
    """A fresh `BenchEnv`, destroyed on the way out whatever happens."""
    run_id = uuid.uuid4().hex[:10]
    workdir = Path(tempfile.mkdtemp(prefix=f"warren_bench_{run_id}_"))
    env = BenchEnv(run_id, workdir)
    failed = True
    try:
        env.create()
        yield env
        failed = False
    finally:
        with _shielded():
            env.destroy(failed)


# -- reporting --------------------------------------------------------------------------------


def machine_info(env: BenchEnv) -> dict[str, Any]:
    """What the figures were measured on."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    with env.engine.connect() as conn:
        postgres = conn.scalar(sa.text("SHOW server_version"))
    connection = pika.BlockingConnection(pika.URLParameters(connection_url(BROKER_URL)))
    try:
        rabbitmq = connection._impl.server_properties.get("version", "?")
    finally:
        connection.close()
    return {
        "cpus": os.cpu_count(),
        "cpuModel": model,
        "memoryGiB": round(mem_kib / 2**20, 1),
        "loadAverage1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "dramatiq": version("dramatiq"),
        "celery": _installed_version("celery"),
        "postgres": postgres,
        "rabbitmq": rabbitmq.decode() if isinstance(rabbitmq, bytes) else str(rabbitmq),
    }


def _installed_version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _time_is_up(signum: int, frame: Any) -> None:
    raise BenchTimeout("the benchmark ran past its time limit (--max-seconds)")


def run(
    name: str,
    measure: Callable[[BenchEnv, Any], dict[str, Any]],
    args: Any,
    max_seconds: float,
) -> None:
    """Run one benchmark in its own environment under a time limit, and end with its JSON
    line: `{"bench", "ok": true, ...results, "machine"}` or `{"bench", "ok": false, "error"}`.
    Exits 0, 1 on error, 130 when interrupted."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with `&`
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGALRM, _time_is_up)
    signal.alarm(max(1, math.ceil(max_seconds)))
    started = time.monotonic()
    report: dict[str, Any] = {"bench": name, "ok": False}
    code = 1
    try:
        with bench_environment() as env:
            say(f"{name}: database and queue prefix {env.name}")
            results = measure(env, args)
            report.update(ok=True, **results, machine=machine_info(env))
            code = 0
    except KeyboardInterrupt:
        report["error"] = "interrupted"
        code = 130
    except Exception as exc:
        if not isinstance(exc, BenchError):
            traceback.print_exc()
        report["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        signal.alarm(0)
    report["wallSeconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(report), flush=True)
    sys.exit(code)
