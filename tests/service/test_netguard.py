"""`service.netguard.client()` against real HTTP and HTTPS servers on 127.0.0.1: what is
checked when connecting (redirect hops, resolved names, TLS host names, proxies).

The guard allows 127.0.0.1/32, as the tests' settings do. Forbidden targets are 127.0.0.2 or
names that the stand-in DNS resolves to it: nothing listens there, and nothing is ever sent
to an address outside the loopback network."""

import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_network
from typing import Any

import httpx
import pytest
import trustme

from service import netguard
from service.netguard import ForbiddenAddress, ForbiddenURL, NetworkGuard

GUARD = NetworkGuard((ip_network("127.0.0.1/32"),))


@dataclass
class Server:
    """A local server that records (path, Host header) and redirects where it is told to:
    `/go?<location>` answers 302 to `<location>`, anything else 200 "ok"."""

    port: int = 0
    seen: list[tuple[str, str]] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


def _serve(context: ssl.SSLContext | None = None) -> Iterator[Server]:
    server = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.seen.append((self.path, self.headers.get("Host", "")))
            path, _, location = self.path.partition("?")
            self.send_response(302 if path == "/go" else 200)
            if path == "/go":
                self.send_header("Location", location)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if context is not None:
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[Server]:
    yield from _serve()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[Server]:
    """An HTTPS server whose certificate names only `receiver.test`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("receiver.test").configure_cert(context)
    yield from _serve(context)


def get(url: str, **options: Any) -> httpx.Response:
    with netguard.client(GUARD, follow_redirects=True, timeout=5, **options) as client:
        return client.get(url)


def test_an_allowed_target_is_reached_and_allowed_redirects_followed(server) -> None:
    response = get(server.url("/go?" + server.url("/ok")))
    assert (response.status_code, response.text) == (200, "ok")
    assert [path for path, _ in server.seen] == ["/go?" + server.url("/ok"), "/ok"]


@pytest.mark.parametrize("host", ["127.0.0.2", "2130706434", "0x7f000002", "127.2", "[::1]"])
def test_a_redirect_to_a_forbidden_address_is_refused_before_connecting(server, host) -> None:
    """httpx passes these spellings to the resolver as they are; it reads them as 127.0.0.2."""
    with pytest.raises(ForbiddenAddress, match="is a loopback address: refused"):
        get(server.url("/go?" + server.url("/ok", host=host)))
    assert len(server.seen) == 1  # the redirect; the next hop was refused


def test_a_redirect_to_a_name_of_a_forbidden_address_is_refused(server, dns) -> None:
    dns["internal.test"] = ["127.0.0.2"]
    with pytest.raises(ForbiddenAddress, match=r"^internal\.test \(127\.0\.0\.2\) is a loopback"):
        get(server.url("/go?" + server.url("/ok", host="internal.test")))
    assert len(server.seen) == 1


def test_a_redirect_to_a_url_with_credentials_is_refused(server) -> None:
    with pytest.raises(ForbiddenURL, match="carries credentials"):
        get(server.url("/go?" + server.url("/ok", host="guest:guest@127.0.0.1")))
    assert len(server.seen) == 1


def test_a_name_is_resolved_once_and_its_checked_address_connected_to(server, dns) -> None:
    dns["receiver.test"] = ["127.0.0.1"]
    calls: list[str] = []
    stand_in = netguard.resolve

    def counting(host: str, port: int) -> list[Any]:
        calls.append(host)
        return stand_in(host, port)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(netguard, "resolve", counting)
        response = get(server.url("/ok", host="receiver.test"))

    assert response.status_code == 200
    assert calls == ["receiver.test"]
    assert server.seen == [("/ok", f"receiver.test:{server.port}")]


def test_tls_verifies_and_names_the_host_of_the_url_not_the_address(tls_server, ca, dns):
    """Connecting to the checked address keeps TLS about the host name: the certificate (for
    receiver.test only) is verified against it, and SNI carries it."""
    dns["receiver.test"] = ["127.0.0.1"]
    context = ssl.create_default_context()
    ca.configure_trust(context)

    response = get(tls_server.url("/ok", host="receiver.test", scheme="https"), verify=context)

    assert response.status_code == 200
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        get(tls_server.url("/ok", scheme="https"), verify=context)  # 127.0.0.1: not its name


def test_proxies_from_the_environment_are_not_used(server, monkeypatch) -> None:
    """Through a proxy, the proxy would pick the address: the guard could not check it.
    (httpx leaves environment proxies out once it is given a transport; this holds the guarded
    client to that.)"""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.2:3128")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.2:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    assert get(server.url("/ok")).status_code == 200
    assert server.seen == [("/ok", f"127.0.0.1:{server.port}")]


def test_a_name_that_does_not_resolve_is_a_connection_error(dns) -> None:
    """A retryable failure (DNS may come back), unlike a refusal."""
    dns["nowhere.test"] = []
    with pytest.raises(httpx.ConnectError, match=r"cannot resolve nowhere\.test"):
        get("http://nowhere.test/")
