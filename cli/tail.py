"""`warren jobs tail`: follow new jobs and their changes of status until Ctrl-C, one line per
change it sees (`--json`: one job JSON per line, as the HTTP API shows a job). It looks every
`--interval` seconds and shows each job as it is then: a job that changed twice between two
looks shows once, in its latest status."""

import json
from typing import Annotated

import sqlalchemy as sa
import typer

from api.views import job_json
from cli.common import connected, describe, every, jobs_app
from service.changes import Change, Follower, database_now
from service.client import Warren
from service.printable import printable
from service.queries import Filters


def change_line(change: Change) -> str:
    """`12:00:01  <id>  send-email  processing (was pending)  attempt 1/3  on <worker>`."""
    job = change.job
    parts = [
        f"{job.updated_at.astimezone():%H:%M:%S}",
        str(job.id),
        job.type,
        job.status if change.was is None else f"{job.status} (was {change.was})",
        f"attempt {job.attempts}/{job.max_attempts}",
    ]
    if job.worker and job.status == "processing":
        parts.append(f"on {job.worker}")
    if job.error and job.status in ("pending", "failed"):
        parts.append(f"error: {' '.join(str(job.error.get('message', '')).split())[:120]}")
    return printable("  ".join(parts))


class Tail:
    """A follower's polls; while PostgreSQL cannot be read, none, and one warning on stderr
    per outage: tail goes on and catches up after it (changes are rows: none is missed)."""

    def __init__(self, warren: Warren, follower: Follower) -> None:
        self.warren = warren
        self.follower = follower
        self.failing = False

    def poll(self) -> list[Change]:
        try:
            with self.warren.engine.connect() as conn:
                changes = self.follower.poll(conn)
        except sa.exc.OperationalError as exc:
            if not self.failing:
                typer.echo(f"warning: {describe(exc)}; trying again", err=True)
            self.failing = True
            return []
        if self.failing:
            typer.echo("warning: the database answers again", err=True)
        self.failing = False
        return changes


@jobs_app.command("tail")
def jobs_tail(
    type: Annotated[str | None, typer.Option(help="Only jobs of this type")] = None,
    status: Annotated[str | None, typer.Option(help="Only changes into this status")] = None,
    interval: Annotated[
        float, typer.Option(min=0.1, max=60, help="Seconds between looks at the jobs")
    ] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="One job JSON per line.")] = False,
) -> None:
    """Follow new jobs and changes of status, until Ctrl-C. Each look shows the jobs as they
    are then: two changes of one job between two looks show as one line."""
    filters = Filters.parse({k: v for k, v in {"type": type, "status": status}.items() if v})
    with connected() as warren:
        with warren.engine.connect() as conn:
            start = database_now(conn)
        follower = Follower(start, status=filters.status, type=filters.type)
        typer.echo(f"following changes from {start.astimezone():%H:%M:%S}; Ctrl-C stops", err=True)
        tail = Tail(warren, follower)
        for _ in every(interval):
            for change in tail.poll():
                line = json.dumps(job_json(change.job), default=str) if as_json else None
                typer.echo(line or change_line(change))
