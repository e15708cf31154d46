"""TrustedProxyMiddleware, tested from the attacker's side: spoofed, chained and broken headers."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from bastion.errors import ConfigError
from bastion.middleware.proxy import (
    PEER_KEY,
    MalformedHeader,
    TrustedProxyMiddleware,
    parse_forwarded,
    parse_node,
)
from tests.middleware.rawasgi import call, recorder

PROXY = ("10.0.0.2", 5555)
STRANGER = ("198.51.100.9", 6666)


async def resolve(
    request_headers: list[tuple[str, str]],
    *,
    peer: tuple[str, int] | None = PROXY,
    trusted: Any = ("10.0.0.0/8",),
    scheme: str = "http",
    **options: Any,
) -> dict[str, Any]:
    """The client, scheme and peer the app sees."""
    inner, seen = recorder()
    app = TrustedProxyMiddleware(inner, trusted=trusted, **options)
    result = await call(app, headers=request_headers, client=peer, scheme=scheme)
    assert result.status == 200  # never a 500, whatever the headers
    return {"client": seen[0]["client"], "scheme": seen[0]["scheme"], "peer": seen[0][PEER_KEY]}


# --- attacks -------------------------------------------------------------------------------


async def test_spoofed_xff_from_untrusted_peer_is_ignored() -> None:
    """Pitfall #1/#2: a client picking its own rate-limit key (and faking HTTPS)."""
    seen = await resolve(
        [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https")], peer=STRANGER
    )
    assert seen == {"client": STRANGER, "scheme": "http", "peer": STRANGER}


async def test_spoofed_forwarded_from_untrusted_peer_is_ignored() -> None:
    seen = await resolve([("Forwarded", "for=6.6.6.6;proto=https")], peer=STRANGER)
    assert seen == {"client": STRANGER, "scheme": "http", "peer": STRANGER}


async def test_no_trusted_proxies_means_headers_never_believed() -> None:
    """Pitfall #3: uvicorn trusts 127.0.0.1 by default; bastion trusts nobody by default."""
    seen = await resolve(
        [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https")],
        peer=("127.0.0.1", 1),
        trusted=(),
    )
    assert seen == {"client": ("127.0.0.1", 1), "scheme": "http", "peer": ("127.0.0.1", 1)}


async def test_client_prefixed_spoof_through_trusted_proxy_gives_real_address() -> None:
    """The client sends ``XFF: spoofed``; the proxy appends the real peer: rightmost wins."""
    seen = await resolve([("X-Forwarded-For", "6.6.6.6, 203.0.113.5")])
    assert seen["client"] == ("203.0.113.5", 0)
    assert seen["peer"] == PROXY


async def test_chain_of_trusted_proxies_is_skipped() -> None:
    seen = await resolve([("X-Forwarded-For", "6.6.6.6, 203.0.113.5, 10.1.1.1, 10.2.2.2")])
    assert seen["client"] == ("203.0.113.5", 0)


async def test_all_hops_trusted_gives_leftmost() -> None:
    seen = await resolve([("X-Forwarded-For", "10.9.9.9, 10.1.1.1")])
    assert seen["client"] == ("10.9.9.9", 0)


async def test_multiple_xff_headers_are_one_list() -> None:
    """RFC 9110 §5.3: the client's own header line comes first; the proxy's line last."""
    seen = await resolve(
        [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.5, 10.1.1.1")]
    )
    assert seen["client"] == ("203.0.113.5", 0)


async def test_garbage_left_of_the_real_client_does_not_matter() -> None:
    seen = await resolve([("X-Forwarded-For", "<script>, not-an-ip, 203.0.113.5")])
    assert seen["client"] == ("203.0.113.5", 0)


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "",
        " , ",
        "203.0.113.5, 10.1.1.1, nonsense",  # garbage where the walk must read it
        "999.1.1.1",
        "1.2.3.4:99999",
        "1.2.3.4:port",
        "[::1",
        "[::1]x",
        "01.2.3.4",  # leading zeros: octal ambiguity, refused by ipaddress
        "unknown",
        "\u00e9\u00e9",
    ],
)
async def test_malformed_xff_is_ignored_never_500(value: str) -> None:
    seen = await resolve([("X-Forwarded-For", value), ("X-Forwarded-Proto", "https")])
    assert seen == {"client": PROXY, "scheme": "http", "peer": PROXY}


async def test_xff_with_ports_and_ipv6() -> None:
    assert (await resolve([("X-Forwarded-For", "203.0.113.5:4711")]))["client"] == (
        "203.0.113.5",
        4711,
    )
    assert (await resolve([("X-Forwarded-For", "2001:db8::1")]))["client"] == ("2001:db8::1", 0)
    assert (await resolve([("X-Forwarded-For", "[2001:db8::1]:443")]))["client"] == (
        "2001:db8::1",
        443,
    )


@pytest.mark.parametrize("mapped", ["::ffff:203.0.113.5", "::ffff:cb00:7105", "::FFFF:CB00:7105"])
async def test_ipv4_mapped_hops_become_ipv4(mapped: str) -> None:
    """Pitfall #9: both spellings of a mapped address are the same IPv4 client."""
    seen = await resolve([("X-Forwarded-For", mapped)])
    assert seen["client"] == ("203.0.113.5", 0)


async def test_ipv4_mapped_peer_is_normalised_and_matched_against_ipv4_networks() -> None:
    seen = await resolve([("X-Forwarded-For", "203.0.113.5")], peer=("::ffff:10.0.0.2", 1))
    assert seen["peer"] == ("10.0.0.2", 1)
    assert seen["client"] == ("203.0.113.5", 0)
    # untrusted mapped peer: normalised, headers ignored
    seen = await resolve([("X-Forwarded-For", "6.6.6.6")], peer=("::ffff:c633:6409", 2))
    assert seen == {"client": ("198.51.100.9", 2), "scheme": "http", "peer": ("198.51.100.9", 2)}


# --- X-Forwarded-Proto -----------------------------------------------------------------------


async def test_proto_from_trusted_proxy_sets_scheme() -> None:
    seen = await resolve([("X-Forwarded-For", "203.0.113.5"), ("X-Forwarded-Proto", "HTTPS")])
    assert seen["scheme"] == "https"


async def test_proto_alone_sets_scheme_and_keeps_client() -> None:
    seen = await resolve([("X-Forwarded-Proto", "https")])
    assert seen == {"client": PROXY, "scheme": "https", "peer": PROXY}


async def test_proto_list_aligned_with_hops() -> None:
    seen = await resolve(
        [("X-Forwarded-For", "203.0.113.5, 10.1.1.1"), ("X-Forwarded-Proto", "https, http")]
    )
    assert seen["client"] == ("203.0.113.5", 0)
    assert seen["scheme"] == "https"


@pytest.mark.parametrize("proto", ["ftp", "https, http, http", "javascript", ""])
async def test_unknown_or_misaligned_proto_ignored_with_its_header(proto: str) -> None:
    seen = await resolve([("X-Forwarded-For", "203.0.113.5"), ("X-Forwarded-Proto", proto)])
    assert seen == {"client": PROXY, "scheme": "http", "peer": PROXY}


# --- Forwarded (RFC 7239) --------------------------------------------------------------------


async def test_forwarded_with_quoted_ipv6_and_port() -> None:
    seen = await resolve([("Forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https')])
    assert seen == {"client": ("2001:db8:cafe::17", 4711), "scheme": "https", "peer": PROXY}


async def test_forwarded_walk_right_to_left() -> None:
    value = 'for=6.6.6.6;proto=http, For="203.0.113.5";Proto=HTTPS, for=10.1.1.1;proto=http'
    seen = await resolve([("Forwarded", value)])
    assert seen["client"] == ("203.0.113.5", 0)
    assert seen["scheme"] == "https"  # the proto of the client's own element


async def test_forwarded_multiple_headers_and_by_host_params() -> None:
    seen = await resolve(
        [
            ("Forwarded", "for=6.6.6.6"),
            ("Forwarded", 'for=203.0.113.5;by="[::1]";host=example.com;proto=https'),
        ]
    )
    assert seen["client"] == ("203.0.113.5", 0)
    assert seen["scheme"] == "https"


@pytest.mark.parametrize(
    "value",
    [
        "for=unknown",
        "for=_hidden",
        "for=2001:db8::1",  # IPv6 must be quoted: ':' is not a token character
        'for="[2001:db8::1"',
        "for=1.2.3.4;for=5.6.7.8",  # a parameter twice in one element (§4)
        "proto=https",  # no for=
        "for=1.2.3.4;proto=gopher",
        'for="1.2.3.4',
        "for = 1.2.3.4",
        "for=1.2.3.4,,",
        "garbage",
        "",
    ],
)
async def test_malformed_forwarded_is_ignored(value: str) -> None:
    seen = await resolve([("Forwarded", value)])
    assert seen == {"client": PROXY, "scheme": "http", "peer": PROXY}


async def test_auto_prefers_xff_so_a_passed_through_forwarded_cannot_spoof() -> None:
    """nginx appends to XFF but forwards the client's own Forwarded header untouched."""
    seen = await resolve([("Forwarded", "for=6.6.6.6"), ("X-Forwarded-For", "203.0.113.5")])
    assert seen["client"] == ("203.0.113.5", 0)


async def test_pinned_header_family() -> None:
    headers = [("Forwarded", "for=203.0.113.5"), ("X-Forwarded-For", "6.6.6.6")]
    assert (await resolve(headers, headers="forwarded"))["client"] == ("203.0.113.5", 0)
    only_forwarded = [("Forwarded", "for=6.6.6.6")]
    assert (await resolve(only_forwarded, headers="x-forwarded"))["client"] == PROXY


async def test_single_addresses_and_objects_accepted_as_trusted() -> None:
    trusted = ["10.0.0.2", ipaddress.ip_network("192.168.0.0/16"), ipaddress.ip_address("::1")]
    seen = await resolve([("X-Forwarded-For", "203.0.113.5")], trusted=trusted)
    assert seen["client"] == ("203.0.113.5", 0)
    seen = await resolve([("X-Forwarded-For", "203.0.113.5")], trusted=trusted, peer=("::1", 9))
    assert seen["client"] == ("203.0.113.5", 0)
    seen = await resolve([("X-Forwarded-For", "6.6.6.6")], trusted=trusted, peer=("10.0.0.3", 9))
    assert seen["client"] == ("10.0.0.3", 9)


async def test_no_client_in_scope_is_left_alone() -> None:
    seen = await resolve([("X-Forwarded-For", "6.6.6.6")], peer=None)
    assert seen == {"client": None, "scheme": "http", "peer": None}


async def test_scope_is_rewritten_in_place_for_outer_layers() -> None:
    inner, _ = recorder()
    app = TrustedProxyMiddleware(inner, trusted=["10.0.0.0/8"])
    result = await call(app, headers=[("X-Forwarded-For", "203.0.113.5")], client=PROXY)
    assert result.scope["client"] == ("203.0.113.5", 0)


# --- construction and parsers ---------------------------------------------------------------


@pytest.mark.parametrize("bad", [["not-an-ip"], ["10.0.0.0/33"], [""], "10.0.0.1", [None]])
def test_bad_trusted_entries_fail_at_construction(bad: Any) -> None:
    inner, _ = recorder()
    with pytest.raises(ConfigError) as info:
        TrustedProxyMiddleware(inner, trusted=bad)
    assert info.value.name == "trusted_proxies"


def test_bad_header_family_fails_at_construction() -> None:
    inner, _ = recorder()
    with pytest.raises(ConfigError):
        TrustedProxyMiddleware(inner, trusted=[], headers="both")  # type: ignore[arg-type]


def test_mapped_trusted_network_means_ipv4() -> None:
    inner, _ = recorder()
    app = TrustedProxyMiddleware(inner, trusted=["::ffff:10.0.0.0/104"])
    assert app.is_trusted(ipaddress.ip_address("10.1.2.3"))


def test_parse_forwarded_unescapes_quoted_pairs() -> None:
    assert parse_forwarded('for="\\[::1\\]:80";proto=https, for=1.2.3.4') == [
        {"for": "[::1]:80", "proto": "https"},
        {"for": "1.2.3.4"},
    ]
    with pytest.raises(MalformedHeader):
        parse_forwarded("for=1.2.3.4 junk")


def test_parse_node() -> None:
    assert parse_node(" 1.2.3.4 ") == (ipaddress.ip_address("1.2.3.4"), 0)
    assert parse_node("[::ffff:1.2.3.4]:8") == (ipaddress.ip_address("1.2.3.4"), 8)
    with pytest.raises(MalformedHeader):
        parse_node("example.com")
