"""Job type "send-email": hand one message to the SMTP server in `WARREN_SMTP_URL`.

The server's reply decides what happens next: a 5xx reply means the message will never be
accepted as it is, so the job fails at once; a 4xx reply or a network error may pass, so the
job retries. Inside a job the `Message-ID` comes from the job id, so when a retry resends a
message the server had in fact accepted, receivers can recognise the duplicate.

No payload value can add a header or a recipient. Every header value is checked at enqueue:
no line breaks of any kind, no control characters, no encoded word in an address. The subject
is literal text: `=?utf-8?q?...?=` in it is written re-encoded, so receivers read back those
very characters and never a decoded CR LF. The envelope comes from the validated payload, not
from the headers. A message that cannot be built or written fails the job at once.

`WARREN_SMTP_URL` is `smtp://host:port` (plain, optionally `?starttls=true`) or
`smtps://host:port` (TLS from the first byte), with optional `user:password@`.

The conversation runs through `service.interruptible`, so that a cancel stops the job within a
second even while a server keeps it waiting.
"""

import contextlib
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email import policy
from email.errors import MessageError
from email.header import Header
from email.headerregistry import HeaderRegistry, UniqueUnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import formatdate, make_msgid
from html.parser import HTMLParser
from typing import Annotated, Any, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, EmailStr, Field
from pydantic.alias_generators import to_camel

from service import interruptible, storable
from service.errors import PermanentError
from service.registry import current_job, current_settings, job_type

CONNECT_TIMEOUT_SECONDS = 30
MAX_RECIPIENTS = 100  # what most relays accept per message (RFC 5321 section 4.5.3.1.8)
MAX_REPLY_LINE = 8192  # smtplib's own bound on a line
MAX_REPLY_BYTES = 65_536  # a reply, all its lines: an EHLO reply is some hundred bytes

# An RFC 5322 dot-atom address on any host name. The sender may be a local name such as
# warren@localhost, which the relay accepts but email-validator rejects as special-use.
_SENDER = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_TAG = re.compile(r"<[A-Za-z!/][^>]*>")
# What no header value may hold. CR and LF end a header line on the wire; Python's email
# package also ends lines at \v \f \x1c-\x1e \x85 U+2028 U+2029 (str.splitlines), as do some
# receivers; NUL and the other C0 and C1 controls are not header text (RFC 5322 section 2.2);
# a lone surrogate cannot be encoded at all. A tab is folding white space, which is allowed.
_NOT_HEADER_TEXT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# What no body may hold: NUL is not text (RFC 5322) and a lone surrogate cannot be encoded.
_NOT_BODY_TEXT = re.compile(r"[\x00\ud800-\udfff]")


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _refuse(found: re.Match[str], what: str) -> NoReturn:
    raise ValueError(f"must not contain {what}: found {found.group()!r} at {found.start()}")


def _header_text(value: Any) -> Any:
    """Refuse a value that could end a header line or could never be written; it is checked
    as given, before an address type strips white space or a display name from it."""
    if isinstance(value, str) and (found := _NOT_HEADER_TEXT.search(value)):
        _refuse(found, "line breaks or control characters")
    return value


def _body_text(value: str) -> str:
    if found := _NOT_BODY_TEXT.search(value):
        _refuse(found, "NUL or unpaired surrogates")
    return value


def _no_encoded_word(value: str) -> str:
    """RFC 2047 forbids encoded words in an address, but Python's address parser decodes them
    anyway: into CR LF (a failure at run time) or into another address than the envelope's."""
    if "=?" in value:
        raise ValueError(f"must not contain an encoded word ('=?'): {value!r}")
    return value


def _sender(value: str) -> str:
    if not _SENDER.fullmatch(value):
        raise ValueError(f"must be an address such as warren@localhost, not {value!r}")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


# _header_text sees the raw input: EmailStr strips white space and drops a display name.
Address = Annotated[EmailStr, BeforeValidator(_header_text), AfterValidator(_no_encoded_word)]
Recipients = Annotated[
    list[Address], BeforeValidator(_as_list), Field(min_length=1, max_length=MAX_RECIPIENTS)
]
Sender = Annotated[
    str, BeforeValidator(_header_text), AfterValidator(_sender), AfterValidator(_no_encoded_word)
]


