"""Real local servers for the job type tests: an HTTP receiver and an SMTP server, both on
127.0.0.1, plus a port nothing listens on, one where nothing answers, and a stand-in for a
running job."""

import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from service.registry import RunningJob, set_current
from service.settings import Settings
from tests.conftest import TEST_ALLOWED_NETWORK
from tests.helpers import free_port

SLOW_SECONDS = 10.0  # how long /slow holds its answer: far beyond any timeout the tests use


@pytest.fixture(autouse=True)
def _no_warren_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a job, handlers read settings from the environment: start every test clean,
    allowed to reach the local servers on 127.0.0.1 as the test settings are."""
    monkeypatch.delenv("WARREN_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("WARREN_WEBHOOK_SECRETS", raising=False)
    monkeypatch.delenv("WARREN_SMTP_URL", raising=False)
    monkeypatch.setenv("WARREN_ALLOWED_NETWORKS", TEST_ALLOWED_NETWORK)


@pytest.fixture
def closed_port() -> int:
    return free_port()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port where a server accepts connections (the kernel completes the handshake) and
    never says a word: an SMTP greeting or an HTTP answer that never comes."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture
def running_job() -> Iterator[Callable[..., RunningJob]]:
    """Makes the test thread look like a worker running a job, as `current_job()` sees it."""

    def start(job_id: str = "job-7f3a", settings: Settings | None = None) -> RunningJob:
        job = RunningJob(id=job_id, attempt=1, max_attempts=5, settings=settings)
        set_current(job)
        return job

    yield start
    set_current(None)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    header_lines: list[tuple[str, str]] = field(default_factory=list)  # as sent, repeats kept


@dataclass
class WebhookReceiver:
    base_url: str
    requests: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return self.base_url + path


# path -> (status, extra headers, response body)
ANSWERS: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/ok": (200, {"Content-Type": "application/json"}, json.dumps({"received": True}).encode()),
    "/long": (200, {"Content-Type": "text/plain"}, b"x" * 2000),
    "/long-utf8": (200, {"Content-Type": "text/plain; charset=utf-8"}, "€".encode() * 2000),
    "/long-error": (500, {}, b"e" * 5000),
    # What an internal service would hand out (RabbitMQ's admin API in issue #10).
    "/secret": (200, {"Content-Type": "application/json"}, b'{"secret": "SECRET-ADMIN-DATA"}'),
    "/boom": (500, {}, b"database down"),
    "/missing": (404, {}, b"no such hook"),
    "/throttle": (429, {"Retry-After": "30"}, b"slow down"),
    "/moved": (302, {"Location": "/ok"}, b""),
    # A server's answer holding what PostgreSQL cannot store.
    "/nul-error": (404, {}, b"no hook\x00here"),
    "/nul-ok": (200, {"Content-Type": "text/plain"}, b"fine\x00"),
    # A decompression bomb: 10 MB of zeros, gzipped twice into a few hundred bytes.
    "/bomb": (200, {"Content-Encoding": "gzip, gzip"}, gzip.compress(gzip.compress(bytes(10**7)))),
}


@pytest.fixture
def webhook_server() -> Iterator[WebhookReceiver]:
    """An HTTP server that records every request and answers by path (see ANSWERS);
    /slow waits up to SLOW_SECONDS before answering, /trickle sends a byte at a time for as
    long."""
    lock = threading.Lock()
    receiver: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received = Received(
                method=self.command,
                path=self.path,
                headers=dict(self.headers.items()),
                body=self.rfile.read(length),
                header_lines=list(self.headers.items()),
            )
            with lock:
                receiver.requests.append(received)
            if self.path == "/slow":
                receiver.release.wait(SLOW_SECONDS)
                status, headers, body = ANSWERS["/ok"]
            elif self.path == "/trickle":
                self._trickle()
                return
            else:
                status, headers, body = ANSWERS.get(self.path, (404, {}, b"unknown path"))
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting, which is what /slow is for

        def _trickle(self) -> None:
            """A byte every 0.2 s for SLOW_SECONDS: no single read ever waits long."""
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            deadline = time.monotonic() + SLOW_SECONDS
            try:
                while not receiver.release.wait(0.2) and time.monotonic() < deadline:
                    self.wfile.write(b".")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = WebhookReceiver(base_url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class RecordingHandler:
    """An aiosmtpd handler that accepts every message and keeps its envelope."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK: queued"


@pytest.fixture
def smtp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """Starts a real aiosmtpd server on 127.0.0.1 and points WARREN_SMTP_URL at it.
    Call it with a handler (default: a RecordingHandler) and aiosmtpd SMTP options;
    `userinfo` ("user:password@") goes into the URL. Returns the handler."""
    controllers: list[Controller] = []

    def start(handler: Any = None, userinfo: str = "", **smtp_options: Any) -> Any:
        handler = handler if handler is not None else RecordingHandler()
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, **smtp_options)
        controller.start()
        controllers.append(controller)
        monkeypatch.setenv("WARREN_SMTP_URL", f"smtp://{userinfo}127.0.0.1:{port}")
        return handler

    yield start
    for controller in controllers:
        controller.stop()
