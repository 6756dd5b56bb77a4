"""A development mail catcher, so that the first `send-email` job on a fresh machine completes:
`WARREN_SMTP_URL` defaults to smtp://127.0.0.1:1025, where usually nothing listens.

`warren run` starts it (as Django's console backend or a bundled Mailpit would serve): a real
SMTP server (aiosmtpd) that accepts every message, logs one line for it and keeps it in the
mailbox that `warren mail` reads (`service.mailbox`). It forwards nothing.

It only stands in for a server that is not there: the URL must name this machine (127.0.0.1
or localhost) over plain SMTP without credentials or STARTTLS, which it could not honour, and
nothing may listen on the port yet. A real server, local or not, is always left alone.
"""

import logging
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller

from service.mailbox import Mailbox
from service.printable import printable
from service.settings import Settings

log = logging.getLogger("warren.devmail")

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})


def local_address(smtp_url: str) -> tuple[str, int] | None:
    """The (host, port) a catcher could serve for `smtp_url`, or None when the URL names
    another machine, TLS, STARTTLS or credentials."""
    parts = urlsplit(smtp_url)
    starttls = parse_qs(parts.query).get("starttls", ["false"])[-1].lower()
    if parts.scheme != "smtp" or parts.hostname not in LOCAL_HOSTS or parts.username:
        return None
    if starttls in ("1", "true", "yes"):
        return None
    try:
        return parts.hostname, parts.port or 25
    except ValueError:  # a port that is not a number: send-email reports the bad URL
        return None


def listening(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout):
            return True
    except OSError:
        return False


class KeepEveryMessage:
    """aiosmtpd handler: accept each message, keep it in the mailbox and log one line."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        try:
            mail = self.mailbox.save(envelope.mail_from, list(envelope.rcpt_tos), content)
        except OSError as exc:  # 4xx: the sender retries, as it would with a full disk
            log.warning("could not keep a message in %s: %s", self.mailbox.directory, exc)
            return "451 Requested action aborted: could not keep the message"
        log.info(
            "mail #%d from %s to %s, subject %r (warren mail show %d)",
            mail.number,
            printable(mail.sender),
            printable(", ".join(mail.recipients)),
            mail.subject,
            mail.number,
        )
        return "250 OK: caught by Warren's development mail catcher"


@dataclass
class MailCatcher:
    """A running catcher; `stop()` closes its port, and may be called again."""

    host: str
    port: int
    mailbox: Mailbox
    controller: Controller
    stopped: bool = False

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.controller.stop()
            log.info("mail catcher on %s:%d stopped", self.host, self.port)


def start(settings: Settings) -> MailCatcher | None:
    """Start a catcher on `settings.smtp_url` if one should stand in there (see above) and
    keep its mail in `settings.dev_mail_dir`; None when it should not, or could not start."""
    address = local_address(settings.smtp_url)
    if address is None:
        return None
    host, port = address
    if listening(host, port):
        log.info("an SMTP server already listens on %s:%d; mail goes there", host, port)
        return None
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd: a line per command
    mailbox = Mailbox(settings.dev_mail_dir)
    controller = Controller(
        KeepEveryMessage(mailbox), hostname=host, port=port, server_hostname="localhost"
    )
    try:
        controller.start()
    except (OSError, TimeoutError) as exc:
        log.warning("could not start a mail catcher on %s:%d: %s", host, port, exc)
        return None
    return MailCatcher(host, port, mailbox, controller)
