"""The command line's shared parts: its Typer apps, settings, the Warren client, and
output (tables, JSON, one-line errors)."""

import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from typing import Annotated, Any, NoReturn

import pydantic
import sqlalchemy as sa
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from service.client import Warren
from service.enqueue import message_of
from service.errors import ValidationFailed, WarrenError
from service.printable import printable
from service.settings import Settings
from service.strict import json_value

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
mail_app = typer.Typer(help="Mail that `warren run`'s development mail catcher caught.")


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"warren {version('warren')}")
        raise typer.Exit()


@app.callback()
def _options(
    _: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Options of `warren` itself, before a command."""


app.add_typer(db_app, name="db")
app.add_typer(jobs_app, name="jobs")
app.add_typer(dlq_app, name="dlq")
app.add_typer(mail_app, name="mail")


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# -- helpers ----------------------------------------------------------------------------------


def load_settings() -> Settings:
    try:
        return Settings()
    except pydantic.ValidationError as exc:
        details = "; ".join(
            f"WARREN_{'_'.join(map(str, e['loc'])).upper()}: {message_of(e)}" for e in exc.errors()
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
    say_error(reason)
    raise typer.Exit(code)


def named_as_options(exc: ValidationFailed, options: dict[str, str]) -> ValidationFailed:
    """`exc` with each detail's field named as the option that set it (`options` maps a field
    to its option), so that an error names what the user typed; a field of the payload keeps
    its path (`payload.to`), which names a key of `--payload`'s JSON."""
    details = [{**d, "field": options.get(d["field"], d["field"])} for d in exc.details]
    return ValidationFailed(exc.message, details)


def say_error(reason: str) -> None:
    """`reason` as the one `error:` line on stderr, its line breaks and runs of spaces as one."""
    typer.echo(f"error: {printable(' '.join(reason.split()))}", err=True)


def describe(exc: Exception) -> str:
    """One line for an error a user may cause or meet; a detail that only repeats the
    message (a lone unknown job type) is left out."""
    if isinstance(exc, WarrenError):
        details = "; ".join(
            f"{d.get('field')}: {d.get('message')}"
            for d in exc.details
            if d.get("message") != exc.message
        )
        return f"{exc.message} ({details})" if details else exc.message
    if isinstance(exc, sa.exc.OperationalError):
        reason = str(exc.orig or exc).strip().splitlines()
        return f"database unreachable ({reason[0] if reason else type(exc).__name__})"
    if isinstance(exc, sa.exc.SQLAlchemyError):
        return f"database error ({str(exc).strip().splitlines()[0]})"
    return f"{type(exc).__name__}: {exc}"


def parse_payload(text: str) -> dict[str, Any]:
    """`--payload`: a JSON object (RFC 8259's JSON, `service.strict`) within the size the API
    takes (`WARREN_MAX_PAYLOAD_BYTES`)."""
    limit = load_settings().max_payload_bytes
    if len(text.encode(errors="surrogateescape")) > limit:
        fail(f"--payload is longer than {limit} bytes (WARREN_MAX_PAYLOAD_BYTES)")
    try:
        payload = json_value(text)
    except ValueError as exc:
        fail(f"--payload is not valid JSON: {exc}")
    if not isinstance(payload, dict):
        fail("--payload must be a JSON object")
    return payload


def priority_of(text: str | None) -> int | str | None:
    """`--priority` as a request writes it: the digits 0-9 as a number; anything else (high,
    normal, low, or a mistake such as `٣` or ` 3`) as text, for validation to judge."""
    if text is not None and text.isascii() and text.isdigit():
        return int(text)
    return text


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


class Rows(Table):
    """A table whose text cells are shown as written: rich would read `[/bold]` in a payload
    or an error message as markup (and fail on it), and a terminal would act on its escape
    sequences (`service.printable`)."""

    def add_row(self, *cells: Any, **options: Any) -> None:
        shown = (Text(printable(cell)) if isinstance(cell, str) else cell for cell in cells)
        super().add_row(*shown, **options)


def table(*columns: str, title: str | None = None) -> Rows:
    grid = Rows(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        grid.add_column(column, no_wrap=column in ("id", "queue", "type"))
    return grid


def every(interval: float) -> Iterator[None]:
    """Yield at once, then every `interval` seconds, until SIGINT (Ctrl-C) or SIGTERM: the
    loop of a command that follows something. A signal during a round ends the loop after
    it, so the command can finish its output and exit 0."""
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in STOP_SIGNALS}
    try:
        while not stop.is_set():
            yield
            stop.wait(interval)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
