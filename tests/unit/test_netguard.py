"""The address rules of `service.netguard` (no services, no traffic: refusals happen before
any connection, and the only lookups are of numeric hosts, which the resolver answers itself)."""

from ipaddress import ip_address, ip_network

import pytest
from pydantic import ValidationError

from service.netguard import (
    ForbiddenAddress,
    ForbiddenURL,
    NetworkGuard,
    forbidden_reason,
    literal_address,
)
from service.settings import Settings

TESTS_GUARD = NetworkGuard((ip_network("127.0.0.1/32"),))  # what the tests' settings allow


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.0.1", "private"),
        ("fc00::1", "private"),
        ("fec0::1", "site-local"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.10", "private"),  # documentation
        ("198.18.0.1", "private"),  # benchmarking
        ("169.254.169.254", "cloud metadata"),
        ("169.254.170.2", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("::ffff:127.0.0.1", "IPv6 form of 127.0.0.1, a loopback"),
        ("::ffff:169.254.169.254", "IPv6 form of 169.254.169.254, a cloud metadata"),
        ("::ffff:10.0.0.1", "IPv6 form of 10.0.0.1, a private"),
        ("64:ff9b::a00:1", "IPv6 form of 10.0.0.1, a private"),  # NAT64
        ("2002:7f00:1::", "IPv6 form of 127.0.0.1, a loopback"),  # 6to4
    ],
)
def test_addresses_that_are_not_public_are_refused_saying_why(address, reason) -> None:
    assert reason in (forbidden_reason(ip_address(address)) or "")


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "1.1.1.1", "2606:4700::1111", "::ffff:1.1.1.1", "64:ff9b::101:101"]
)
def test_public_addresses_pass(address) -> None:
    assert forbidden_reason(ip_address(address)) is None
    assert NetworkGuard().refusal(ip_address(address)) is None


def test_an_allowed_network_opens_exactly_itself() -> None:
    assert TESTS_GUARD.refusal(ip_address("127.0.0.1")) is None
    assert TESTS_GUARD.refusal(ip_address("::ffff:127.0.0.1")) is None  # the same host
    assert TESTS_GUARD.refusal(ip_address("127.0.0.2")) == "a loopback address"
    assert TESTS_GUARD.refusal(ip_address("::1")) == "a loopback address"


def test_metadata_addresses_stay_refused_inside_an_allowed_network() -> None:
    guard = NetworkGuard((ip_network("169.254.0.0/16"), ip_network("fd00::/8")))
    assert guard.refusal(ip_address("169.254.1.1")) is None
    assert guard.refusal(ip_address("169.254.169.254")) == "a cloud metadata address"
    assert guard.refusal(ip_address("fd00:ec2::254")) == "a cloud metadata address"


# The C resolver (getaddrinfo, inet_aton) reads all of these as 127.0.0.1 / 127.0.0.2.
SPELLINGS = {
    "127.0.0.1": ["127.0.0.1", "2130706433", "0x7f000001", "127.1", "0177.0.0.1", "017700000001"],
    "127.0.0.2": ["127.0.0.2", "2130706434", "0x7f000002", "127.2", "0177.0.0.2", "0x7f.0.0.2"],
}


@pytest.mark.parametrize("spelling", SPELLINGS["127.0.0.1"])
def test_every_spelling_is_judged_by_the_address_it_resolves_to(spelling) -> None:
    with pytest.raises(ForbiddenAddress) as caught:
        NetworkGuard().addresses(spelling, 80)
    assert caught.value.address == ip_address("127.0.0.1")
    assert caught.value.reason == "a loopback address"
    assert TESTS_GUARD.addresses(spelling, 80) == [ip_address("127.0.0.1")]


@pytest.mark.parametrize("spelling", SPELLINGS["127.0.0.2"])
def test_every_spelling_of_127_0_0_2_is_refused_though_127_0_0_1_is_allowed(spelling) -> None:
    with pytest.raises(ForbiddenAddress, match=r"127\.0\.0\.2\)? is a loopback address"):
        TESTS_GUARD.addresses(spelling, 80)


@pytest.mark.parametrize("spelling", [*SPELLINGS["127.0.0.2"], "[::ffff:127.0.0.2]"])
def test_a_literal_address_is_read_in_every_spelling(spelling) -> None:
    assert literal_address(spelling) in (ip_address("127.0.0.2"), ip_address("::ffff:7f00:2"))


@pytest.mark.parametrize(
    "spelling", ["127.0.0.2", "2130706434", "0x7f000002", "127.2", "[::ffff:127.0.0.2]"]
)
def test_a_url_with_a_literal_address_is_refused_without_a_lookup(spelling) -> None:
    with pytest.raises(ForbiddenAddress):
        TESTS_GUARD.check_url(f"http://{spelling}:8000/")
    assert "loopback" in (TESTS_GUARD.url_refusal(f"http://{spelling}/") or "")


def test_a_url_httpx_cannot_read_is_refused() -> None:
    """httpx refuses a dotted quad with octal parts; the guard says so rather than raise."""
    assert "not a URL" in (TESTS_GUARD.url_refusal("http://0177.0.0.2/") or "")


@pytest.mark.parametrize("host", ["example.com", "127.0.0.1.nip.io", "0x7f.example", "1e100.net"])
def test_host_names_are_not_literal_addresses(host) -> None:
    assert literal_address(host) is None
    assert NetworkGuard().url_refusal(f"https://{host}/hook") is None


def test_urls_with_credentials_or_other_schemes_are_refused() -> None:
    with pytest.raises(ForbiddenURL, match="carries credentials") as caught:
        NetworkGuard().check_url("https://guest:s3cret@example.com/")
    assert "s3cret" not in str(caught.value) and "guest" not in str(caught.value)
    with pytest.raises(ForbiddenURL, match="only http and https"):
        NetworkGuard().check_url("file:///etc/passwd")


def test_allowed_networks_come_from_a_comma_separated_setting(monkeypatch) -> None:
    monkeypatch.setenv("WARREN_ALLOWED_NETWORKS", "127.0.0.1/32, 10.1.0.0/16,fd12::/16")
    guard = NetworkGuard.from_settings(Settings())
    assert guard.allowed == (
        ip_network("127.0.0.1/32"),
        ip_network("10.1.0.0/16"),
        ip_network("fd12::/16"),
    )
    assert NetworkGuard.from_settings(Settings(allowed_networks="")).allowed == ()


def test_an_allowed_network_with_host_bits_set_is_a_configuration_error() -> None:
    with pytest.raises(ValidationError, match="allowed_networks"):
        Settings(allowed_networks="10.1.2.3/16")
