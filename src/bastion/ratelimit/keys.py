"""Who is charged (the client key) and which path a rule sees (the canonical path).

Both exist to close bypasses, so each branch names the trick it defeats.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from functools import lru_cache
from urllib.parse import unquote

from bastion.asgi import Scope
from bastion.caching import BoundedDict
from bastion.errors import ConfigError

__all__ = ["UNKNOWN_CLIENT", "canonical_path", "client_key", "ip_key", "make_client_key"]

#: The key of a request whose client address is missing or unusable. They all share it,
#: which is the safe direction: an attacker cannot get a fresh budget by hiding the address.
UNKNOWN_CLIENT = "unknown"

# RFC 6052 §2.1 well-known NAT64 prefix: behind SIIT/NAT64 every IPv4 client arrives as
# 64:ff9b::a.b.c.d, and a /64 key would put all of them in one bucket.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@lru_cache(maxsize=16384)
def ip_key(host: str, ipv6_prefix: int = 64) -> str:
    """The rate-limit key for an address: IPv4 as is, IPv6 as its ``/ipv6_prefix`` network.

    * IPv4-mapped IPv6, in either spelling (``::ffff:1.2.3.4``, ``::ffff:102:304``), is the
      IPv4 client it carries (https://github.com/advisories/GHSA-46wh-pxpv-q5gq: dual-stack
      sockets would otherwise give every IPv4 client's traffic to one key, or one client two).
    * Other IPv6 addresses are keyed by their network (as express-rate-limit 8 does,
      https://github.com/express-rate-limit/express-rate-limit/issues/502): one subscriber owns
      a whole /64 (often a /56) and can rotate through 2^64 addresses, each a fresh budget.
    * Anything that is not an address (a Unix socket peer, a test client's name) is used as is.
    """
    try:
        ip = ipaddress.ip_address(host[1:-1] if host.startswith("[") else host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    mapped = ip.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    if ip in _NAT64:
        return str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    shift = 128 - ipv6_prefix
    network = ipaddress.IPv6Address((int(ip) >> shift) << shift)
    return f"{network}/{ipv6_prefix}"


def make_client_key(ipv6_prefix: int = 64) -> Callable[[Scope], str]:
    """A key function charging the client address (resolved by the trusted-proxy layer).

    It reads ``scope["client"]`` only: forwarding headers are the proxy layer's business, and
    that layer believes them only from configured proxies (:mod:`bastion.middleware.proxy`).
    """
    if isinstance(ipv6_prefix, bool) or not isinstance(ipv6_prefix, int):
        raise ConfigError("ipv6_prefix", "must be an integer")
    if not 32 <= ipv6_prefix <= 128:
        # Wider than /32 would lump unrelated networks together; 128 disables grouping.
        raise ConfigError("ipv6_prefix", "must be between 32 and 128")

    # host -> key: ip_key's answers without its call per request; distinct clients are bounded
    known: BoundedDict[str, str] = BoundedDict(_KNOWN_HOSTS)

    def key(scope: Scope) -> str:
        client = scope.get("client")
        if not client:
            return UNKNOWN_CLIENT
        host = client[0]
        if type(host) is not str:  # not what ASGI servers send; decided without the memory
            return ip_key(str(host), ipv6_prefix) if host else UNKNOWN_CLIENT
        found = known.get(host)
        if found is None:
            found = known.put(host, ip_key(str(host), ipv6_prefix) if host else UNKNOWN_CLIENT)
        return found

    key.__name__ = key.__qualname__ = f"client_key_v6_{ipv6_prefix}"
    return key


_KNOWN_HOSTS = 16384

#: The default key function: the client address, IPv6 grouped by /64.
client_key = make_client_key(64)

# Anything that could make two spellings of one path differ: percent-escapes (%2F, %6C),
# empty or dot segments, backslashes (some stacks treat them as slashes).
_NEEDS_WORK = re.compile(r"%|//|/\.|\\")


def canonical_path(path: str) -> str:
    """The spelling of *path* that rule prefixes are compared with.

    Lower-case (``/API/v1/auth/login``), percent-decoded until stable (``/api%2Fv1``,
    ``/api/v1/auth/%6Cogin``, double encoding), backslashes as slashes, empty and ``.``
    segments dropped (``/api//v1``, ``/api/./v1``), ``..`` resolved, no trailing slash.
    The path layer before this one should already have refused or canonicalised such paths;
    this is defence in depth, and it errs towards matching *more* rules: a variant can only
    ever be charged, never open a fresh budget (spellings such as ``/api%2Fv1/auth/login``
    reach the same handler once uvicorn decodes the path).
    """
    if not _NEEDS_WORK.search(path):
        path = path.lower()
        if path.endswith("/"):
            return path[:-1] or "/"
        return path if path.startswith("/") else "/" + path
    for _ in range(4):  # %2525… decodes one level per pass
        decoded = unquote(path, errors="replace")
        if decoded == path:
            break
        path = decoded
    segments: list[str] = []
    for segment in path.replace("\\", "/").lower().split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)
