"""The "send-email" job type against a real aiosmtpd server on 127.0.0.1."""

import base64
import contextlib
import json
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.smtp import AuthResult
from falcon import testing
from pydantic import ValidationError

from actors.send_email import EmailDeferred, SendEmail, parse_smtp_url, send_email
from api.app import create_app
from service.errors import PermanentError
from service.registry import registry
from tests.helpers import wait_for


def send(**fields: Any) -> dict[str, Any]:
    return send_email(SendEmail.model_validate(fields))


def parsed(envelope: Any) -> EmailMessage:
    """The message as the server stored it, with SMTP's CRLF line ends made plain newlines."""
    return message_from_bytes(
        envelope.original_content.replace(b"\r\n", b"\n"), policy=policy.default
    )


class RefuseRecipients:
    """Answers RCPT for the addresses in `replies` with the given reply, accepts the rest."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies
        self.envelopes: list[Any] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in self.replies:
            return self.replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK: queued"


def test_registered_as_a_job_type() -> None:
    assert registry.get("send-email").handler is send_email


def test_a_text_mail_arrives_with_its_headers(smtp_server) -> None:
    server = smtp_server()

    result = send(
        to="alice@example.com",
        subject="Your report",
        body="Numbers are up.\n",
        **{"from": "reports@example.com", "replyTo": "help@example.com"},
    )

    [envelope] = server.envelopes
    assert envelope.mail_from == "reports@example.com"
    assert envelope.rcpt_tos == ["alice@example.com"]
    mail = parsed(envelope)
    assert mail["Subject"] == "Your report"
    assert mail["From"] == "reports@example.com"
    assert mail["To"] == "alice@example.com"
    assert mail["Reply-To"] == "help@example.com"
    assert not mail.is_multipart()
    assert mail.get_content() == "Numbers are up.\n"
    assert result == {"accepted": ["alice@example.com"], "messageId": mail["Message-ID"]}
    assert mail["Message-ID"].endswith("@warren>")


def test_default_sender_is_warren_at_localhost(smtp_server) -> None:
    server = smtp_server()
    send(to="alice@example.com", subject="Hi", body="hello")
    assert parsed(server.envelopes[0])["From"] == "warren@localhost"


def test_an_html_body_gets_a_plain_text_alternative(smtp_server) -> None:
    server = smtp_server()
    html = "<h1>Welcome</h1><p>Hello <b>Alice</b> &amp; team</p><style>p {}</style>"

    send(to="alice@example.com", subject="Welcome", body=html)

    mail = parsed(server.envelopes[0])
    assert mail.get_content_type() == "multipart/alternative"
    assert mail.get_body(("html",)).get_content().strip() == html
    text = mail.get_body(("plain",)).get_content()
    assert text == "Welcome\nHello Alice & team\n"


def test_a_list_of_recipients_all_receive_one_message(smtp_server) -> None:
    server = smtp_server()
    to = ["alice@example.com", "bob@example.com"]

    result = send(to=to, subject="Team news", body="hi all")

    [envelope] = server.envelopes
    assert envelope.rcpt_tos == to
    assert parsed(envelope)["To"] == "alice@example.com, bob@example.com"
    assert result["accepted"] == to


def test_inside_a_job_the_message_id_comes_from_the_job_id(smtp_server, running_job) -> None:
    server = smtp_server()
    running_job("job-7f3a")

    result = send(to="alice@example.com", subject="Hi", body="hello")
    send(to="alice@example.com", subject="Hi", body="hello")  # a retry resends the same id

    assert [parsed(e)["Message-ID"] for e in server.envelopes] == ["<job-7f3a@warren>"] * 2
    assert result["messageId"] == "<job-7f3a@warren>"


def test_a_5xx_recipient_refusal_fails_permanently_with_the_reply(smtp_server) -> None:
    server = smtp_server(RefuseRecipients({"ghost@example.com": "550 no such user"}))

    with pytest.raises(PermanentError, match="550 no such user"):
        send(to="ghost@example.com", subject="Hi", body="hello")
    assert server.envelopes == []


def test_a_4xx_recipient_refusal_is_retryable(smtp_server) -> None:
    server = smtp_server(RefuseRecipients({"busy@example.com": "451 try later"}))

    with pytest.raises(EmailDeferred, match="451 try later"):
        send(to="busy@example.com", subject="Hi", body="hello")
    assert server.envelopes == []


def test_when_some_recipients_are_refused_the_rest_still_get_the_mail(smtp_server) -> None:
    server = smtp_server(RefuseRecipients({"ghost@example.com": "550 no such user"}))

    result = send(to=["alice@example.com", "ghost@example.com"], subject="Hi", body="hello")

    assert server.envelopes[0].rcpt_tos == ["alice@example.com"]
    assert result["accepted"] == ["alice@example.com"]
    assert result["refused"] == {"ghost@example.com": "550 no such user"}


def test_nothing_listening_is_retryable(closed_port, monkeypatch) -> None:
    monkeypatch.setenv("WARREN_SMTP_URL", f"smtp://127.0.0.1:{closed_port}")
    where = re.escape(f"127.0.0.1:{closed_port}")
    with pytest.raises(EmailDeferred, match=f"could not deliver via {where}"):
        send(to="alice@example.com", subject="Hi", body="hello")


@pytest.fixture
def raw_smtp(monkeypatch) -> Iterator[Callable[[Callable[[socket.socket], None]], None]]:
    """Points WARREN_SMTP_URL at a server on 127.0.0.1 that `talk(connection)` plays by hand."""
    listener = socket.create_server(("127.0.0.1", 0))
    monkeypatch.setenv("WARREN_SMTP_URL", f"smtp://127.0.0.1:{listener.getsockname()[1]}")

    def serve(talk: Callable[[socket.socket], None]) -> None:
        def run() -> None:
            connection, _ = listener.accept()
            with connection, contextlib.suppress(OSError):
                talk(connection)

        threading.Thread(target=run, daemon=True).start()

    yield serve
    listener.close()


def test_a_server_that_greets_with_554_fails_the_job_at_once(raw_smtp) -> None:
    raw_smtp(lambda c: (c.sendall(b"554 no mail service here\r\n"), c.recv(100)))

    with pytest.raises(PermanentError, match="replied 554 no mail service here"):
        send(to="alice@example.com", subject="Hi", body="hello")


def test_a_reply_that_never_ends_is_cut_off_and_retried(raw_smtp) -> None:
    """`250-` lines without end: the worker reads 64 KiB of them, not its memory's worth."""

    def endless_ehlo(connection: socket.socket) -> None:
        connection.sendall(b"220 hello\r\n")
        connection.recv(100)
        while True:
            connection.sendall(b"250-" + b"x" * 1000 + b"\r\n")

    raw_smtp(endless_ehlo)

    with pytest.raises(EmailDeferred, match="a reply longer than 65,536 bytes"):
        send(to="alice@example.com", subject="Hi", body="hello")


