"""The mail that the development catcher (`service.devmail`) caught: one `.eml` file per
message, numbered in arrival order, in `WARREN_DEV_MAIL_DIR`. The catcher writes them;
`warren mail` lists and prints them.

Plain files rather than a table: a developer can open them in any mail client or with `cat`,
and catching mail never touches the job database.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path

from service.errors import NotFound

_FILE_NAME = re.compile(r"^(\d+)\.eml$")


@dataclass(frozen=True)
class CaughtMail:
    """One caught message as `warren mail` lists it: who sent it to whom, and its subject."""

    number: int
    path: Path
    sender: str
    recipients: list[str]
    subject: str
    received_at: datetime

    def message(self) -> EmailMessage:
        return _parse(self.path.read_bytes())

    def text(self) -> str:
        """The body a reader sees first: the plain-text part, else the HTML one."""
        body = self.message().get_body(preferencelist=("plain", "html"))
        if body is None:
            return ""
        try:
            return body.get_content()
        except (LookupError, ValueError):
            # A charset Python cannot decode with (x-nonsense, idna): a catcher shows what it
            # caught, so as UTF-8, its errors replaced.
            return body.get_payload(decode=True).decode(errors="replace")


class Mailbox:
    """A directory of caught messages."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def save(self, sender: str, recipients: list[str], content: bytes) -> CaughtMail:
        """Keep one message as it arrived, its SMTP envelope as `Return-Path` and
        `Delivered-To` headers (a Bcc recipient appears only there); line ends made `\\n`.
        Returns it with its number: the next after the highest one kept."""
        self.directory.mkdir(parents=True, exist_ok=True)
        envelope = [f"Return-Path: <{sender}>", *(f"Delivered-To: {r}" for r in recipients)]
        data = "".join(f"{line}\n" for line in envelope).encode()
        data += content.replace(b"\r\n", b"\n").rstrip(b"\n") + b"\n"
        number = max(self._files(), default=0) + 1
        while True:
            path = self.directory / f"{number:06d}.eml"
            try:
                with path.open("xb") as file:  # never overwrite: another catcher may write
                    file.write(data)
            except FileExistsError:
                number += 1
                continue
            return _read(number, path)

    def list(self) -> list[CaughtMail]:
        """Every caught message, oldest first; none when the directory does not exist."""
        return [_read(number, path) for number, path in sorted(self._files().items())]

    def get(self, number: int) -> CaughtMail:
        path = self._files().get(number)
        if path is None:
            raise NotFound(f"no caught mail #{number} in {self.directory}")
        return _read(number, path)

    def _files(self) -> dict[int, Path]:
        if not self.directory.is_dir():
            return {}
        found = ((_FILE_NAME.match(path.name), path) for path in self.directory.iterdir())
        # a directory or a FIFO named like a message is not one: reading it fails or blocks
        return {int(match[1]): path for match, path in found if match and path.is_file()}


def _parse(data: bytes) -> EmailMessage:
    return message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def _read(number: int, path: Path) -> CaughtMail:
    message = _parse(path.read_bytes())
    envelope_from = str(message.get("Return-Path", "")).strip("<> ")
    delivered = [str(value) for value in message.get_all("Delivered-To", [])]
    written_to = [address for _, address in getaddresses(message.get_all("To", []))]
    return CaughtMail(
        number=number,
        path=path,
        sender=str(message.get("From", "")) or envelope_from,
        recipients=delivered or written_to,
        subject=str(message.get("Subject", "")),
        received_at=datetime.fromtimestamp(path.stat().st_mtime, UTC),
    )
