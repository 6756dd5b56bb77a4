"""`warren stats`: counts by status and type, rates and the tier queues; once, as JSON, or
redrawn live with `--watch` until Ctrl-C."""

import sys
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live

from cli.common import JsonOption, app, connected, describe, every, print_json, show, table
from service.models import STATUSES


def stats_view(numbers: dict[str, Any]) -> Group:
    """The tables of `warren stats`: totals, per type, per tier queue, and what is paused
    when the stats say."""
    counts = table("total", *STATUSES, "completion", "failure")
    counts.add_row(
        *(str(numbers[key]) for key in ("total", *STATUSES)),
        numbers["completionRate"],
        numbers["failureRate"],
    )
    by_type = table("type", "total", *STATUSES, title="\nby type")
    for name, per in numbers["byType"].items():
        by_type.add_row(name, *(str(per[key]) for key in ("total", *STATUSES)))
    queues = table("queue", "messages", "consumers", title="\nqueues")
    for name, depth in numbers["queues"].items():
        queues.add_row(name, str(depth["messages"]), str(depth["consumers"]))
    parts: list[RenderableType] = [
        counts,
        by_type if numbers["byType"] else "\nno jobs yet",
        queues
        if numbers["queues"]
        else "\nqueues: none declared yet (a worker declares them), or RabbitMQ unreachable",
    ]
    paused = paused_line(numbers.get("paused"))
    if paused:
        parts.append(f"\npaused: {paused}")
    return Group(*parts)


def paused_line(paused: Any) -> str:
    """`tiers low; types send-email` from the stats' `paused` (names by kind, or a list)."""
    if isinstance(paused, dict):
        return "; ".join(
            f"{kind} {', '.join(map(str, names))}" for kind, names in paused.items() if names
        )
    if isinstance(paused, list):
        return ", ".join(map(str, paused))
    return ""


@app.command()
def stats(
    as_json: JsonOption = False,
    watch: Annotated[bool, typer.Option("--watch", help="Redraw until Ctrl-C.")] = False,
    interval: Annotated[
        float, typer.Option(min=0.2, max=3600, help="Seconds between redraws with --watch")
    ] = 2.0,
) -> None:
    """Counts by status and type, rates, and the tier queues."""
    if watch and as_json:
        raise typer.BadParameter("--watch draws tables; use --json without it")
    with connected() as warren:
        if watch:
            follow(warren.stats, interval)
            return
        numbers = warren.stats()
    if as_json:
        print_json(numbers)
    else:
        show(stats_view(numbers))


def follow(read, interval: float) -> None:
    """Redraw the tables every `interval` seconds until Ctrl-C: in place on a terminal, one
    frame after another (each under a timestamped header) when piped."""
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 240)
    if not console.is_terminal:
        for _ in every(interval):
            console.print(frame(read, interval), "")
        return
    with Live(console=console, auto_refresh=False, screen=False) as live:
        for _ in every(interval):
            live.update(frame(read, interval), refresh=True)


def frame(read, interval: float) -> Group:
    """One redraw; while PostgreSQL cannot be read, the reason instead of the tables (the
    watch goes on and recovers with it)."""
    title = f"warren stats at {datetime.now():%H:%M:%S}, every {interval:g}s (Ctrl-C stops)"
    try:
        return Group(title, stats_view(read()))
    except sa.exc.SQLAlchemyError as exc:
        return Group(title, f"{describe(exc)}; trying again")