def test_a_reply_line_past_smtplib_bound_is_not_the_servers_500(raw_smtp) -> None:
    raw_smtp(lambda c: (c.sendall(b"220 " + b"x" * 9000 + b"\r\n"), c.recv(100)))

    with pytest.raises(EmailDeferred, match="a reply line longer than 8,192 bytes"):
        send(to="alice@example.com", subject="Hi", body="hello")


def test_credentials_in_the_smtp_url_are_used_to_log_in(smtp_server) -> None:
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"p@ss word")

    server = smtp_server(
        userinfo="mailer:p%40ss%20word@", authenticator=authenticator, auth_require_tls=False
    )
    send(to="alice@example.com", subject="Hi", body="hello")

    assert logins == [(b"mailer", b"p@ss word")]
    assert len(server.envelopes) == 1


def test_rejected_credentials_fail_permanently(smtp_server) -> None:
    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        return AuthResult(success=False, handled=False)

    server = smtp_server(
        userinfo="mailer:wrong@", authenticator=authenticator, auth_require_tls=False
    )
    with pytest.raises(PermanentError, match="535"):
        send(to="alice@example.com", subject="Hi", body="hello")
    assert server.envelopes == []


def test_a_malformed_smtp_url_fails_permanently_naming_the_setting(monkeypatch) -> None:
    monkeypatch.setenv("WARREN_SMTP_URL", "mail.example.com:25")
    with pytest.raises(PermanentError, match="WARREN_SMTP_URL"):
        send(to="alice@example.com", subject="Hi", body="hello")


