"""Operator controls for admin scripts: `warren pause tier high`, `warren pause type
send-email`, `warren resume ...`, `warren paused`; `warren cancel` and `warren retry` with the
filters of `warren jobs list` (and `--dry-run`)."""

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated

import typer

from api.views import bulk_json
from cli.common import JsonOption, app, connected, fail, print_json, show, table
from cli.jobs import list_params
from service import controls
from service.store.pauses import Paused


class Target(StrEnum):
    """What a pause applies to."""

    tier = "tier"
    type = "type"


TargetArgument = Annotated[Target, typer.Argument(help="tier (high, normal, low) or type")]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="e.g. high, send-email")]

# -- pause and resume ---------------------------------------------------------------------------


def _print_paused(paused: Paused, as_json: bool, said: str = "") -> None:
    held = controls.paused_json(paused)
    if as_json:
        print_json({"paused": held})
        return
    if said:
        typer.echo(said)
    rows = table("kind", "name")
    for kind, names in (("tier", held["tiers"]), ("type", held["types"])):
        for name in names:
            rows.add_row(kind, name)
    show(rows if paused else "nothing is paused")


@app.command()
def pause(target: TargetArgument, name: NameArgument, as_json: JsonOption = False) -> None:
    """Pause a tier or a job type: workers start none of its jobs, which wait until resumed.
    Jobs already running finish."""
    with connected() as warren:
        paused = warren.pause(target.value, name)
    _print_paused(paused, as_json, f"{target.value} {name} paused")


@app.command()
def resume(target: TargetArgument, name: NameArgument, as_json: JsonOption = False) -> None:
    """Resume a paused tier or job type: its waiting jobs run again."""
    with connected() as warren:
        paused = warren.resume(target.value, name)
    _print_paused(paused, as_json, f"{target.value} {name} resumed")


@app.command()
def paused(as_json: JsonOption = False) -> None:
    """The tiers and job types paused now."""
    with connected() as warren:
        _print_paused(warren.paused(), as_json)


# -- cancel and retry by filter -------------------------------------------------------------------

DryRun = Annotated[bool, typer.Option("--dry-run", help="Count what would change; change nothing.")]
Everything = Annotated[bool, typer.Option("--all", help="Every job (no filter given).")]
Payload = Annotated[list[str] | None, typer.Option(help="FIELD=VALUE on the payload; repeatable")]


def _bulk(
    name: str,
    done: str,
    filters: dict[str, str],
    everything: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    if bool(filters) == everything:
        fail("name the jobs with filters (--status, --type, ...) or --all, not both", code=2)
    with connected() as warren:
        verb: Callable[..., controls.Bulk] = getattr(warren, f"{name}_where")
        outcome = verb(filters, dry_run=dry_run)
    if as_json:
        print_json({k: v for k, v in bulk_json(outcome).items() if k != "success"})
        return
    said = f"would {name}" if dry_run else done
    typer.echo(f"{said} {outcome.changed} of {outcome.matched} matching jobs")


def _bulk_command(name: str, done: str, statuses: str, summary: str) -> None:
    """Add `warren cancel` or `warren retry`: the filters of `warren jobs list`, `--all`,
    `--dry-run`, `--json`; `Warren.cancel_where` or `retry_where` underneath."""

    def command(
        status: Annotated[str | None, typer.Option(help=statuses)] = None,
        type: Annotated[str | None, typer.Option(help="Job type")] = None,
        priority: Annotated[str | None, typer.Option(help="high, normal, low or 1-10")] = None,
        created_after: Annotated[str | None, typer.Option(help="ISO time with zone")] = None,
        created_before: Annotated[str | None, typer.Option(help="ISO time with zone")] = None,
        payload: Payload = None,
        schedule: Annotated[str | None, typer.Option(help="Jobs this schedule created")] = None,
        everything: Everything = False,
        dry_run: DryRun = False,
        as_json: JsonOption = False,
    ) -> None:
        filters = list_params(
            status, type, priority, created_after, created_before, payload, None, None, schedule
        )
        _bulk(name, done, filters, everything, dry_run, as_json)

    command.__doc__ = summary
    app.command(name)(command)


_bulk_command(
    "cancel",
    "cancelled",
    "pending or processing",
    "Cancel every job the filters select, in batches: pending ones never start, processing"
    " ones are asked to stop.",
)
_bulk_command(
    "retry",
    "retried",
    "failed or cancelled",
    "Run again, with fresh attempts, every failed or cancelled job the filters select.",
)
