"""`warren`: run the API, the worker and the scheduler; enqueue, inspect and steer jobs.

Human tables by default, `--json` for scripts (the same job JSON as the HTTP API). Exit code 0
on success; on error one line `error: <reason>` on stderr and exit code 1 (2 for usage errors).
Settings come from `WARREN_*` variables, read when a command runs.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import pydantic
import sqlalchemy as sa
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from service import db
from service.broker import TIERS, Publisher, build_broker
from service.client import Warren
from service.dispatcher import Dispatcher
from service.errors import WarrenError
from service.models import STATUSES, JobStatus
from service.queries import Filters
from service.settings import Settings
from service.views import (
    attempt_json,
    dead_letter_group_json,
    dead_letter_json,
    job_json,
    timestamp,
)

log = logging.getLogger("warren.cli")

app = typer.Typer(
    help="Warren: background jobs on RabbitMQ and PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The job database.", no_args_is_help=True)
jobs_app = typer.Typer(help="Show, list, retry and cancel jobs.", no_args_is_help=True)
dlq_app = typer.Typer(
    help="The dead-letter queue: list, group, replay, purge.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(jobs_app, name="jobs")
app.add_typer(dlq_app, name="dlq")


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# -- helpers ----------------------------------------------------------------------------------


def load_settings() -> Settings:
    try:
        return Settings()
    except pydantic.ValidationError as exc:
        details = "; ".join(
            f"WARREN_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        fail(f"invalid settings ({details})")


@contextmanager
def connected() -> Iterator[Warren]:
    """A `Warren` client on the environment's settings, closed after the command."""
    warren = Warren(load_settings())
    try:
        yield warren
    finally:
        warren.close()


def fail(reason: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {' '.join(reason.split())}", err=True)
    raise typer.Exit(code)


def describe(exc: Exception) -> str:
    """One line for an error a user may cause or meet."""
    if isinstance(exc, WarrenError):
        details = "; ".join(f"{d.get('field')}: {d.get('message')}" for d in exc.details)
        return f"{exc.message} ({details})" if details else exc.message
    if isinstance(exc, sa.exc.OperationalError):
        reason = str(exc.orig or exc).strip().splitlines()
        return f"database unreachable ({reason[0] if reason else type(exc).__name__})"
    if isinstance(exc, sa.exc.SQLAlchemyError):
        return f"database error ({str(exc).strip().splitlines()[0]})"
    return f"{type(exc).__name__}: {exc}"


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def show(*renderables: Any) -> None:
    """Print tables; when piped, wide enough that no column is cut."""
    width = None if sys.stdout.isatty() else 240
    Console(highlight=False, width=width).print(*renderables)


def compact(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def table(*columns: str, title: str | None = None) -> Table:
    grid = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        grid.add_column(column, no_wrap=column in ("id", "queue", "type"))
    return grid


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
        "--access-logfile",
        "-",
    ]


def worker_argv(prefix: str, processes: int, threads: int, tiers: list[str]) -> list[str]:
    queues = [f"{prefix}.{tier}" for tier in tiers]
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "service.worker:setup",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--queues",
        *queues,
    ]


def parse_tiers(value: str) -> list[str]:
    tiers = list(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [tier for tier in tiers if tier not in TIERS]
    if unknown or not tiers:
        fail(f"--queues takes tiers among {', '.join(TIERS)}; got {value!r}", code=2)
    return tiers


def on_stop_signals(handler) -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)


# -- run the service --------------------------------------------------------------------------


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Address [default: WARREN_API_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: WARREN_API_PORT]")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Gunicorn processes")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Threads per process")] = None,
) -> None:
    """Serve the HTTP API with gunicorn."""
    settings = load_settings()
    exec_command(
        api_argv(
            host or settings.api_host,
            port or settings.api_port,
            workers or settings.api_workers,
            threads or settings.api_threads,
        )
    )


