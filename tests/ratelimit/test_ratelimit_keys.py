"""Client keys and canonical paths: each case is a known way to get a fresh budget."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.errors import ConfigError
from bastion.ratelimit.keys import (
    UNKNOWN_CLIENT,
    canonical_path,
    client_key,
    ip_key,
    make_client_key,
)


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("1.2.3.4", "1.2.3.4"),
        # Pitfall #9 (GHSA-46wh-pxpv-q5gq): IPv4-mapped IPv6 in both spellings is the IPv4 client.
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("::ffff:102:304", "1.2.3.4"),
        ("[::ffff:1.2.3.4]", "1.2.3.4"),
        # Pitfall #8: an IPv6 subscriber owns a /64; every address in it is one client.
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::abcd", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        # An IPv4 address written inside an ordinary IPv6 address is not a mapped one.
        ("2001:db8::1.2.3.4", "2001:db8::/64"),
        # RFC 6052 NAT64: IPv4 clients behind a translator are still told apart.
        ("64:ff9b::1.2.3.4", "1.2.3.4"),
        ("64:ff9b::5.6.7.8", "5.6.7.8"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::1", "::/64"),
        ("testclient", "testclient"),
    ],
)
def test_ip_key(host: str, key: str) -> None:
    assert ip_key(host) == key


def test_rotating_inside_a_64_gives_no_fresh_budget() -> None:
    keys = {ip_key(f"2001:db8:aa:bb:{i:x}:{i:x}:{i:x}:{i:x}") for i in range(1, 200)}
    assert keys == {"2001:db8:aa:bb::/64"}


def test_client_key_reads_only_the_resolved_client() -> None:
    spoof = [(b"x-forwarded-for", b"6.6.6.6"), (b"forwarded", b"for=6.6.6.6")]
    assert client_key({"client": ("10.0.0.1", 5000), "headers": spoof}) == "10.0.0.1"
    assert client_key({"client": ("::ffff:10.0.0.1", 5000), "headers": []}) == "10.0.0.1"


@pytest.mark.parametrize("client", [None, ("", 0), ()])
def test_missing_client_shares_one_bucket(client: object) -> None:
    assert client_key({"client": client}) == UNKNOWN_CLIENT
    assert client_key({}) == UNKNOWN_CLIENT


def test_custom_ipv6_prefix() -> None:
    assert make_client_key(56)({"client": ("2001:db8:1:2ff::1", 1)}) == "2001:db8:1:200::/56"
    assert make_client_key(128)({"client": ("2001:db8::1", 1)}) == "2001:db8::1/128"
    for bad in (31, 129, True, "64"):
        with pytest.raises(ConfigError, match="ipv6_prefix"):
            make_client_key(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "variant",
    [
        "/api/v1/auth/login",
        "/API/v1/auth/login",
        "/Api/V1/Auth/LOGIN",
        "/api/v1/auth/login/",
        "/api//v1/auth/login",
        "/api/v1//auth///login//",
        "/api/./v1/auth/login",
        "/api/v1/x/../auth/login",
        "/api/v1/auth/login/.",
        "/api%2Fv1/auth/login",
        "/api%2fv1%2fauth%2flogin",
        "/api/v1/auth/%6Cogin",
        "/api/v1/auth/%6cogin",
        "/api%252Fv1/auth/login",
        "/api\\v1\\auth\\login",
        "/api/v1/auth/%2e/login",
        "/api/v1/auth/%2e%2e/auth/login",
    ],
)
def test_path_variants_share_one_canonical_form(variant: str) -> None:
    assert canonical_path(variant) == "/api/v1/auth/login"


@pytest.mark.parametrize(
    ("path", "canonical"),
    [("/", "/"), ("", "/"), ("//", "/"), ("/..", "/"), ("/a/../..", "/"), ("/healthz", "/healthz")],
)
def test_canonical_path_edges(path: str, canonical: str) -> None:
    assert canonical_path(path) == canonical


@settings(max_examples=200, deadline=None)
@given(
    hosts=st.lists(
        st.one_of(st.ip_addresses().map(str), st.sampled_from(["", "unix:/run/app.sock", "[::1]"])),
        max_size=20,
    ),
    prefix=st.sampled_from([48, 56, 64, 128]),
)
def test_client_key_remembers_exactly_what_ip_key_says(hosts: list[str], prefix: int) -> None:
    """The key function keeps answers per host: asked again, in any order, it must agree."""
    key = make_client_key(prefix)
    for host in [*hosts, *reversed(hosts)]:
        expected = ip_key(host, prefix) if host else UNKNOWN_CLIENT
        assert key({"client": (host, 1234)}) == expected
    assert key({"client": None}) == UNKNOWN_CLIENT
    assert key({"client": (None, 0)}) == UNKNOWN_CLIENT
