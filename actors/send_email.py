"""Job type "send-email": hand one message to the SMTP server in `WARREN_SMTP_URL`.

The server's reply decides what happens next: a 5xx reply means the message will never be
accepted as it is, so the job fails at once; a 4xx reply or a network error may pass, so the
job retries. Inside a job the `Message-ID` comes from the job id, so when a retry resends a
message the server had in fact accepted, receivers can recognise the duplicate.

`WARREN_SMTP_URL` is `smtp://host:port` (plain, optionally `?starttls=true`) or
`smtps://host:port` (TLS from the first byte), with optional `user:password@`.
"""

import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from html.parser import HTMLParser
from typing import Annotated, Any
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, EmailStr, Field
from pydantic.alias_generators import to_camel

from service.errors import PermanentError
from service.registry import current_job, current_settings, job_type

CONNECT_TIMEOUT_SECONDS = 30
MAX_RECIPIENTS = 100  # what most relays accept per message (RFC 5321 section 4.5.3.1.8)

# An RFC 5322 dot-atom address on any host name. The sender may be a local name such as
# warren@localhost, which the relay accepts but email-validator rejects as special-use.
_SENDER = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)
_TAG = re.compile(r"<[A-Za-z!/][^>]*>")


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _sender(value: str) -> str:
    if not _SENDER.match(value):
        raise ValueError(f"must be an address such as warren@localhost, not {value!r}")
    return value


def _one_line(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    if "\r" in value or "\n" in value:
        raise ValueError("must be a single line")
    return value


Recipients = Annotated[
    list[EmailStr], BeforeValidator(_as_list), Field(min_length=1, max_length=MAX_RECIPIENTS)
]


class SendEmail(BaseModel):
    """The payload: one message. `to` is an address or a list of them; JSON is camelCase."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    to: Recipients
    subject: Annotated[str, AfterValidator(_one_line)]
    body: str
    sender: Annotated[str, AfterValidator(_sender)] = Field(
        default="warren@localhost", alias="from"
    )
    reply_to: EmailStr | None = None


class EmailDeferred(Exception):
    """The server could not take the message now (4xx reply, network error): the job retries."""


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to connect, parsed from `WARREN_SMTP_URL`."""

    host: str
    port: int
    implicit_tls: bool = False
    starttls: bool = False
    user: str | None = None
    password: str | None = None


def parse_smtp_url(url: str) -> SmtpServer:
    """`smtp[s]://[user:password@]host[:port][?starttls=true]` -> SmtpServer."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(f"WARREN_SMTP_URL must look like smtp://host:port, not {url!r}")
    starttls = parse_qs(parts.query).get("starttls", ["false"])[-1].lower()
    return SmtpServer(
        host=parts.hostname,
        port=parts.port or (465 if parts.scheme == "smtps" else 25),
        implicit_tls=parts.scheme == "smtps",
        starttls=starttls in ("1", "true", "yes"),
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class _TextOfHtml(HTMLParser):
    """Collects the readable text of an HTML body for its plain-text alternative."""

    _BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})
    _HIDDEN = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self._HIDDEN:
            self.hidden += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self.hidden = max(0, self.hidden - 1)

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def _job_id() -> str | None:
    try:
        return current_job().id
    except RuntimeError:
        return None


def build_message(payload: SendEmail, job_id: str | None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = payload.sender
    message["To"] = ", ".join(payload.to)
    if payload.reply_to:
        message["Reply-To"] = payload.reply_to
    message["Subject"] = payload.subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = f"<{job_id}@warren>" if job_id else make_msgid(domain="warren")
    if _TAG.search(payload.body):
        message.set_content(html_to_text(payload.body))
        message.add_alternative(payload.body, subtype="html")
    else:
        message.set_content(payload.body)
    return message


def _connect(server: SmtpServer) -> smtplib.SMTP:
    context = ssl.create_default_context()
    if server.implicit_tls:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            server.host, server.port, timeout=CONNECT_TIMEOUT_SECONDS, context=context
        )
    else:
        smtp = smtplib.SMTP(server.host, server.port, timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        if server.starttls:
            smtp.starttls(context=context)
        if server.user:
            smtp.login(server.user, server.password or "")
    except BaseException:
        smtp.close()
        raise
    return smtp


def _quit(smtp: smtplib.SMTP) -> None:
    """Say goodbye without letting a failed QUIT turn a delivered message into a retry."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _reply(code: int, text: bytes | str) -> str:
    return f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"


@job_type("send-email", payload=SendEmail, max_attempts=5, timeout_seconds=60)
def send_email(payload: SendEmail) -> dict[str, Any]:
    """Send the message; return `{"accepted": [...], "messageId": ...}`, plus `refused`
    (address -> server reply) when the server took the message for only some recipients."""
    try:
        server = parse_smtp_url(current_settings().smtp_url)
    except ValueError as exc:
        raise PermanentError(str(exc)) from exc
    message = build_message(payload, _job_id())
    where = f"{server.host}:{server.port}"
    try:
        smtp = _connect(server)
        try:
            refused = smtp.send_message(message, payload.sender, list(payload.to))
        finally:
            _quit(smtp)
    except smtplib.SMTPRecipientsRefused as exc:
        replies = {address: _reply(*reply) for address, reply in exc.recipients.items()}
        text = f"{where} refused every recipient: {replies}"
        if all(code >= 500 for code, _ in exc.recipients.values()):
            raise PermanentError(text) from exc
        raise EmailDeferred(text) from exc
    except smtplib.SMTPResponseException as exc:
        text = f"{where} replied {_reply(exc.smtp_code, exc.smtp_error)}"
        if exc.smtp_code >= 500:
            raise PermanentError(text) from exc
        raise EmailDeferred(text) from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise PermanentError(f"{where}: {exc}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise EmailDeferred(f"could not deliver via {where}: {exc or type(exc).__name__}") from exc

    result: dict[str, Any] = {
        "accepted": [address for address in payload.to if address not in refused],
        "messageId": message["Message-ID"],
    }
    if refused:
        result["refused"] = {address: _reply(*reply) for address, reply in refused.items()}
    return result
