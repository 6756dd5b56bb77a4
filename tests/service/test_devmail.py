"""The development mail catcher of `warren run`: a real SMTP server on 127.0.0.1 that keeps
every message for `warren mail`, and only where no server listens."""

import logging
import smtplib
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from service import devmail
from service.mailbox import Mailbox
from service.settings import Settings
from tests.helpers import free_port


def catcher_settings(mail_dir: Path, port: int) -> Settings:
    return Settings(smtp_url=f"smtp://127.0.0.1:{port}", dev_mail_dir=str(mail_dir))


def send(port: int, subject: str, to: str = "user@example.com", bcc: str | None = None) -> dict:
    message = EmailMessage()
    message["From"] = "warren@localhost"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Hello!\n")
    recipients = [to, bcc] if bcc else [to]
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        return smtp.send_message(message, to_addrs=recipients)


@pytest.fixture
def start_catcher(tmp_path: Path) -> Iterator:
    """`start_catcher(port)`: a catcher keeping mail in tmp_path/mail; stopped at the end."""
    started: list[devmail.MailCatcher] = []

    def start(port: int) -> devmail.MailCatcher | None:
        catcher = devmail.start(catcher_settings(tmp_path / "mail", port))
        if catcher is not None:
            started.append(catcher)
        return catcher

    yield start
    for catcher in started:
        catcher.stop()


def test_a_message_sent_over_smtp_is_kept_and_logged_in_one_line(
    start_catcher, tmp_path, caplog
) -> None:
    port = free_port()
    assert start_catcher(port) is not None
    caplog.set_level(logging.INFO, logger="warren.devmail")

    refused = send(port, "Test", bcc="audit@example.com")

    assert refused == {}
    [mail] = Mailbox(tmp_path / "mail").list()
    assert mail.number == 1
    assert mail.sender == "warren@localhost"
    assert mail.recipients == ["user@example.com", "audit@example.com"]  # Bcc included
    assert mail.subject == "Test"
    assert mail.text() == "Hello!\n"
    assert mail.path == tmp_path / "mail" / "000001.eml"
    [line] = [r.getMessage() for r in caplog.records if r.name == "warren.devmail"]
    assert "warren@localhost" in line and "user@example.com" in line and "'Test'" in line


def test_stopping_frees_the_port_and_a_new_catcher_numbers_on(start_catcher, tmp_path) -> None:
    port = free_port()
    first = start_catcher(port)
    send(port, "one")
    first.stop()
    assert not devmail.listening("127.0.0.1", port)
    with pytest.raises(ConnectionRefusedError):
        send(port, "lost")

    start_catcher(port)
    send(port, "two")

    mails = Mailbox(tmp_path / "mail").list()
    assert [(m.number, m.subject) for m in mails] == [(1, "one"), (2, "two")]


class Recording:
    """A real server someone else runs: it keeps the subjects it received."""

    def __init__(self) -> None:
        self.subjects: list[str] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.subjects.append(message_from_bytes(envelope.content, policy=policy.default)["Subject"])
        return "250 OK"


def test_a_server_already_listening_is_left_alone(start_catcher, tmp_path) -> None:
    port = free_port()
    real = Recording()
    server = Controller(real, hostname="127.0.0.1", port=port)
    server.start()
    try:
        assert start_catcher(port) is None
        send(port, "for the real server")
    finally:
        server.stop()

    assert real.subjects == ["for the real server"]
    assert Mailbox(tmp_path / "mail").list() == []


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("smtp://127.0.0.1:1025", ("127.0.0.1", 1025)),
        ("smtp://localhost:2525", ("localhost", 2525)),
        ("smtp://localhost", ("localhost", 25)),
        ("smtp://127.0.0.1:1025?starttls=false", ("127.0.0.1", 1025)),
        ("smtp://mail.example.com:1025", None),
        ("smtp://10.0.0.5:1025", None),
        ("smtps://127.0.0.1:1025", None),
        ("smtp://127.0.0.1:1025?starttls=true", None),
        ("smtp://user:secret@127.0.0.1:1025", None),
        ("smtp://127.0.0.1:port", None),
    ],
)
def test_only_plain_smtp_on_this_machine_gets_a_catcher(url, address) -> None:
    assert devmail.local_address(url) == address