class SendEmail(BaseModel):
    """The payload: one message. `to` is an address or a list of them; JSON is camelCase.
    Every value is checked here, at enqueue, so that a message that could never be sent is a
    422 then instead of a job that fails on every attempt."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    to: Recipients
    subject: Annotated[str, BeforeValidator(_header_text), AfterValidator(_not_blank)]
    body: Annotated[str, AfterValidator(_body_text)]
    sender: Sender = Field(default="warren@localhost", alias="from")
    reply_to: Address | None = None


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


class LiteralText(UniqueUnstructuredHeader):
    """An unstructured header whose value is the text as given, never decoded.

    The stock header parses `=?charset?q?...?=` in the value as an RFC 2047 encoded word and
    writes what it decodes to, CR LF included: a subject could then add headers and a body.
    Here such a value is written as encoded words of its literal text instead, so receivers
    decode it back to exactly the characters of the payload. Any other value (nothing in it
    can be decoded) is folded as usual."""

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        kwds["parse_tree"] = None if "=?" in value else cls.value_parser(value)
        kwds["decoded"] = value

    def fold(self, *, policy: Policy) -> str:
        if "=?" not in self:
            return super().fold(policy=policy)
        encoded = Header(
            str(self), "utf-8", maxlinelen=policy.max_line_length, header_name=self.name
        ).encode(linesep=policy.linesep)
        return f"{self.name}: {encoded}{policy.linesep}"


def _smtp_policy() -> Policy:
    """`policy.SMTP` (CRLF, lines folded at 78) with the subject taken as literal text."""
    headers = HeaderRegistry()
    headers.map_to_type("subject", LiteralText)
    return policy.SMTP.clone(header_factory=headers)


POLICY = _smtp_policy()


def build_message(payload: SendEmail, job_id: str | None) -> EmailMessage:
    """The message for a validated payload; its headers are the payload's values and only
    those, each written by POLICY."""
    message = EmailMessage(policy=POLICY)
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


def _compose(payload: SendEmail, job_id: str | None) -> EmailMessage:
    """build_message, its failure made permanent: the message depends on nothing but the
    payload, so one that cannot be built now never will be, however often the job retries."""
    try:
        return build_message(payload, job_id)
    except (ValueError, TypeError, MessageError) as exc:
        raise PermanentError(f"cannot compose the message: {exc}") from exc


class _Replies:
    """The server's side of the conversation as `smtplib` reads it, each reply at most
    `MAX_REPLY_BYTES` and each line at most `MAX_REPLY_LINE`. smtplib bounds a line but not
    the lines of a reply, so a server could send `250-` lines until the worker's memory runs
    out. Past either bound the read fails as a broken connection does (the job retries),
    rather than as the "500 Line too long" smtplib would make up in the server's name."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.left = MAX_REPLY_BYTES

    def readline(self, size: int = -1) -> bytes:
        line = self.file.readline(size)
        if len(line) > MAX_REPLY_LINE:
            raise OSError(f"the server sent a reply line longer than {MAX_REPLY_LINE:,} bytes")
        self.left -= len(line)
        if self.left < 0:
            raise OSError(f"the server sent a reply longer than {MAX_REPLY_BYTES:,} bytes")
        return line

    def close(self) -> None:
        self.file.close()


class _SMTP(smtplib.SMTP):
    """smtplib's client, reading the server's replies through `_Replies`."""

    def getreply(self) -> tuple[int, bytes]:
        if self.file is None and self.sock is not None:  # again after STARTTLS
            self.file = _Replies(self.sock.makefile("rb"))
        if isinstance(self.file, _Replies):
            self.file.left = MAX_REPLY_BYTES
        return super().getreply()


class _SMTPSSL(_SMTP, smtplib.SMTP_SSL):
    pass


def _client(server: SmtpServer) -> smtplib.SMTP:
    """A client not connected yet: made in the job's thread, so that a cancel can reach its
    socket while the conversation runs in another (see `_abort`)."""
    if server.implicit_tls:
        context = ssl.create_default_context()
        return _SMTPSSL(timeout=CONNECT_TIMEOUT_SECONDS, context=context)
    return _SMTP(timeout=CONNECT_TIMEOUT_SECONDS)


def _connect(smtp: smtplib.SMTP, server: SmtpServer) -> None:
    code, greeting = smtp.connect(server.host, server.port)
    if code != 220:  # 554: no service here (RFC 5321 section 3.1); smtplib would carry on
        smtp.close()
        raise smtplib.SMTPConnectError(code, greeting)
    try:
        if server.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if server.user:
            smtp.login(server.user, server.password or "")
    except BaseException:
        smtp.close()
        raise


def _abort(smtp: smtplib.SMTP) -> None:
    """Make a conversation blocked on the server return at once: a socket shut down wakes the
    thread reading it (closing it would not). A connection still being made has no socket yet
    and ends at its timeout; the job has stopped waiting for it by then anyway."""
    sock = smtp.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _deliver(
    smtp: smtplib.SMTP, server: SmtpServer, message: EmailMessage, payload: SendEmail
) -> dict[str, Any]:
    """The whole SMTP conversation; returns the recipients the server refused."""
    _connect(smtp, server)
    try:
        # The envelope is the validated payload's, never read back from the headers.
        return smtp.send_message(message, from_addr=payload.sender, to_addrs=list(payload.to))
    finally:
        _quit(smtp)


def _quit(smtp: smtplib.SMTP) -> None:
    """Say goodbye without letting a failed QUIT turn a delivered message into a retry."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _reply(code: int, text: bytes | str) -> str:
    """A server's reply as kept in the result or the error; the server chose its bytes."""
    said = text.decode(errors="replace") if isinstance(text, bytes) else text
    return storable.clean(f"{code} {said}")


@job_type("send-email", payload=SendEmail, max_attempts=5, timeout_seconds=60)
def send_email(payload: SendEmail) -> dict[str, Any]:
    """Send the message; return `{"accepted": [...], "messageId": ...}`, plus `refused`
    (address -> server reply) when the server took the message for only some recipients."""
    try:
        server = parse_smtp_url(current_settings().smtp_url)
    except ValueError as exc:
        raise PermanentError(str(exc)) from exc
    message = _compose(payload, _job_id())
    where = f"{server.host}:{server.port}"
    smtp = _client(server)
    try:
        # In a helper thread, so that a cancel stops the job even while the server is silent.
        refused = interruptible.call(
            lambda: _deliver(smtp, server, message, payload), abort=lambda: _abort(smtp)
        )
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
    except (ValueError, MessageError) as exc:  # writing the message or the envelope's commands
        raise PermanentError(f"cannot send the message: {exc}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise EmailDeferred(f"could not deliver via {where}: {exc or type(exc).__name__}") from exc

    result: dict[str, Any] = {
        "accepted": [address for address in payload.to if address not in refused],
        "messageId": message["Message-ID"],
    }
    if refused:
        result["refused"] = {address: _reply(*reply) for address, reply in refused.items()}
    return result
