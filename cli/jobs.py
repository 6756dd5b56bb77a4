"""Jobs for admin scripts: `warren enqueue`, `jobs show | list | retry | reschedule | cancel`
(`warren stats` is in cli/stats.py, `jobs tail` in cli/tail.py)."""

from typing import Annotated, Any

import typer

from api.views import (
    attempt_json,
    job_json,
)
from cli.common import (
    JsonOption,
    app,
    compact,
    connected,
    fail,
    jobs_app,
    named_as_options,
    parse_payload,
    print_json,
    priority_of,
    show,
    table,
)
from cli.enqueue_file import enqueue_file
from service.errors import ValidationFailed
from service.models import JobStatus
from service.queries import Filters

# -- enqueue ----------------------------------------------------------------------------------


#: The option of `warren enqueue` that sets each field of the enqueue request: an error names
#: what the user typed, not the Python name (`--delay`, not `delay_seconds`).
OPTIONS = {
    "priority": "--priority",
    "delay_seconds": "--delay",
    "scheduled_at": "--scheduled-at",
    "max_attempts": "--max-attempts",
    "timeout_seconds": "--timeout",
    "idempotency_key": "--idempotency-key",
}


@app.command()
def enqueue(
    type: Annotated[str | None, typer.Argument(help="Job type, e.g. send-email")] = None,
    payload: Annotated[str, typer.Option(help="The payload as a JSON object")] = "{}",
    priority: Annotated[str | None, typer.Option(help="high, normal, low or 1-10")] = None,
    delay: Annotated[float | None, typer.Option(help="Run no sooner than in SECONDS")] = None,
    scheduled_at: Annotated[str | None, typer.Option(help="Run no sooner than ISO time")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Attempts before failing")] = None,
    timeout: Annotated[int | None, typer.Option(help="Seconds one attempt may take")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Enqueue once per key")] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file", metavar="PATH", help="NDJSON, one POST /jobs body a line; - for stdin"
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Enqueue one job and print its id; or every line of an NDJSON file (--file)."""
    if file is not None:
        options = (type, priority, delay, scheduled_at, max_attempts, timeout, idempotency_key)
        if any(option is not None for option in options) or payload != "{}":
            fail("--file takes no TYPE or job options: each line is a whole request", code=2)
        with connected() as warren:
            enqueue_file(warren, file, as_json)
        return
    if type is None:
        fail("give a job TYPE, or --file PATH", code=2)
    if delay is not None and scheduled_at is not None:
        fail("--delay and --scheduled-at exclude each other", code=2)
    body = parse_payload(payload)
    with connected() as warren:
        try:
            outcome = warren.enqueue(
                type,
                body,
                priority=priority_of(priority),
                delay_seconds=delay,
                scheduled_at=scheduled_at,
                max_attempts=max_attempts,
                timeout_seconds=timeout,
                idempotency_key=idempotency_key,
            )
        except ValidationFailed as exc:
            raise named_as_options(exc, OPTIONS) from None
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
    status, type, priority, created_after, created_before, payload, limit, cursor, schedule=None
) -> dict[str, str]:
    params = {
        "status": status,
        "type": type,
        "priority": priority,
        "createdAfter": created_after,
        "createdBefore": created_before,
        "schedule": schedule,
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
    schedule: Annotated[str | None, typer.Option(help="Jobs this schedule created")] = None,
    limit: Annotated[int | None, typer.Option(help="Jobs per page (1-500)")] = None,
    cursor: Annotated[str | None, typer.Option(help="nextCursor of the previous page")] = None,
    as_json: JsonOption = False,
) -> None:
    """Jobs, newest first, filtered."""
    params = list_params(
        status, type, priority, created_after, created_before, payload, limit, cursor, schedule
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


#: The option of `warren jobs reschedule` that sets each field of the change.
RESCHEDULE_OPTIONS = {"scheduledAt": "--at", "delaySeconds": "--delay", "priority": "--priority"}


@jobs_app.command("reschedule")
def jobs_reschedule(
    job_id: Annotated[str, typer.Argument(metavar="ID")],
    at: Annotated[str | None, typer.Option("--at", help="New time, ISO 8601 with offset")] = None,
    delay: Annotated[
        float | None, typer.Option("--delay", help="New time, seconds from now")
    ] = None,
    priority: Annotated[str | None, typer.Option(help="1-10, or high, normal, low")] = None,
    as_json: JsonOption = False,
) -> None:
    """Move a pending job to a new time and/or priority."""
    if at is not None and delay is not None:
        fail("--at and --delay exclude each other", code=2)
    change: dict[str, Any] = {"scheduledAt": at, "delaySeconds": delay}
    if priority is not None:
        change["priority"] = priority_of(priority)
    with connected() as warren:
        try:
            job = warren.reschedule(job_id, {k: v for k, v in change.items() if v is not None})
        except ValidationFailed as exc:
            raise named_as_options(exc, RESCHEDULE_OPTIONS) from None
    if as_json:
        print_json(job_json(job))
    else:
        when = job.scheduled_at.isoformat() if job.scheduled_at else "now"
        typer.echo(f"job {job_id} runs at {when}, priority {job.priority}")


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
