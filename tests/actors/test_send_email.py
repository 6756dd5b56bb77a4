"""The "send-email" job type against a real aiosmtpd server on 127.0.0.1."""

import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult
from pydantic import ValidationError

from actors.send_email import EmailDeferred, SendEmail, parse_smtp_url, send_email
from service.errors import PermanentError
from service.registry import registry


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
