"""Cron schedules for admin scripts: `warren schedules list | show | add | pause | resume | run |
delete`, each with `--json` (the JSON of `/schedules`)."""

import json
from typing import Annotated, Any

import typer

from api.views import job_json, schedule_json
from cli.common import (
    JsonOption,
    app,
    connected,
    named_as_options,
    parse_payload,
    print_json,
    priority_of,
    show,
    table,
)
from service.errors import ValidationFailed

schedules_app = typer.Typer(help="Cron schedules: list, add, pause, run...", no_args_is_help=True)
app.add_typer(schedules_app, name="schedules")

Name = Annotated[str, typer.Argument(metavar="NAME")]


def _print(schedule: Any, as_json: bool) -> None:
    shown = schedule_json(schedule)
    if as_json:
        print_json(shown)
        return
    rows = table("field", "value")
    for key, value in shown.items():
        rows.add_row(key, value if isinstance(value, str) else json.dumps(value))
    show(rows)


@schedules_app.command("list")
def schedules_list(as_json: JsonOption = False) -> None:
    """Every schedule, by name."""
    with connected() as warren:
        every = [schedule_json(s) for s in warren.schedules.list()]
    if as_json:
        print_json(every)
        return
    rows = table("name", "cron", "timezone", "type", "enabled", "next run", "last job")
    for s in every:
        rows.add_row(
            s["name"], s["cron"], s["timezone"], s["type"], str(s["enabled"]).lower(),
            s["nextRunAt"], s["lastJobId"] or "-",
        )  # fmt: skip
    show(rows if every else "no schedules")


@schedules_app.command("show")
def schedules_show(name: Name, as_json: JsonOption = False) -> None:
    """One schedule."""
    with connected() as warren:
        _print(warren.schedules.get(name), as_json)


#: The option of `warren schedules add` that sets each field of the schedule.
OPTIONS = {
    "payload": "--payload",
    "timezone": "--timezone",
    "priority": "--priority",
    "catchUp": "--catch-up",
}


@schedules_app.command("add")
def schedules_add(
    name: Name,
    cron: Annotated[str, typer.Argument(help="Five fields, or @hourly, @daily...")],
    job_type: Annotated[str, typer.Argument(metavar="TYPE")],
    payload: Annotated[str, typer.Option(help="The job's payload, JSON")] = "{}",
    timezone: Annotated[str, typer.Option(help="IANA time zone")] = "UTC",
    priority: Annotated[str | None, typer.Option(help="1-10, or high, normal, low")] = None,
    catch_up: Annotated[str, typer.Option("--catch-up", help="none, latest or all")] = "latest",
    as_json: JsonOption = False,
) -> None:
    """Create a schedule."""
    body: dict[str, Any] = {"payload": parse_payload(payload)}
    body |= {"name": name, "cron": cron, "type": job_type, "timezone": timezone}
    body |= {"catchUp": catch_up}
    if priority is not None:
        body["priority"] = priority_of(priority)
    with connected() as warren:
        try:
            schedule = warren.schedules.create(body)
        except ValidationFailed as exc:
            raise named_as_options(exc, OPTIONS) from None
        _print(schedule, as_json)


def _set_enabled(name: str, enabled: bool, as_json: bool) -> None:
    with connected() as warren:
        schedule = warren.schedules.update(name, {"enabled": enabled})
    if as_json:
        print_json(schedule_json(schedule))
    else:
        state = "resumed; next run" if enabled else "paused; it would have run"
        typer.echo(f"schedule {name} {state} at {schedule_json(schedule)['nextRunAt']}")


@schedules_app.command("pause")
def schedules_pause(name: Name, as_json: JsonOption = False) -> None:
    """Stop firing a schedule until it is resumed."""
    _set_enabled(name, False, as_json)


@schedules_app.command("resume")
def schedules_resume(name: Name, as_json: JsonOption = False) -> None:
    """Fire a paused schedule again, from its next slot after now."""
    _set_enabled(name, True, as_json)


@schedules_app.command("run")
def schedules_run(name: Name, as_json: JsonOption = False) -> None:
    """Enqueue the schedule's job now."""
    with connected() as warren:
        job = warren.schedules.run(name)
    if as_json:
        print_json(job_json(job))
    else:
        typer.echo(str(job.id))


@schedules_app.command("delete")
def schedules_delete(name: Name, as_json: JsonOption = False) -> None:
    """Delete a schedule; the jobs it made stay."""
    with connected() as warren:
        warren.schedules.delete(name)
    if as_json:
        print_json({"name": name, "deleted": True})
    else:
        typer.echo(f"schedule {name} deleted")
