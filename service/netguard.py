"""Outbound HTTP to URLs that users give us, kept off Warren's own network (an SSRF guard).

A job type that requests a URL from a payload (webhook-delivery today, a crawler tomorrow) lets
whoever may enqueue make the worker connect wherever the worker can reach: RabbitMQ's admin
API, PostgreSQL's neighbours, Warren's own API, a cloud's instance metadata with its
credentials. So such job types make their requests through `client()`, which refuses:

- addresses that are not public: loopback, private, link-local, shared (carrier-grade NAT,
  100.64.0.0/10), multicast, unspecified, reserved, and anything else `ipaddress` does not call
  global; an IPv6 address that embeds an IPv4 one (IPv4-mapped, NAT64, 6to4) is judged by it;
- cloud metadata addresses (169.254.169.254, fd00:ec2::254, ...), always;
- credentials in the URL (`user:pass@host`), which would otherwise be sent as Basic auth.

`WARREN_ALLOWED_NETWORKS` (`Settings.allowed_networks`) opens exceptions, e.g. an internal
receiver on 10.1.2.0/24; metadata addresses stay refused even inside an allowed network.

The check is made where the connection is made, on the address it is made to: the transport's
network backend resolves the host once, checks every address, and connects to a checked
address itself, while TLS still verifies and sends (SNI) the host name of the URL. There is no
second lookup an attacker's DNS could answer differently (DNS rebinding), every redirect hop is
a new connection and checked again, and every spelling of an address (`2130706433`,
`0x7f000001`, `127.1`, `0177.0.0.1`) is judged by what the resolver makes of it. Proxies from
the environment are ignored: through a proxy, the proxy would choose where to connect.
"""

import re
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import Any

import httpcore
import httpx

from service import bodies
from service.errors import PermanentError
from service.settings import Settings

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

#: Cloud instance metadata and credential endpoints: refused even inside an allowed network.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle...
        "169.254.169.253",  # AWS VPC DNS
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS pod identity
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
        "fd00:ec2::254",  # AWS, over IPv6
        "fd00:ec2::253",  # AWS VPC DNS, over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity, over IPv6
    )
)
SHARED_ADDRESS_SPACE = ip_network("100.64.0.0/10")  # carrier-grade NAT; not "private" to ipaddress
NAT64_PREFIX = ip_network("64:ff9b::/96")

# What `ipaddress` can say about an address, in the order the first match names the refusal.
_PROPERTIES = (
    ("is_unspecified", "an unspecified address"),
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address"),
    ("is_multicast", "a multicast address"),
    ("is_site_local", "a site-local address"),
    ("is_reserved", "a reserved address"),
    ("is_private", "a private address"),
)
# The spellings of an IPv4 address that inet_aton takes: 1 to 4 parts, decimal, octal or hex.
_IPV4_SPELLING = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.I)


class ForbiddenURL(PermanentError):
    """A URL Warren will not request (credentials in it, a scheme other than HTTP(S)). Retrying
    cannot change that: the job fails at once. The message never holds the credentials."""


class ForbiddenAddress(ForbiddenURL):
    """A host that is, or resolves to, an address Warren may not connect to. Raised before
    connecting, so nothing was sent to it and nothing of its answer can be kept."""

    def __init__(self, host: str, address: IPAddress, reason: str) -> None:
        self.host, self.address, self.reason = host, address, reason
        target = str(address) if host == str(address) else f"{host} ({address})"
        hint = "" if address in METADATA_ADDRESSES else "; WARREN_ALLOWED_NETWORKS can allow it"
        super().__init__(f"{target} is {reason}: refused, nothing was sent{hint}")


