"""The quickstart's first job on a machine without a mail server: `warren run` catches the
mail on the SMTP address, and `warren mail` shows it."""

import json
import os
import re
from pathlib import Path

import httpx
import pytest

from service import devmail
from service.mailbox import Mailbox
from tests.e2e.test_cli import ok, one_error_line
from tests.helpers import free_port, wait_for

# The README's first example, as a user pastes it.
QUICKSTART_JOB = {
    "type": "send-email",
    "payload": {"to": "user@example.com", "subject": "Test", "body": "Hello!"},
    "priority": "high",
    "maxAttempts": 3,
    "idempotencyKey": "welcome-42",
}


def answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.usefixtures("clean")
def test_warren_run_catches_the_quickstart_mail_and_warren_mail_shows_it(
    spawn, run_cli, tmp_path: Path
):
    smtp_port, api_port = free_port(), free_port()
    env = {
        "WARREN_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "WARREN_DEV_MAIL_DIR": str(tmp_path / "mail"),
        "WARREN_API_PORT": str(api_port),
        "WARREN_API_WORKERS": "1",
        "WARREN_WORKER_PROCESSES": "1",
        "WARREN_WORKER_THREADS": "2",
    }
    run = spawn("run", env=env)
    base = f"http://127.0.0.1:{api_port}"
    wait_for(lambda: answers(base), timeout=60, what="warren run's API to answer")

    job_id = httpx.post(f"{base}/jobs", json=QUICKSTART_JOB, timeout=10).json()["jobId"]
    job = wait_for(
        lambda: (
            (j := httpx.get(f"{base}/jobs/{job_id}", timeout=10).json()["job"])["status"]
            in ("completed", "failed")
            and j
        ),
        timeout=60,
        what="the quickstart's send-email job to finish",
    )

    assert job["status"] == "completed", job["error"]
    assert job["attempts"] == 1
    assert job["result"]["accepted"] == ["user@example.com"]
    listed = json.loads(ok(run_cli("mail", "--json", env=env)))
    assert listed["count"] == 1
    [mail] = listed["messages"]
    assert (mail["number"], mail["from"], mail["to"], mail["subject"]) == (
        1,
        "warren@localhost",
        ["user@example.com"],
        "Test",
    )
    shown = ok(run_cli("mail", "show", "1", env=env))
    assert "Subject: Test" in shown and shown.rstrip().endswith("Hello!")

    assert run.stop() == 0
    assert not devmail.listening("127.0.0.1", smtp_port)
    output = run.output()
    assert "`warren mail` lists it" in output
    assert "mail #1 from warren@localhost to user@example.com, subject 'Test'" in output


def test_warren_mail_lists_one_line_per_message_and_shows_one(run_cli, tmp_path: Path):
    box = Mailbox(tmp_path / "mail")
    for subject in ("Welcome", "Your invoice"):
        body = f"From: shop@example.com\nTo: ann@example.com\nSubject: {subject}\n\nHi Ann\n"
        box.save("shop@example.com", ["ann@example.com"], body.encode())
    env = {"WARREN_DEV_MAIL_DIR": str(box.directory)}

    listed = ok(run_cli("mail", "list", env=env))
    shown = json.loads(ok(run_cli("mail", "show", "2", "--json", env=env)))

    rows = [line for line in listed.splitlines() if "ann@example.com" in line]
    assert len(rows) == 2
    assert "Welcome" in rows[0] and "Your invoice" in rows[1]
    assert shown["subject"] == "Your invoice"
    assert shown["text"] == "Hi Ann\n"
    assert Path(shown["file"]).read_bytes().startswith(b"Return-Path: <shop@example.com>")