def test_smtp_url_forms() -> None:
    tls = parse_smtp_url("smtps://u%40x:secret@mail.example.com")
    assert (tls.host, tls.port, tls.implicit_tls, tls.starttls) == (
        "mail.example.com",
        465,
        True,
        False,
    )
    assert (tls.user, tls.password) == ("u@x", "secret")
    plain = parse_smtp_url("smtp://127.0.0.1:2525?starttls=true")
    assert (plain.port, plain.implicit_tls, plain.starttls, plain.user) == (2525, False, True, None)


def test_payload_round_trips_and_a_single_address_becomes_a_list() -> None:
    model = SendEmail.model_validate({"to": "alice@example.com", "subject": "Hi", "body": "x"})
    stored = model.model_dump(mode="json", by_alias=True)
    assert stored == {
        "to": ["alice@example.com"],
        "subject": "Hi",
        "body": "x",
        "from": "warren@localhost",
        "replyTo": None,
    }
    assert SendEmail.model_validate(stored) == model


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"to": "not-an-address"}, "to"),
        ({"to": ["alice@example.com", "bob@"]}, "to"),
        ({"to": []}, "to"),
        ({"subject": ""}, "subject"),
        ({"subject": "   "}, "subject"),
        ({"subject": "Hi\r\nBcc: everyone@example.com"}, "subject"),
        ({"from": "no at sign"}, "from"),
        ({"replyTo": "help"}, "replyTo"),
        ({"cc": "bob@example.com"}, "cc"),
    ],
)
def test_invalid_payloads_are_rejected_naming_the_field(fields, field) -> None:
    base = {"to": "alice@example.com", "subject": "Hi", "body": "hello"}
    with pytest.raises(ValidationError) as caught:
        SendEmail.model_validate({**base, **fields})
    assert field in {error["loc"][0] for error in caught.value.errors()}


# -- Header and body injection (issue #10, finding 2) -----------------------------------------


def encoded_word(text: str) -> str:
    """`text` as an RFC 2047 base64 encoded word, the way an attacker would hide CR LF."""
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


# Subjects that a decoding step would turn into extra header lines and an extra body.
INJECTING_SUBJECTS = {
    "q: Reply-To, X-Injected and a body": (
        "=?utf-8?q?Invoice=0D=0AReply-To:_attacker@evil.example=0D=0AX-Injected:_yes"
        "=0D=0A=0D=0Abody?="
    ),
    "b: a second From": encoded_word("Invoice\r\nFrom: ceo@evil.example"),
    "b: a Bcc": encoded_word("Invoice\r\nBcc: eve@evil.example"),
}
# Every header line build_message writes for a text body, in order: nothing else may arrive.
TEXT_MAIL_HEADERS = [
    "From",
    "To",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "Content-Type",
    "Content-Transfer-Encoding",
    "MIME-Version",
]
# Characters that end a line for SMTP, for Python's email package (str.splitlines) or for
# Unicode-aware readers, and NUL: none may appear in any header value.
LINE_BREAKING = ["\r", "\n", "\r\n", "\x00", "\u2028", "\u2029", "\x85", "\v", "\f"]
LINE_BREAKING += ["\x1c", "\x1d", "\x1e"]
# Each header field of the payload with a value holding `{}` where the character goes.
HEADER_FIELDS = {
    "to": ("to", "alice@example.com{}"),
    "to-list": ("to", ["bob@example.com", "alice@example.com{}"]),
    "from": ("from", "reports@example.com{}"),
    "replyTo": ("replyTo", "help@example.com{}"),
    "subject": ("subject", "Invoice{}Bcc: eve@evil.example"),
}


def codepoints(chars: str) -> str:
    return "+".join(f"U+{ord(char):04X}" for char in chars)


def header_names(envelope: Any) -> list[str]:
    """The names of the header lines as they crossed the wire, in order: what any receiver,
    however naive, splits the head into."""
    head = envelope.original_content.split(b"\r\n\r\n", 1)[0]
    return [
        line.split(b":", 1)[0].decode()
        for line in head.split(b"\r\n")
        if not line.startswith((b" ", b"\t"))
    ]