def embedded_ipv4(address: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (IPv4-mapped, NAT64, 6to4), if any: connecting
    to it reaches that IPv4 host, so it is judged as that host."""
    if isinstance(address, IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_PREFIX:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def forbidden_reason(address: IPAddress) -> str | None:
    """Why `address` is not a public address anyone may make Warren connect to; None if it is.
    Allowed networks are not considered here (see `NetworkGuard.refusal`)."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if (inner := embedded_ipv4(address)) is not None:
        reason = forbidden_reason(inner)
        return f"an IPv6 form of {inner}, {reason}" if reason else None
    if isinstance(address, IPv4Address) and address in SHARED_ADDRESS_SPACE:
        return "a shared (carrier-grade NAT) address"
    for name, reason in _PROPERTIES:
        if getattr(address, name, False):
            return reason
    return None if address.is_global else "not a public address"


def literal_address(host: str) -> IPAddress | None:
    """The address `host` spells literally, in any spelling the C resolver accepts (`[::1]`,
    `2130706433`, `0x7f000001`, `127.1`, `0177.0.0.1`); None for a host name."""
    host = host.strip("[]")
    try:
        return ip_address(host)
    except ValueError:
        pass
    if _IPV4_SPELLING.match(host):
        try:
            return IPv4Address(socket.inet_aton(host.rstrip(".")))
        except OSError:
            return None
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses `host` resolves to, in the resolver's order, each once. Module-level so
    that tests can stand in for DNS."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ip_address(str(sockaddr[0]).split("%", 1)[0])  # drop an IPv6 zone index
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True)
class NetworkGuard:
    """Which addresses may be connected to: public ones, plus `allowed` networks."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> "NetworkGuard":
        return cls(tuple(ip_network(str(network)) for network in settings.allowed_networks))

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` is refused, or None. An allowed network opens everything in it but
        metadata addresses, which hand out credentials to whoever asks."""
        if address in METADATA_ADDRESSES:
            return "a cloud metadata address"
        plain = embedded_ipv4(address) or address
        if any(plain in network for network in self.allowed if plain.version == network.version):
            return None
        return forbidden_reason(address)

    def check_address(self, host: str, address: IPAddress) -> None:
        """Raise `ForbiddenAddress` if `host`'s `address` is refused."""
        if (reason := self.refusal(address)) is not None:
            raise ForbiddenAddress(host, address, reason)

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        """Resolve `host` once and check every address it has: one refused address refuses
        the host, since which of them a connection would use is not ours to choose."""
        addresses = resolve(host, port)
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}: no addresses")
        for address in addresses:
            self.check_address(host, address)
        return addresses

    def url_refusal(self, url: str | httpx.URL) -> str | None:
        """Why `url` can be refused without a DNS lookup (scheme, credentials, a literal host
        address), or None; validators use it to refuse at enqueue. Host names can only be
        checked when connecting."""
        try:
            self.check_url(url)
        except ForbiddenURL as exc:
            return str(exc)
        return None

    def check_url(self, url: str | httpx.URL) -> None:
        """Raise `ForbiddenURL` for what `url_refusal` names; the transport checks every
        request (every redirect hop too) this way before connecting."""
        try:
            url = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ForbiddenURL(f"not a URL Warren can request: {exc}") from None
        if url.scheme not in ("http", "https"):
            raise ForbiddenURL(f"only http and https URLs are allowed, not {url.scheme!r}")
        if url.userinfo:
            raise ForbiddenURL(
                f"the URL of {url.host} carries credentials (user:password@); "
                "send them in a header instead"
            )
        if (address := literal_address(url.host)) is not None:
            self.check_address(url.host, address)


class _GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, resolving and checking the host itself and connecting to
    the checked address (a literal, so the inner backend makes no lookup of its own)."""

    def __init__(self, guard: NetworkGuard) -> None:
        self._guard = guard
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        error: Exception | None = None
        for address in self._guard.addresses(host, port):
            try:
                return self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc  # try the next address, as socket.create_connection does
        assert error is not None
        raise error

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with its connection pool on the guarded backend; every request it
    sends (each redirect hop is one) has its URL checked first, and every answer its encoding
    (`bodies.AnswerRefused` for more than one)."""

    def __init__(self, guard: NetworkGuard, verify: ssl.SSLContext | bool = True) -> None:
        context = httpx.create_ssl_context(verify=verify)
        super().__init__(verify=context)
        limits = httpx.Limits()
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(guard),
        )
        self.guard = guard

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.guard.check_url(request.url)
        response = super().handle_request(request)
        response.request = request
        bodies.check_encoding(response)  # before any reader decodes a byte of it
        return response


def client(
    guard: NetworkGuard | Settings, *, verify: ssl.SSLContext | bool = True, **options: Any
) -> httpx.Client:
    """An `httpx.Client` that refuses forbidden targets with `ForbiddenURL`/`ForbiddenAddress`
    (permanent errors, raised before connecting). `options` go to `httpx.Client` (timeout,
    follow_redirects, headers, ...). It ignores proxy and .netrc settings of the environment."""
    if isinstance(guard, Settings):
        guard = NetworkGuard.from_settings(guard)
    return httpx.Client(transport=GuardedTransport(guard, verify), trust_env=False, **options)


def refuse_at_enqueue(url: Any, settings: Settings) -> None:
    """What an enqueue refuses of a payload's URL without a DNS lookup: credentials in it
    (`user:password@`), and a literal address Warren may not reach. Raises `ValueError` (a
    pydantic validator's 422); the worker's connection is checked again, see `client()`."""
    if url.username or url.password:
        raise ValueError("credentials in the URL (user:password@) are not allowed")
    if literal_address(url.host or "") is None:
        return
    if (refusal := NetworkGuard.from_settings(settings).url_refusal(str(url))) is not None:
        raise ValueError(refusal)
