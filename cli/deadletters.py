"""The dead-letter queue for admin scripts: `warren dlq list | groups | replay | purge`."""

import uuid
from typing import Annotated, Any

import typer

from api.views import (
    dead_letter_group_json,
    dead_letter_json,
    timestamp,
)
from cli.common import (
    JsonOption,
    compact,
    connected,
    dlq_app,
    fail,
    print_json,
    show,
    table,
)
from service.deadletters import MAX_ID

# -- dead letters -----------------------------------------------------------------------------


def selection(job_ids: list[str], fingerprint: str | None, everything: bool) -> dict[str, Any]:
    """The one selection a replay or purge applies to, as the HTTP body would say it."""
    given = [bool(job_ids), fingerprint is not None, everything]
    if sum(given) != 1:
        fail("name the dead letters: job ids, --fingerprint FP, or --all", code=2)
    if job_ids:
        for job_id in job_ids:
            try:
                uuid.UUID(job_id)
            except ValueError:
                fail(f"{job_id!r} is not a job id (a UUID, as warren dlq list shows)", code=2)
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
    before: Annotated[
        int | None, typer.Option(min=1, max=MAX_ID, help="Page on: the last id shown.")
    ] = None,
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
