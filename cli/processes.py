"""Running Warren: `warren api`, `worker`, `scheduler`, `run`, and `db upgrade`."""

import ipaddress
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Annotated, NoReturn

import typer
from sqlalchemy.engine import make_url

from cli.common import (
    STOP_SIGNALS,
    app,
    db_app,
    fail,
    load_settings,
    log,
)
from service import db, devmail, logs, metrics, sealing
from service.broker import TIERS, Publisher, build_broker
from service.scheduler import Scheduler
from service.settings import MAX_COUNT, MAX_PORT, Settings
from service.worker import prefetch_env

# -- processes --------------------------------------------------------------------------------


def exec_command(argv: list[str], env: Mapping[str, str] | None = None) -> NoReturn:
    """Replace this process with `argv`: signals reach it directly, its exit code is ours."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, {**os.environ, **(env or {})})


def api_argv(host: str, port: int, workers: int, threads: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "api.app:create_app()",
        "-k",
        "gthread",
        "-w",
        str(workers),
        "--threads",
        str(threads),
        "-b",
        f"{host}:{port}",
        # Warren's log format for gunicorn's own lines; the app logs one line per request.
        "-c",
        "python:api.gunicorn_conf",
    ]


def worker_argv(
    prefix: str, processes: int, threads: int, tiers: list[str], log_format: str = "text"
) -> list[str]:
    queues = [f"{prefix}.{tier}" for tier in tiers]
    # In JSON, Dramatiq's main process logs nothing of its own format: only its warnings,
    # bare. Its worker processes log through Warren's configuration (`service.worker.setup`).
    quiet = ["--skip-logging"] if log_format == "json" else []
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "service.worker:setup",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        *quiet,
        "--queues",
        *queues,
    ]


def parse_tiers(value: str) -> list[str]:
    tiers = list(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [tier for tier in tiers if tier not in TIERS]
    if unknown or not tiers:
        fail(f"--queues takes tiers among {', '.join(TIERS)}; got {value!r}", code=2)
    return tiers


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`: addresses only this machine can reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


def check_exposure(host: str, settings: Settings, insecure: bool) -> None:
    """Refuse to serve every job to the network: beyond loopback the API needs
    `WARREN_API_TOKENS`, unless the operator says `--insecure` (a proxy that authenticates)."""
    if not (is_loopback(host) or settings.api_tokens or insecure):
        fail(
            f"refusing to listen on {host}, beyond loopback, without WARREN_API_TOKENS;"
            " set tokens, or pass --insecure if something in front authenticates"
        )


ThreadsOption = Annotated[
    int | None, typer.Option(min=1, max=MAX_COUNT, help="Threads per process")
]

InsecureOption = Annotated[
    bool,
    typer.Option("--insecure", help="Listen beyond loopback even without WARREN_API_TOKENS."),
]


def observability_env(settings: Settings) -> dict[str, str]:
    """What a process passes on to the processes it starts: the log format, resolved here
    where stderr is still the user's (a Dramatiq worker's is a pipe), and the directory of
    prometheus-client's multiprocess mode (`service.metrics.multiprocess_directory`)."""
    directory, _ = metrics.multiprocess_directory(settings.queue_prefix)
    return {
        "WARREN_LOG_FORMAT": logs.resolve(settings.log_format),
        metrics.MULTIPROC_ENV: str(directory),
    }


def on_stop_signals(handler) -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)


# -- run the service --------------------------------------------------------------------------


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Address [default: WARREN_API_HOST]")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=MAX_PORT, help="Port [default: WARREN_API_PORT]")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, max=MAX_COUNT, help="Gunicorn processes")
    ] = None,
    threads: ThreadsOption = None,
    insecure: InsecureOption = False,
) -> None:
    """Serve the HTTP API with gunicorn; beyond loopback only with tokens (or --insecure)."""
    settings = load_settings()
    host = host or settings.api_host
    check_exposure(host, settings, insecure)
    exec_command(
        api_argv(
            host,
            port or settings.api_port,
            workers or settings.api_workers,
            threads or settings.api_threads,
        ),
        observability_env(settings),
    )


