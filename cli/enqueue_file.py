"""`warren enqueue --file jobs.ndjson`: one enqueue request (the JSON `POST /jobs` takes) per
line, enqueued in batches through the client's batch path, with a progress bar on a terminal.

A line that is not a valid request is refused with its line number and reason; every other
line is enqueued. Each batch is stored all or nothing, so when PostgreSQL fails midway the
lines before the failed batch are enqueued and none after: the summary says which.
"""

import re
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from cli.common import describe, fail, print_json
from service.client import Warren
from service.errors import UnknownJobType, ValidationFailed
from service.strict import json_value

#: Lines per `Warren.submit` call: one INSERT and one publish round each.
BATCH = 500
#: How far past the payload limit a line may run without an end before the read stops: a
#: stream with no newlines (`/dev/zero`, a binary file) is not NDJSON, and would never end.
UNENDING = 64 * 1024 * 1024
_ITEM = re.compile(r"^jobs\[(\d+)\]\.?(.*)$", re.DOTALL)


@dataclass
class Summary:
    """What became of the lines: jobs created, lines whose idempotency key was seen before,
    and refused lines as `(line number, reason)`."""

    enqueued: int = 0
    existing: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "enqueued": self.enqueued,
            "existing": self.existing,
            "refused": [{"line": line, "reason": reason} for line, reason in self.refused],
        }


class UnendingLine(Exception):
    """Line `number` ran UNENDING bytes past the payload limit without a newline."""

    def __init__(self, number: int) -> None:
        super().__init__(number)
        self.number = number


def numbered_lines(stream: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None, int]]:
    """`(line number, line, bytes read)`; the line is None when longer than `limit` bytes,
    which is skipped without holding it in memory. Raises UnendingLine for a line that has no
    end within UNENDING bytes past the limit."""
    number = 0
    while raw := stream.readline(limit + 1):
        number += 1
        size = len(raw)
        if len(raw) > limit and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                if size > limit + UNENDING:
                    raise UnendingLine(number)
                raw = stream.readline(65536)
                size += len(raw)
            yield number, None, size
        else:
            yield number, raw, size


def parse_line(raw: bytes | None, limit: int) -> dict[str, Any] | str:
    """The request on a line, or why it is refused."""
    if raw is None:
        return f"longer than {limit} bytes (WARREN_MAX_PAYLOAD_BYTES)"
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    try:
        body = json_value(text)
    except ValueError as exc:
        return f"not JSON ({exc})"
    if not isinstance(body, dict):
        return "not a JSON object"
    return body


def submit(warren: Warren, items: list[tuple[int, dict[str, Any]]], summary: Summary) -> None:
    """Enqueue `items` (line number, request) as one batch; when some are invalid (nothing was
    stored then), refuse those and submit the rest again."""
    while items:
        try:
            outcomes = warren.submit([body for _, body in items])
        except (ValidationFailed, UnknownJobType) as exc:
            reasons = refusals(exc)
            if not reasons:
                raise
            summary.refused += [(items[i][0], "; ".join(r)) for i, r in sorted(reasons.items())]
            items = [item for i, item in enumerate(items) if i not in reasons]
            continue
        created = sum(outcome.created for outcome in outcomes)
        summary.enqueued += created
        summary.existing += len(outcomes) - created
        return


def refusals(exc: ValidationFailed | UnknownJobType) -> dict[int, list[str]]:
    """The reasons of a batch's refusal by item index, from its details (`jobs[3].payload.to`)."""
    reasons: dict[int, list[str]] = {}
    for detail in exc.details:
        found = _ITEM.match(str(detail.get("field", "")))
        if found:
            where = f"{found.group(2)}: " if found.group(2) else ""
            reasons.setdefault(int(found.group(1)), []).append(f"{where}{detail.get('message')}")
    return reasons


def enqueue_stream(
    warren: Warren, stream: BinaryIO, total: int | None, progress: Progress | None
) -> Summary:
    """Read, check and enqueue every line of `stream`, BATCH lines at a time."""
    limit = warren.settings.max_payload_bytes
    summary = Summary()
    task = progress.add_task("enqueueing", total=total) if progress else None
    batch: list[tuple[int, dict[str, Any]]] = []
    try:
        for number, raw, size in numbered_lines(stream, limit):
            if raw is not None and not raw.strip():
                pass  # a blank line: nothing to enqueue
            elif isinstance(body := parse_line(raw, limit), str):
                summary.refused.append((number, body))
            else:
                batch.append((number, body))
            if len(batch) >= BATCH:
                submit_or_fail(warren, batch, summary)
                batch = []
            if progress is not None and task is not None:
                progress.update(task, advance=size)
    except UnendingLine as exc:
        submit_or_fail(warren, batch, summary)
        fail(
            f"line {exc.number} has no end within {UNENDING // 2**20} MiB past"
            " WARREN_MAX_PAYLOAD_BYTES: not an NDJSON file; the jobs of lines before it were"
            f" enqueued ({summary.enqueued} new), none from line {exc.number} on"
        )
    submit_or_fail(warren, batch, summary)
    summary.refused.sort()
    return summary


def submit_or_fail(warren: Warren, batch: list[tuple[int, dict[str, Any]]], summary: Summary):
    try:
        submit(warren, batch, summary)
    except Exception as exc:  # the database or broker failed: say what is stored
        fail(
            f"{describe(exc)}; the jobs of lines before {batch[0][0]} were enqueued"
            f" ({summary.enqueued} new), none from line {batch[0][0]} on"
        )


def progress_bar(total: int | None) -> Progress | nullcontext[None]:
    """A bar on stderr when it is a terminal (bytes read of a file; a pulse for stdin)."""
    if not sys.stderr.isatty():
        return nullcontext()
    columns = [TextColumn("enqueueing"), BarColumn()]
    if total is not None:
        columns += [TaskProgressColumn(), DownloadColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=Console(stderr=True), transient=True)


def enqueue_file(warren: Warren, path: str, as_json: bool) -> None:
    """`warren enqueue --file PATH` (`-` reads stdin): exits 1 when any line was refused."""
    try:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    with stream:
        total = None if path == "-" or not stream.seekable() else stream.seek(0, 2)
        if total is not None:
            stream.seek(0)
        with progress_bar(total) as progress:
            summary = enqueue_stream(warren, stream, total, progress)
    report(summary, as_json)
    if summary.refused:
        raise typer.Exit(1)


def report(summary: Summary, as_json: bool) -> None:
    if as_json:
        print_json(summary.as_json())
        return
    existing = f" ({summary.existing} more already existed)" if summary.existing else ""
    typer.echo(
        f"enqueued {counted(summary.enqueued, 'job')}{existing};"
        f" refused {counted(len(summary.refused), 'line')}"
    )
    for line, reason in summary.refused:
        typer.echo(f"line {line}: {' '.join(reason.split())}", err=True)


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
