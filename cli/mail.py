"""Mail caught by `warren run`'s development mail catcher: `warren mail [list]`, `mail show N`.

It reads the files in `WARREN_DEV_MAIL_DIR` (see `service.mailbox`), so it needs neither the
database nor RabbitMQ, and works whether or not `warren run` is still running.
"""

from typing import Annotated, Any

import typer

from api.views import timestamp
from cli.common import JsonOption, load_settings, mail_app, print_json, show, table
from service.mailbox import CaughtMail, Mailbox
from service.printable import printable


def mailbox() -> Mailbox:
    return Mailbox(load_settings().dev_mail_dir)


def mail_json(mail: CaughtMail) -> dict[str, Any]:
    return {
        "number": mail.number,
        "from": mail.sender,
        "to": mail.recipients,
        "subject": mail.subject,
        "receivedAt": timestamp(mail.received_at),
        "file": str(mail.path),
    }


@mail_app.callback(invoke_without_command=True)
def mail(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Mail that `warren run`'s development mail catcher caught; `list` when no command."""
    if ctx.invoked_subcommand is None:
        mail_list(as_json)


@mail_app.command("list")
def mail_list(as_json: JsonOption = False) -> None:
    """Caught messages, oldest first: number, time, from, to, subject."""
    box = mailbox()
    caught = box.list()
    if as_json:
        print_json({"count": len(caught), "messages": [mail_json(m) for m in caught]})
        return
    if not caught:
        typer.echo(f"no mail caught yet (in {box.directory})")
        return
    rows = table("#", "received", "from", "to", "subject")
    for m in caught:
        received = m.received_at.strftime("%Y-%m-%d %H:%M:%S")
        rows.add_row(str(m.number), received, m.sender, ", ".join(m.recipients), m.subject)
    show(rows)


@mail_app.command("show")
def mail_show(
    number: Annotated[int, typer.Argument(metavar="N", help="The number `list` shows")],
    as_json: JsonOption = False,
) -> None:
    """One caught message: its sender, recipients, subject and text (its control characters
    escaped; `--json` has them as JSON escapes)."""
    caught = mailbox().get(number)
    text = caught.text()  # before any line is printed, should it fail
    if as_json:
        print_json({**mail_json(caught), "text": text})
        return
    typer.echo(f"From: {printable(caught.sender)}")
    typer.echo(f"To: {printable(', '.join(caught.recipients))}")
    typer.echo(f"Subject: {printable(caught.subject)}")
    typer.echo(f"Received: {timestamp(caught.received_at)}")
    typer.echo(f"File: {caught.path}\n")
    typer.echo(printable(text.rstrip("\n"), lines=True))