@app.command()
def worker(
    processes: Annotated[
        int | None, typer.Option(min=1, max=MAX_COUNT, help="Worker processes")
    ] = None,
    threads: ThreadsOption = None,
    queues: Annotated[str, typer.Option(help="Tiers to consume, comma-separated")] = (
        "high,normal,low"
    ),
    prefetch: Annotated[
        int | None, typer.Option(min=1, max=100, help="Messages held per thread")
    ] = None,
) -> None:
    """Run Dramatiq workers on the tier queues."""
    settings = load_settings()
    tiers = parse_tiers(queues)
    processes = processes or settings.worker_processes
    threads = threads or settings.worker_threads
    # Four messages per thread by default (Celery's default): a message holds its slot until
    # its outcome is committed and acked (service.acks), so with fewer the threads of a busy
    # worker wait for deliveries. Fewer suit long jobs (see `worker_prefetch`).
    per_thread = prefetch or settings.worker_prefetch
    env = observability_env(settings)
    exec_command(
        worker_argv(settings.queue_prefix, processes, threads, tiers, env["WARREN_LOG_FORMAT"]),
        {**prefetch_env(threads, per_thread), **env},
    )


@app.command()
def scheduler() -> None:
    """Publish due and stranded jobs, take back lost ones, drain dead letters; until SIGTERM."""
    settings = load_settings()
    logs.configure(settings.log_format)
    stop = threading.Event()
    on_stop_signals(lambda signum, frame: stop.set())
    engine = db.make_engine(settings, pool_size=2, max_overflow=2)
    publisher = Publisher(build_broker(settings), settings)
    try:
        Scheduler(engine, publisher, settings).run(stop)
    finally:
        publisher.close()
        engine.dispose()
        log.info("scheduler stopped")


@app.command()
def run(insecure: InsecureOption = False) -> None:
    """Development start: migrate the database, then run the API, a worker and the scheduler;
    and a mail catcher when WARREN_SMTP_URL names this machine but nothing listens there."""
    settings = load_settings()
    check_exposure(settings.api_host, settings, insecure)
    db.upgrade(settings)
    # The children's format and metrics directory, through the environment.
    metrics_dir, ours = metrics.multiprocess_directory(settings.queue_prefix)
    os.environ["WARREN_LOG_FORMAT"] = logs.configure(settings.log_format)
    catcher = devmail.start(settings)
    children = {
        "api": spawn_child("api", *(["--insecure"] if insecure else [])),
        "worker": spawn_child("worker"),
        "scheduler": spawn_child("scheduler"),
    }
    typer.echo(f"API on http://{settings.api_host}:{settings.api_port} (Ctrl-C stops everything)")
    if catcher is not None:
        typer.echo(
            f"Mail to smtp://{catcher.host}:{catcher.port} is caught, not sent: `warren mail`"
            f" lists it (files in {catcher.mailbox.directory})"
        )
    try:
        code = supervise(children)
    finally:
        if catcher is not None:
            catcher.stop()  # after the workers: a mail they were sending still arrives
        if ours:
            metrics.clean_if_idle(metrics_dir)
    raise typer.Exit(code)


def spawn_child(*args: str) -> subprocess.Popen:
    # Own process group: a terminal's Ctrl-C reaches only us, and we forward it once.
    return subprocess.Popen([sys.executable, "-m", "cli", *args], process_group=0)


def supervise(children: dict[str, subprocess.Popen]) -> int:
    """Wait until a signal arrives or a child exits; then stop every child. Returns the exit
    code: 0 after a signal, non-zero when a child ended on its own."""
    stopping = threading.Event()
    received: list[int] = []

    def forward(signum, frame) -> None:
        received.append(signum)
        stopping.set()

    on_stop_signals(forward)
    ended = None
    while not stopping.is_set() and ended is None:
        ended = next((name for name, p in children.items() if p.poll() is not None), None)
        stopping.wait(0.2)
    if ended is not None and not received:
        code = children[ended].returncode
        typer.echo(f"error: {ended} exited with code {code}; stopping the others", err=True)
    stop_children(children, received[0] if received else signal.SIGTERM)
    if received:
        return 0
    return children[ended].returncode or 1


def stop_children(children: dict[str, subprocess.Popen], signum: int, grace: float = 30) -> None:
    for process in children.values():
        if process.poll() is None:
            process.send_signal(signum)
    for process in children.values():
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- database ---------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the database if needed and migrate it to the newest schema."""
    settings = load_settings()
    db.upgrade(settings)
    typer.echo(f"database {make_url(settings.database_url).database} is at the newest schema")


@app.command("secret-key")
def secret_key() -> None:
    """Print a new WARREN_SECRET_KEY, which encrypts secret payload fields at rest."""
    typer.echo(sealing.new_key())
