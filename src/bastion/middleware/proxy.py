"""Trusted-proxy resolution: who the client really is, and which scheme it used.

Why: the rate limits key on the client address and the HTTPS layer on the scheme. Both are
worthless if any client can choose them by sending ``X-Forwarded-For: <anything>`` or
``X-Forwarded-Proto: https`` (express's ``trust proxy: true``,
https://github.com/express-rate-limit/express-rate-limit/issues/134; uvicorn's default
``forwarded_allow_ips`` of 127.0.0.1, which trusts any local client; RFC 9700 §4.13). So
forwarding headers are believed **only** when the direct peer (``scope["client"]``) is
inside one of the configured ``trusted`` networks.

How the client is found (the right-to-left walk every careful proxy library uses): each proxy
*appends* the address it received the connection from, so only the right-hand part of the
list was written by proxies we trust; everything to the left of the first untrusted hop was
written by the client and may be forged. Walking from the right, trusted hops are skipped and
the first untrusted hop is the client (``X-Forwarded-For: spoofed, real`` → ``real``). When
every hop is trusted, the leftmost one is the client. Several header lines are one list
(RFC 9110 §5.3).

Headers understood:

* ``Forwarded`` (RFC 7239 §4): ``for=`` (IPv4, ``"[IPv6]"``, optional ``:port``; quoted
  strings with escapes) and ``proto=`` of the client's element.
* ``X-Forwarded-For`` / ``X-Forwarded-Proto``: the proto list is aligned with the hops when it
  has as many entries, else used only when it holds a single value.

``headers="auto"`` (default) reads ``X-Forwarded-For`` when a trusted peer sent one and
``Forwarded`` otherwise; ``"x-forwarded"`` or ``"forwarded"`` pin one family. Why not merge
them: a proxy that only manages one family passes the other one through from the client
untouched (nginx's usual ``$proxy_add_x_forwarded_for`` leaves a client's ``Forwarded`` as is),
so believing both would let the client pick its address. Pin the family your proxy writes.

Anything malformed — an unparsable address on the path of the walk, ``for=unknown`` or an
obfuscated node, a broken ``Forwarded`` element, an unknown proto — is ignored as a whole:
the peer stays the client and the scheme is unchanged. Never a 500.

IPv4-mapped IPv6 addresses (``::ffff:1.2.3.4``, also written ``::ffff:102:304``) are
normalised to IPv4, for the peer too, so one IPv4 client has one rate-limit key
(https://github.com/advisories/GHSA-46wh-pxpv-q5gq).

Scope keys: reads ``client``, ``scheme``, ``headers``; writes ``client`` and ``scheme``
(in place, so outer layers such as the access log see the result) and
``bastion.peer`` (the direct peer, after IPv4-mapped normalisation). With no trusted networks
the layer only records ``bastion.peer``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Literal

from bastion.asgi import ASGIApp, Receive, Scope, Send
from bastion.caching import BoundedDict
from bastion.errors import ConfigError

__all__ = [
    "PEER_KEY",
    "IPAddress",
    "IPNetwork",
    "TrustedProxyMiddleware",
    "normalise_ip",
    "parse_forwarded",
    "parse_node",
    "parse_trusted",
]

PEER_KEY = "bastion.peer"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
HeaderFamily = Literal["auto", "forwarded", "x-forwarded"]

_OPTION = "trusted_proxies"
_SCHEMES = frozenset({"http", "https"})
_PLAIN_PROTOS = {b"https": "https", b"http": "http"}  # X-Forwarded-Proto values as sent
_CACHE_SIZE = 1024
# RFC 7239 §4: forwarded-pair = token "=" value; value = token / quoted-string (RFC 9110 §5.6).
_PAIR = re.compile(
    r"""[ \t]*([!#$%&'*+.^_`|~0-9A-Za-z-]+)=([!#$%&'*+.^_`|~0-9A-Za-z-]+|"(?:[^"\\]|\\.)*")[ \t]*"""
)
_QUOTED_PAIR = re.compile(r"\\(.)")
_PORT = re.compile(r"[0-9]{1,5}|_[A-Za-z0-9._-]+")  # RFC 7239 §6: port or obfuscated port


class MalformedHeader(ValueError):
    """A forwarding header that cannot be trusted; the layer then ignores it."""


def normalise_ip(ip: IPAddress) -> IPAddress:
    """``::ffff:a.b.c.d`` (in either spelling) becomes ``a.b.c.d``; others are unchanged."""
    if ip.version == 6:
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return mapped
    return ip


def parse_node(text: str) -> tuple[IPAddress, int]:
    """An address with an optional port: ``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]:80``.

    Raises :class:`MalformedHeader` for anything else, including RFC 7239's ``unknown`` and
    obfuscated identifiers (``_hidden``): an unidentifiable hop cannot be a rate-limit key.
    """
    text = text.strip()
    port = ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise MalformedHeader("unclosed [")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise MalformedHeader("junk after ]")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host = text
    if port and not _PORT.fullmatch(port):
        raise MalformedHeader("bad port")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise MalformedHeader("not an IP address") from None
    number = int(port) if port[:1].isdigit() else 0
    if number > 65535:
        raise MalformedHeader("port out of range")
    return normalise_ip(ip), number


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 ``Forwarded`` → one dict per element (lower-case parameter names).

    Strict: a syntax error anywhere, or a parameter repeated inside one element (§4 "MUST NOT
    occur more than once"), raises :class:`MalformedHeader`.
    """
    elements: list[dict[str, str]] = []
    current: dict[str, str] = {}
    pos, end = 0, len(value)
    while True:
        match = _PAIR.match(value, pos)
        if match is None:
            raise MalformedHeader("bad forwarded-pair")
        name, raw = match.group(1).lower(), match.group(2)
        if name in current:
            raise MalformedHeader(f"{name} repeated")
        current[name] = _QUOTED_PAIR.sub(r"\1", raw[1:-1]) if raw.startswith('"') else raw
        pos = match.end()
        if pos == end:
            elements.append(current)
            return elements
        if value[pos] == ";":
            pos += 1
        elif value[pos] == ",":
            elements.append(current)
            current = {}
            pos += 1
        else:
            raise MalformedHeader("expected ; or ,")


def parse_trusted(trusted: Iterable[str | IPAddress | IPNetwork]) -> tuple[IPNetwork, ...]:
    """Addresses and CIDRs → networks; a bad entry raises ``ConfigError`` naming it."""
    if isinstance(trusted, str | bytes):
        raise ConfigError(_OPTION, "give a list of addresses or CIDRs, not one string")
    networks: list[IPNetwork] = []
    for entry in trusted:
        try:
            if isinstance(entry, ipaddress.IPv4Network | ipaddress.IPv6Network):
                network: IPNetwork = entry
            else:
                text = str(entry).strip()
                if not text:
                    raise ValueError("empty entry")
                network = ipaddress.ip_network(text, strict=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(_OPTION, f"{entry!r} is not an IP address or CIDR ({exc})") from None
        if network.version == 6 and network.prefixlen >= 96:
            mapped = normalise_ip(network.network_address)
            if mapped.version == 4:  # ::ffff:10.0.0.0/104 means 10.0.0.0/8
                network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
        networks.append(network)
    return tuple(networks)


class TrustedProxyMiddleware:
    """Believe forwarding headers only from trusted proxies; rewrite client and scheme."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted: Iterable[str | IPAddress | IPNetwork] = (),
        headers: HeaderFamily = "auto",
    ) -> None:
        if headers not in ("auto", "forwarded", "x-forwarded"):
            raise ConfigError(
                "TrustedProxyMiddleware(headers=...)", "must be auto, forwarded or x-forwarded"
            )
        self.app = app
        self.networks = parse_trusted(trusted)
        self.family: HeaderFamily = headers
        self._trust_cache: BoundedDict[str, bool] = BoundedDict(_CACHE_SIZE)

    def is_trusted(self, ip: IPAddress) -> bool:
        """Whether *ip* lies in one of the trusted networks."""
        return any(ip in network for network in self.networks)

    def _peer_trusted(self, host: str) -> bool:
        cached = self._trust_cache.get(host)
        if cached is None:
            try:
                cached = self.is_trusted(normalise_ip(ipaddress.ip_address(host)))
            except ValueError:
                cached = False  # a unix socket path or a name: never a trusted proxy
            self._trust_cache.put(host, cached)
        return cached

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        # Cheap pre-check for IPv4-mapped IPv6; a plain IPv4 peer has no ':' at all.
        if client and ":" in client[0] and "ffff" in client[0].lower():
            try:
                ip = normalise_ip(ipaddress.ip_address(client[0]))
            except ValueError:
                pass
            else:
                client = (str(ip), client[1])
                scope["client"] = client
        scope[PEER_KEY] = client
        if self.networks and client:
            trusted = self._trust_cache.get(client[0])
            if trusted is None:
                trusted = self._peer_trusted(client[0])
            if trusted:
                self._resolve(scope)
        await self.app(scope, receive, send)

    # --- resolution (only for a trusted peer) ------------------------------------------------
    def _resolve(self, scope: Scope) -> None:
        forwarded: list[bytes] = []
        xff: list[bytes] = []
        xfp: list[bytes] = []
        for key, value in scope.get("headers", ()):
            if key == b"x-forwarded-for":
                xff.append(value)
            elif key == b"x-forwarded-proto":
                xfp.append(value)
            elif key == b"forwarded":
                forwarded.append(value)
        if not xff and not forwarded:
            # No client address to find: at most a scheme. The general path below gives the
            # same answers (nothing read under family "forwarded"; one X-Forwarded-Proto of
            # exactly "https"/"http" is that scheme), only slower.
            if not xfp or self.family == "forwarded":
                return
            if len(xfp) == 1 and type(xfp[0]) is bytes:
                proto = _PLAIN_PROTOS.get(xfp[0])
                if proto is not None:
                    scope["scheme"] = proto
                    return
        use_forwarded = self.family == "forwarded" or (
            self.family == "auto" and forwarded and not xff
        )
        try:
            if use_forwarded:
                result = self._from_forwarded(forwarded)
            else:
                result = self._from_x_forwarded(xff, xfp)
        except (MalformedHeader, UnicodeDecodeError):
            return  # ignored as a whole: the peer stays the client
        address, proto = result
        if address is not None:
            scope["client"] = (str(address[0]), address[1])
        if proto is not None:
            scope["scheme"] = proto

    def _from_x_forwarded(
        self, xff: list[bytes], xfp: list[bytes]
    ) -> tuple[tuple[IPAddress, int] | None, str | None]:
        hops = [h for value in xff for h in value.decode("latin-1").split(",")]
        protos = [p.strip().lower() for value in xfp for p in value.decode("latin-1").split(",")]
        address: tuple[IPAddress, int] | None = None
        index = -1
        for index in range(len(hops) - 1, -1, -1):
            address = parse_node(hops[index])  # raises on garbage on the walk's path
            if not self.is_trusted(address[0]):
                break
        proto: str | None = None
        if protos:
            if len(protos) == len(hops) and index >= 0:
                proto = protos[index]
            elif len(protos) == 1:
                proto = protos[0]
            else:
                raise MalformedHeader("X-Forwarded-Proto does not line up with the hops")
            if proto not in _SCHEMES:
                raise MalformedHeader("unknown proto")
        return address, proto

    def _from_forwarded(
        self, values: list[bytes]
    ) -> tuple[tuple[IPAddress, int] | None, str | None]:
        if not values:
            return None, None
        elements = parse_forwarded(", ".join(v.decode("latin-1") for v in values))
        element: dict[str, str] = {}
        address: tuple[IPAddress, int] | None = None
        for element in reversed(elements):
            node = element.get("for")
            if node is None:
                raise MalformedHeader("element without for=")
            address = parse_node(node)
            if not self.is_trusted(address[0]):
                break
        proto = element.get("proto")
        if proto is not None:
            proto = proto.lower()
            if proto not in _SCHEMES:
                raise MalformedHeader("unknown proto")
        return address, proto