@pytest.mark.parametrize("subject", INJECTING_SUBJECTS.values(), ids=INJECTING_SUBJECTS.keys())
def test_an_encoded_word_in_the_subject_arrives_as_text_not_as_headers(
    smtp_server, subject: str
) -> None:
    server = smtp_server()
    to = ["alice@example.com", "bob@example.com"]

    send(
        to=to,
        subject=subject,
        body="Numbers are up.\n",
        **{"from": "reports@example.com", "replyTo": "help@example.com"},
    )

    [envelope] = server.envelopes
    assert envelope.mail_from == "reports@example.com"
    assert envelope.rcpt_tos == to
    assert header_names(envelope) == TEXT_MAIL_HEADERS
    mail = parsed(envelope)
    assert mail.get_all("From") == ["reports@example.com"]
    assert mail.get_all("Reply-To") == ["help@example.com"]
    assert mail.get_all("Bcc") is None and mail.get_all("X-Injected") is None
    assert mail["Subject"] == subject  # the receiver decodes it back to the literal text
    assert mail.get_content() == "Numbers are up.\n"


def test_non_ascii_and_long_subjects_still_arrive_intact(smtp_server) -> None:
    server = smtp_server()
    subjects = ["Grüße aus Köln =?", "Plain words " * 30, "Ünïcödé =?utf-8?q?x?= " * 10]

    for subject in subjects:
        send(to="alice@example.com", subject=subject, body="hello")

    assert [parsed(envelope)["Subject"] for envelope in server.envelopes] == subjects
    for envelope in server.envelopes:
        head = envelope.original_content.split(b"\r\n\r\n", 1)[0]
        assert max(len(line) for line in head.split(b"\r\n")) <= 78


def test_display_names_never_reach_a_header_or_the_envelope(smtp_server) -> None:
    """pydantic's EmailStr keeps only the address of `Name <address>`: quotes, commas and
    encoded words in a name are dropped at enqueue, so they cannot add a recipient."""
    server = smtp_server()
    payload = SendEmail.model_validate(
        {
            "to": [
                '"Evil, Inc" <alice@example.com>',
                encoded_word("x\r\nBcc: eve@evil.example") + " <bob@example.com>",
            ],
            "subject": "Hi",
            "body": "hello",
            "replyTo": '"Help \\"desk\\", eve@evil.example" <help@example.com>',
        }
    )
    assert payload.to == ["alice@example.com", "bob@example.com"]
    assert payload.reply_to == "help@example.com"

    send_email(payload)

    [envelope] = server.envelopes
    assert envelope.rcpt_tos == ["alice@example.com", "bob@example.com"]
    mail = parsed(envelope)
    assert mail["To"] == "alice@example.com, bob@example.com"
    assert mail["Reply-To"] == "help@example.com"
    assert mail.get_all("Bcc") is None


def test_a_message_that_cannot_be_composed_fails_permanently(smtp_server) -> None:
    """The message is a function of the payload alone: if it cannot be built once, it never
    can, so even a payload that skipped validation must not be retried."""
    server = smtp_server()
    unchecked = SendEmail.model_construct(
        to=["alice@example.com"], subject="Hi\u2028there", body="hello", sender="w@localhost"
    )

    with pytest.raises(PermanentError, match="cannot compose"):
        send_email(unchecked)
    assert server.envelopes == []


@pytest.fixture
def http(warren) -> testing.TestClient:
    """The real HTTP API on the test run's database and broker, as in tests/api."""
    return testing.TestClient(create_app(warren=warren))


