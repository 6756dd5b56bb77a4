"""`warren prune`: delete finished jobs and dead letters past their retention, or count them."""

from typing import Annotated

import typer

from cli.common import JsonOption, app, connected, print_json, show, table


@app.command()
def prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete completed, cancelled and failed jobs and dead letters past WARREN_RETAIN_*_DAYS."""
    with connected() as warren:
        counts = warren.prune(dry_run=dry_run)
    if as_json:
        print_json({"dryRun": dry_run, "wouldDelete" if dry_run else "deleted": counts})
        return
    rows = table("kind", "would delete" if dry_run else "deleted")
    for kind, n in counts.items():
        rows.add_row(kind, str(n))
    show(rows)