@app.command()
def worker(
    processes: Annotated[int | None, typer.Option(min=1, help="Worker processes")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Threads per process")] = None,
    queues: Annotated[str, typer.Option(help="Tiers to consume, comma-separated")] = (
        "high,normal,low"
    ),
) -> None:
    """Run Dramatiq workers on the tier queues."""
    settings = load_settings()
    tiers = parse_tiers(queues)
    processes = processes or settings.worker_processes
    threads = threads or settings.worker_threads
    # Prefetch no more than the threads can run, so a backlog cannot hoard one worker.
    exec_command(
        worker_argv(settings.queue_prefix, processes, threads, tiers),
        {"dramatiq_queue_prefetch": str(threads)},
    )


@app.command()
def scheduler() -> None:
    """Publish due and stranded jobs and release expired leases, until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, force=True)
    settings = load_settings()
    stop = threading.Event()
    on_stop_signals(lambda signum, frame: stop.set())
    engine = db.make_engine(settings, pool_size=2, max_overflow=2)
    publisher = Publisher(build_broker(settings), settings)
    try:
        Dispatcher(engine, publisher, settings).run(stop)
    finally:
        publisher.close()
        engine.dispose()
        log.info("scheduler stopped")


@app.command()
def run() -> None:
    """Development start: migrate the database, then run the API, a worker and the scheduler."""
    settings = load_settings()
    db.upgrade(settings)
    children = {name: spawn_child(name) for name in ("api", "worker", "scheduler")}
    typer.echo(f"API on http://{settings.api_host}:{settings.api_port} (Ctrl-C stops everything)")
    raise typer.Exit(supervise(children))


def spawn_child(command: str) -> subprocess.Popen:
    # Own process group: a terminal's Ctrl-C reaches only us, and we forward it once.
    return subprocess.Popen([sys.executable, "-m", "service.cli", command], process_group=0)


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


# -- enqueue ----------------------------------------------------------------------------------


def parse_payload(text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"--payload is not valid JSON: {exc}")
    if not isinstance(payload, dict):
        fail("--payload must be a JSON object")
    return payload


@app.command()
def enqueue(
    type: Annotated[str, typer.Argument(help="Job type, e.g. send-email")],
    payload: Annotated[str, typer.Option(help="The payload as a JSON object")] = "{}",
    priority: Annotated[str | None, typer.Option(help="high, normal, low or 1-10")] = None,
    delay: Annotated[float | None, typer.Option(help="Run no sooner than in SECONDS")] = None,
    scheduled_at: Annotated[str | None, typer.Option(help="Run no sooner than ISO time")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Attempts before failing")] = None,
    timeout: Annotated[int | None, typer.Option(help="Seconds one attempt may take")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Enqueue once per key")] = None,
    as_json: JsonOption = False,
) -> None:
    """Enqueue one job and print its id."""
    body = parse_payload(payload)
    if priority is not None and priority.strip().lstrip("-").isdigit():
        priority = int(priority)
    with connected() as warren:
        outcome = warren.enqueue(
            type,
            body,
            priority=priority,
            delay_seconds=delay,
            scheduled_at=scheduled_at,
            max_attempts=max_attempts,
            timeout_seconds=timeout,
            idempotency_key=idempotency_key,
        )
    if as_json:
        print_json({"jobId": str(outcome.id), "created": outcome.created})
    elif outcome.created:
        typer.echo(str(outcome.id))
    else:
        typer.echo(f"{outcome.id} (existing job: idempotency key seen before)")


# -- jobs -------------------------------------------------------------------------------------


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOption = False
) -> None:
    """One job and its attempts."""
    with connected() as warren:
        job = job_json(warren.get(job_id))
        attempts = [attempt_json(a) for a in warren.attempts(job_id)]
    if as_json:
        print_json({"job": job, "attempts": attempts})
        return
    fields = table("field", "value")
    for name, value in job.items():
        fields.add_row(name, compact(value))
    show(fields)
    if not attempts:
        show("\nno attempts yet")
        return
    runs = table("#", "status", "started", "duration ms", "worker", "error", title="\nattempts")
    for a in attempts:
        error = (a["error"] or {}).get("message") if isinstance(a["error"], dict) else a["error"]
        runs.add_row(
            str(a["number"]), a["status"], a["startedAt"], compact(a["durationMs"]),
            compact(a["worker"]), compact(error),
        )  # fmt: skip
    show(runs)


def list_params(
    status, type, priority, created_after, created_before, payload, limit, cursor
) -> dict[str, str]:
    params = {
        "status": status,
        "type": type,
        "priority": priority,
        "createdAfter": created_after,
        "createdBefore": created_before,
        "limit": None if limit is None else str(limit),
        "cursor": cursor,
    }
    for item in payload or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"expected FIELD=VALUE, got {item!r}", param_hint="--payload")
        params[f"payload.{name}"] = value
    return {name: value for name, value in params.items() if value is not None}


@jobs_app.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help="pending, processing, completed, ...")] = None,
    type: Annotated[str | None, typer.Option(help="Job type")] = None,
    priority: Annotated[str | None, typer.Option(help="high, normal, low or 1-10")] = None,
    created_after: Annotated[str | None, typer.Option(help="ISO time with zone")] = None,
    created_before: Annotated[str | None, typer.Option(help="ISO time with zone")] = None,
    payload: Annotated[
        list[str] | None, typer.Option(help="FIELD=VALUE on the payload; repeatable")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Jobs per page (1-500)")] = None,
    cursor: Annotated[str | None, typer.Option(help="nextCursor of the previous page")] = None,
    as_json: JsonOption = False,
) -> None:
    """Jobs, newest first, filtered."""
    params = list_params(
        status, type, priority, created_after, created_before, payload, limit, cursor
    )
    filters = Filters.parse(params)
    with connected() as warren:
        page = warren.list(filters)
    if as_json:
        jobs = [job_json(job) for job in page.jobs]
        print_json({"count": len(jobs), "jobs": jobs, "nextCursor": page.next_cursor})
        return
    rows = table("id", "type", "status", "pri", "tries", "created")
    for job in page.jobs:
        rows.add_row(
            str(job.id), job.type, job.status, str(job.priority),
            f"{job.attempts}/{job.max_attempts}", job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )  # fmt: skip
    show(rows if page.jobs else "no jobs")
    if page.next_cursor:
        typer.echo(f"next page: --cursor {page.next_cursor}")


@jobs_app.command("retry")
def jobs_retry(
    job_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOption = False
) -> None:
    """Run a failed or cancelled job again with fresh attempts."""
    with connected() as warren:
        warren.retry(job_id)
    if as_json:
        print_json({"jobId": job_id, "status": "pending", "message": "Job retry queued"})
    else:
        typer.echo(f"job {job_id} is pending again with fresh attempts")


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOption = False
) -> None:
    """Cancel a pending job, or ask a processing one to stop."""
    with connected() as warren:
        previous = warren.cancel(job_id)
    if previous == JobStatus.PENDING:
        status, message = "cancelled", f"job {job_id} cancelled; it never starts"
    else:
        status, message = "processing", f"job {job_id} is running; asked it to stop"
    if as_json:
        print_json({"jobId": job_id, "status": status, "message": message})
    else:
        typer.echo(message)


# -- stats ------------------------------------------------------------------------------------


@app.command()
def stats(as_json: JsonOption = False) -> None:
    """Counts by status and type, rates, and the tier queues."""
    with connected() as warren:
        numbers = warren.stats()
    if as_json:
        print_json(numbers)
        return
    counts = table("total", *STATUSES, "completion", "failure")
    counts.add_row(
        *(str(numbers[key]) for key in ("total", *STATUSES)),
        numbers["completionRate"],
        numbers["failureRate"],
    )
    show(counts)
    by_type = table("type", "total", *STATUSES, title="\nby type")
    for name, per in numbers["byType"].items():
        by_type.add_row(name, *(str(per[key]) for key in ("total", *STATUSES)))
    show(by_type if numbers["byType"] else "\nno jobs yet")
    queues = table("queue", "messages", "consumers", title="\nqueues")
    for name, depth in numbers["queues"].items():
        queues.add_row(name, str(depth["messages"]), str(depth["consumers"]))
    show(queues if numbers["queues"] else "\nqueues: RabbitMQ unreachable")


# -- dead letters -----------------------------------------------------------------------------


def selection(job_ids: list[str], fingerprint: str | None, everything: bool) -> dict[str, Any]:
    """The one selection a replay or purge applies to, as the HTTP body would say it."""
    given = [bool(job_ids), fingerprint is not None, everything]
    if sum(given) != 1:
        fail("name the dead letters: job ids, --fingerprint FP, or --all", code=2)
    if job_ids:
        return {"jobIds": job_ids}
    if fingerprint is not None:
        return {"fingerprint": fingerprint}
    return {"all": True}


JobIds = Annotated[list[str] | None, typer.Argument(metavar="[ID]...", show_default=False)]
FingerprintOption = Annotated[str | None, typer.Option("--fingerprint", help="One error group.")]
AllOption = Annotated[bool, typer.Option("--all", help="Every dead letter.")]


@dlq_app.command("list")
def dlq_list(
    type_: Annotated[str | None, typer.Option("--type", help="Only this job type.")] = None,
    queue: Annotated[str | None, typer.Option(help="Only this queue or tier.")] = None,
    fingerprint: FingerprintOption = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    before: Annotated[int | None, typer.Option(help="Page on: the last id shown.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Dead letters, newest first."""
    with connected() as warren:
        letters = warren.dlq.list(
            type=type_, queue=queue, fingerprint=fingerprint, limit=limit, before=before
        )
    if as_json:
        print_json({"count": len(letters), "messages": [dead_letter_json(x) for x in letters]})
        return
    rows = table("id", "job", "type", "queue", "error", "fingerprint", "dead at")
    for letter in letters:
        error = letter.error or {}
        rows.add_row(
            str(letter.id),
            compact(letter.job_id),
            compact(letter.type),
            letter.queue,
            f"{error.get('type')}: {error.get('message')}",
            letter.fingerprint,
            compact(timestamp(letter.dead_at)),
        )
    show(rows if letters else "the dead-letter queue is empty")


@dlq_app.command("groups")
def dlq_groups(as_json: JsonOption = False) -> None:
    """Dead letters counted by error fingerprint, with a sample error each."""
    with connected() as warren:
        groups = [dead_letter_group_json(g) for g in warren.dlq.groups()]
    if as_json:
        print_json({"groups": groups})
        return
    rows = table("fingerprint", "count", "types", "sample error", "last dead at")
    for group in groups:
        sample = group["sampleError"] or {}
        rows.add_row(
            group["fingerprint"],
            str(group["count"]),
            ", ".join(group["types"]),
            f"{sample.get('type')}: {sample.get('message')}",
            compact(group["lastDeadAt"]),
        )
    show(rows if groups else "the dead-letter queue is empty")


@dlq_app.command("replay")
def dlq_replay(
    job_ids: JobIds = None,
    fingerprint: FingerprintOption = None,
    everything: AllOption = False,
    as_json: JsonOption = False,
) -> None:
    """Run dead jobs again with fresh attempts: by job id, by --fingerprint, or --all."""
    chosen = selection(job_ids or [], fingerprint, everything)
    with connected() as warren:
        replayed = warren.dlq.replay(chosen)
    if as_json:
        print_json({"replayed": replayed})
    else:
        typer.echo(f"replayed {replayed} job{'s' if replayed != 1 else ''}")


@dlq_app.command("purge")
def dlq_purge(
    job_ids: JobIds = None,
    fingerprint: FingerprintOption = None,
    everything: AllOption = False,
    as_json: JsonOption = False,
) -> None:
    """Delete dead letters (their jobs stay failed): by job id, by --fingerprint, or --all."""
    chosen = selection(job_ids or [], fingerprint, everything)
    with connected() as warren:
        purged = warren.dlq.purge(chosen)
    if as_json:
        print_json({"purged": purged})
    else:
        typer.echo(f"purged {purged} dead letter{'s' if purged != 1 else ''}")


# -- entry point ------------------------------------------------------------------------------


def main() -> None:
    """The `warren` console script: Warren's errors become one line and exit code 1."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        app()
    except Exception as exc:  # a user sees one line, never a traceback
        typer.echo(f"error: {' '.join(describe(exc).split())}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