def stored_jobs(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(sa.text("SELECT count(*) FROM jobs"))


def enqueue_email(http: testing.TestClient, **fields: Any) -> Any:
    """POST /jobs as a client would send it: JSON with non-ASCII escaped, so that even a lone
    surrogate (`\\ud83d`) reaches the API."""
    payload = {"to": "alice@example.com", "subject": "Hi", "body": "hello", **fields}
    body = json.dumps({"type": "send-email", "payload": payload})
    return http.simulate_post("/jobs", body=body, content_type="application/json")


def assert_refused(response: Any, field: str) -> None:
    """422 validation_error naming `field` (or an item of it: a single `to` is item 0)."""
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == "validation_error"
    # A list item is named `payload.to[1]`; compare it as `payload.to.1`.
    named = [
        detail["field"].replace("[", ".").replace("]", "")
        for detail in response.json["error"]["details"]
    ]
    assert any(name == field or name.startswith(f"{field}.") for name in named), named


def _with(template: str | list[str], char: str) -> str | list[str]:
    if isinstance(template, list):
        return [item.format(char) for item in template]
    return template.format(char)


@pytest.mark.parametrize("char", LINE_BREAKING, ids=codepoints)
@pytest.mark.parametrize("where", HEADER_FIELDS.keys())
def test_a_line_break_or_nul_in_any_header_field_is_422_at_enqueue(
    http, engine, where: str, char: str
) -> None:
    field, template = HEADER_FIELDS[where]

    response = enqueue_email(http, **{field: _with(template, char)})

    assert_refused(response, "payload.to.1" if where == "to-list" else f"payload.{field}")
    assert stored_jobs(engine) == 0


ADDRESS_FIELDS = ["to", "from", "replyTo"]
# A value each header field accepts: with a newline appended, it must not.
TRAILING_NEWLINE_OK = {
    "to": "alice@example.com",
    "from": "warren@localhost",
    "replyTo": "help@example.com",
    "subject": "Hi",
}


@pytest.mark.parametrize("field", [*ADDRESS_FIELDS, "subject"])
def test_a_trailing_newline_in_any_header_field_is_422_at_enqueue(http, engine, field) -> None:
    value = TRAILING_NEWLINE_OK[field]

    assert_refused(enqueue_email(http, **{field: value + "\n"}), f"payload.{field}")
    assert stored_jobs(engine) == 0


@pytest.mark.parametrize(
    "address",
    [encoded_word("a\r\nBcc: eve@evil.example") + "@example.com", "=?utf-8?q?alice?=@example.com"],
)
@pytest.mark.parametrize("field", ADDRESS_FIELDS)
def test_an_encoded_word_in_an_address_is_422_at_enqueue(http, engine, field, address) -> None:
    """RFC 2047 forbids encoded words in an address; Python's parser decodes them anyway,
    into CR LF (a run-time error) or into another address than the envelope's."""
    assert_refused(enqueue_email(http, **{field: address}), f"payload.{field}")
    assert stored_jobs(engine) == 0


@pytest.mark.parametrize("body", ["half a pair: \ud83d", "a NUL: \x00"], ids=["surrogate", "nul"])
def test_a_body_that_could_never_be_sent_is_422_at_enqueue(http, engine, body: str) -> None:
    """A lone surrogate cannot be encoded as UTF-8 and NUL is not text (RFC 5322), nor can
    PostgreSQL store it in the payload: neither may wait in a job for a run that must fail."""
    assert_refused(enqueue_email(http, body=body), "payload.body")
    assert stored_jobs(engine) == 0


def test_a_valid_email_is_201_at_enqueue(http) -> None:
    response = enqueue_email(http, subject=INJECTING_SUBJECTS["b: a Bcc"])
    assert response.status_code == 201, response.json


class RefuseData:
    """Accepts every recipient, then refuses the message itself with a 5xx reply."""

    def __init__(self) -> None:
        self.refused = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        self.refused += 1
        return "554 5.6.0 message refused: subject not allowed"


def test_a_header_the_server_refuses_fails_the_job_at_once(warren, start_worker, smtp_server):
    inbox = smtp_server(RefuseData())
    start_worker(smtp_url=os.environ["WARREN_SMTP_URL"])
    job_id = warren.enqueue(
        "send-email",
        {"to": "alice@example.com", "subject": INJECTING_SUBJECTS["b: a Bcc"], "body": "x"},
        max_attempts=3,
        retry={"strategy": "fixed", "baseSeconds": 0.1},
    ).id

    job = wait_for(
        lambda: (found := warren.get(job_id)).status in ("completed", "failed") and found,
        what=f"job {job_id} to finish",
    )

    assert job.status == "failed"
    assert job.attempts == 1
    assert job.error["retryable"] is False
    assert "554" in job.error["message"]
    assert inbox.refused == 1