def test_warren_mail_with_nothing_caught(run_cli, tmp_path: Path):
    env = {"WARREN_DEV_MAIL_DIR": str(tmp_path / "never-written")}

    assert ok(run_cli("mail", env=env)).startswith("no mail caught yet")
    assert json.loads(ok(run_cli("mail", "--json", env=env))) == {"count": 0, "messages": []}
    line = one_error_line(run_cli("mail", "show", "3", env=env))
    assert line == f"error: no caught mail #3 in {tmp_path / 'never-written'}"
    assert not (tmp_path / "never-written").exists()


def caught(tmp_path: Path, *mails: bytes) -> dict[str, str]:
    """A mailbox in tmp_path holding `mails` as the catcher keeps them; the env to read it."""
    box = Mailbox(tmp_path / "mail")
    for content in mails:
        box.save("shop@example.com", ["ann@example.com"], content)
    return {"WARREN_DEV_MAIL_DIR": str(box.directory)}


def test_warren_mail_shows_a_mail_whose_charset_it_does_not_know(run_cli, tmp_path: Path):
    env = caught(
        tmp_path,
        b"From: shop@example.com\nTo: ann@example.com\nSubject: Odd\n"
        b'Content-Type: text/plain; charset="x-nonsense"\n\nHi Ann, caf\xc3\xa9 \xe9\n',
    )

    shown = ok(run_cli("mail", "show", "1", env=env))
    as_json = json.loads(ok(run_cli("mail", "show", "1", "--json", env=env)))

    assert "Subject: Odd" in shown and shown.rstrip().endswith("Hi Ann, café \ufffd")
    assert as_json["text"] == "Hi Ann, café \ufffd\n"


def test_warren_mail_skips_what_is_not_a_mail_file(run_cli, tmp_path: Path):
    env = caught(tmp_path, b"From: shop@example.com\nTo: ann@example.com\nSubject: Hi\n\nHi\n")
    mail_dir = Path(env["WARREN_DEV_MAIL_DIR"])
    (mail_dir / "5.eml").mkdir()
    os.mkfifo(mail_dir / "7.eml")  # reading it would wait for a writer forever

    listed = ok(run_cli("mail", "list", env=env, timeout=20))
    as_json = json.loads(ok(run_cli("mail", "--json", env=env, timeout=20)))
    line = one_error_line(run_cli("mail", "show", "5", env=env, timeout=20))

    [row] = [row for row in listed.splitlines() if "ann@example.com" in row]
    assert row.startswith("1 ")
    assert [m["number"] for m in as_json["messages"]] == [1]
    assert line == f"error: no caught mail #5 in {mail_dir}"


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all C0 but \t and \n, DEL, C1


def test_warren_mail_escapes_the_control_characters_of_a_hostile_mail(run_cli, tmp_path: Path):
    env = caught(
        tmp_path,
        b'From: "Mallory\x1b[2J" <mallory@example.com>\nTo: ann@example.com\n'
        b"Subject: \x1b]0;pwned\x07 =?utf-8?q?=C2=9B2J_=0Aforged?=\n"
        b"Content-Type: text/plain; charset=utf-8\n\n"
        b"Hi \x1b[31mAnn\xc2\x9b\rX\n\tbye\n",
    )

    listed = ok(run_cli("mail", "list", env=env))
    shown = ok(run_cli("mail", "show", "1", env=env))

    for output in (listed, shown):
        assert not CONTROL.search(output), repr(output)
        assert r"\x1b]0;pwned\x07 \x9b2J \x0aforged" in output
        assert r"Mallory\x1b[2J" in output
    assert len([row for row in listed.splitlines() if "ann@example.com" in row]) == 1
    assert shown.endswith("Hi \\x1b[31mAnn\\x9b\\x0dX\n\tbye\n")


def test_warren_mail_list_shows_a_subject_that_looks_like_markup_as_written(
    run_cli, tmp_path: Path
):
    subject = b"[link=https://evil.example]Click[/link] [/bold]"
    env = caught(
        tmp_path, b"From: shop@example.com\nTo: ann@example.com\nSubject: %s\n\nHi\n" % subject
    )

    listed = ok(run_cli("mail", "list", env=env))

    assert subject.decode() in listed
