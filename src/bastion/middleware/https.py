"""HTTPS enforcement: plain HTTP gets a redirect (GET/HEAD) or a refusal, never the API.

Why: over plain HTTP a bearer token, a refresh cookie or a password travels in clear text.
The contract's transport rules:

* ``GET``/``HEAD`` over HTTP → ``301`` to ``https://<host>[:<https_port>]<path>?<query>``
  (``Host: 127.0.0.1:8080`` → ``Location: https://127.0.0.1:8443/...``; port 443 omitted).
  The path is the *raw* path, percent-encoding preserved, so the redirect names exactly the
  resource that was asked for.
* any other method → ``403 {"error":"HTTPS required"}``: its body (credentials, an order)
  has already crossed the network in clear text; a 301/307/308 would make the client send it
  again, and a client that follows blindly would learn nothing.
* no HSTS here: RFC 6797 §7.2 forbids it over plain HTTP (the headers layer adds it only
  over HTTPS).

The redirect's host comes from the ``Host`` header, so it is validated first (RFC 9112 §3.2:
a missing, repeated or invalid ``Host`` gets ``400``): a reg-name, an IPv4 address or a
bracketed IPv6 literal, with an optional port that is dropped. A ``Host`` carrying userinfo
(``evil.example@good``), a path, spaces or CR/LF cannot produce an open redirect or a split
header. With ``allowed_hosts`` set, any other host is also refused with ``400`` (no Host
header poisoning of cached redirects).

Two forms: :class:`HTTPSOnlyMiddleware` inside the main app, acting when the request's
(proxy-resolved) scheme is ``http`` — e.g. behind a TLS-terminating proxy that says
``X-Forwarded-Proto: http`` — and :func:`redirect_app`, the whole application of the
plain-HTTP listener (port 8080 by default). Wrap the latter in the request-id and headers
layers to give its answers the contract's headers.

The middleware's ``mode``: ``"redirect"`` (the contract: ``301`` for ``GET``/``HEAD``,
``403`` otherwise) or ``"refuse"`` (``403`` for every method: an API whose clients are
programs gains nothing from a redirect they would follow with the credentials already sent in
clear, as ASVS 5.0 §4.1.2 notes). ``local_http=True`` (what ``secure(https="auto")`` uses)
serves plain HTTP to *local development* only, which :func:`is_local_development` defines
from the transport, not from anything a remote client controls alone:

* the TCP peer is a loopback address (``127.0.0.0/8``, ``::1``), and
* ``Host`` names a loopback host (``localhost``, ``*.localhost`` per RFC 6761 §6.3, a
  ``127.x`` or ``[::1]`` literal), and
* the request carries no forwarding header (``Forwarded``, ``X-Forwarded-*``, ``X-Real-IP``,
  ``Via``): a proxy is involved, so the request may come from anywhere.

So a remote client cannot opt out by sending ``Host: localhost`` (its peer address is not
loopback), a page using DNS rebinding (``Host: attacker.example`` on 127.0.0.1) is refused,
and ``X-Forwarded-Proto`` from an untrusted peer changes nothing. One case looks local and is
not: a proxy on the same host that forwards without any forwarding header *and* rewrites
``Host`` to the upstream's loopback address (nginx's bare ``proxy_pass`` does). Production
behind a proxy therefore sets ``trusted_proxies`` (which turns ``auto`` into ``redirect``)
or ``https="redirect"``/``"refuse"`` explicitly.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Literal
from urllib.parse import quote

from bastion.asgi import ASGIApp, Receive, Scope, Send, send_error
from bastion.errors import ConfigError

__all__ = [
    "FORWARDING_HEADERS",
    "HTTPSMode",
    "HTTPSOnlyMiddleware",
    "HTTPSRedirector",
    "is_local_development",
    "redirect_app",
]

HTTPSMode = Literal["redirect", "refuse"]
#: Request headers that say a proxy handled the request (so its peer address proves nothing).
FORWARDING_HEADERS = frozenset(
    {
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-scheme",
        b"x-real-ip",
        b"via",
    }
)
_PEER_KEY = "bastion.peer"  # the direct peer, as the trusted-proxy layer records it

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(
    rb"(?P<host>" + _LABEL.encode() + rb"(?:\." + _LABEL.encode() + rb")*\.?"
    rb"|\[(?P<ipv6>[0-9A-Fa-f:.]{2,45})\])(?::(?P<port>[0-9]{1,5}))?"
)
_UNSAFE = re.compile(rb"[^\x21-\x7e]")  # controls, spaces, non-ASCII: percent-encoded
_READ_ONLY = frozenset({"GET", "HEAD"})


def _escape(raw: bytes) -> bytes:
    return _UNSAFE.sub(lambda m: b"%%%02X" % m.group(0)[0], raw)


class HTTPSRedirector:
    """Answers one plain-HTTP request: 301 to HTTPS, 403 for a body-carrying method, or 400."""

    def __init__(self, *, https_port: int = 8443, allowed_hosts: Iterable[str] | None = None):
        if isinstance(https_port, bool) or not isinstance(https_port, int):
            raise ConfigError("https_port", f"{https_port!r} is not a port number")
        if not 1 <= https_port <= 65535:
            raise ConfigError("https_port", f"{https_port} is not in 1..65535")
        self.port_suffix = b"" if https_port == 443 else b":%d" % https_port
        if allowed_hosts is None:
            self.allowed_hosts: frozenset[bytes] | None = None
        else:
            if isinstance(allowed_hosts, str | bytes):
                raise ConfigError("allowed_hosts", "give a list of host names, not one string")
            hosts = set()
            for entry in allowed_hosts:
                match = _HOST.fullmatch(str(entry).strip().encode("ascii", "replace"))
                if match is None or match.group("port"):
                    raise ConfigError("allowed_hosts", f"{entry!r} is not a host name")
                hosts.add(self._host_of(match))
            self.allowed_hosts = frozenset(hosts)

    @staticmethod
    def _host_of(match: re.Match[bytes]) -> bytes:
        if match.group("ipv6") is not None:
            return match.group(0).split(b"]")[0].lower() + b"]"
        return match.group("host").rstrip(b".").lower()

    def host(self, scope: Scope) -> bytes | None:
        """The validated host (no port) of the request, or ``None`` when it must be refused."""
        values = [v for k, v in scope.get("headers", ()) if k == b"host"]
        if len(values) != 1:
            return None  # RFC 9112 §3.2: none or several Host headers → 400
        match = _HOST.fullmatch(bytes(values[0]).strip())
        if match is None:
            return None
        if match.group("ipv6") is not None:
            try:
                ipaddress.IPv6Address(match.group("ipv6").decode("ascii"))
            except ValueError:
                return None
        if match.group("port") and int(match.group("port")) > 65535:
            return None
        host = self._host_of(match)
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            return None
        return host

    def location(self, scope: Scope, host: bytes) -> bytes:
        """``https://host[:port]`` + the raw path and query, exactly as received."""
        raw = scope.get("raw_path")
        if raw:
            path = bytes(raw).split(b"?", 1)[0]
        else:
            path = quote(scope.get("path", "/"), safe="/%!$&'()*+,;=:@-._~").encode("ascii")
        if not path.startswith(b"/"):
            path = b"/" + path
        location = b"https://" + host + self.port_suffix + _escape(path)
        query = scope.get("query_string", b"")
        if query:
            location += b"?" + _escape(bytes(query))
        return location

    async def respond(self, scope: Scope, send: Send) -> None:
        if scope.get("method") not in _READ_ONLY:
            # The body already crossed in clear text; a redirect would have it sent again.
            await send_error(scope, send, 403, "HTTPS required")
            return
        host = self.host(scope)
        if host is None:
            await send_error(scope, send, 400, "Invalid Host header")
            return
        headers = [(b"location", self.location(scope, host)), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 301, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _loopback_address(text: str) -> bool:
    try:
        return ipaddress.ip_address(text.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def _loopback_host(host: bytes) -> bool:
    """``localhost``, ``*.localhost`` (RFC 6761 §6.3), ``127.x.y.z`` or ``[::1]``."""
    if host == b"localhost" or host.endswith(b".localhost"):
        return True
    return _loopback_address(host.decode("ascii", "replace"))


def is_local_development(scope: Scope, redirector: HTTPSRedirector) -> bool:
    """Whether a plain-HTTP request is local development (the module docstring's rule)."""
    peer = scope.get(_PEER_KEY, scope.get("client"))
    if not peer or not isinstance(peer[0], str) or not _loopback_address(peer[0]):
        return False
    for name, _ in scope.get("headers", ()):
        if name in FORWARDING_HEADERS:
            return False
    host = redirector.host(scope)
    return host is not None and _loopback_host(host)


class HTTPSOnlyMiddleware:
    """Let ``https`` requests through; answer ``http`` ones with a redirect or a refusal."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        https_port: int = 443,
        allowed_hosts: Iterable[str] | None = None,
        mode: HTTPSMode = "redirect",
        local_http: bool = False,
    ) -> None:
        if mode not in ("redirect", "refuse"):
            raise ConfigError("HTTPSOnlyMiddleware(mode=...)", "must be redirect or refuse")
        if not isinstance(local_http, bool):
            raise ConfigError("HTTPSOnlyMiddleware(local_http=...)", "must be True or False")
        self.app = app
        self.redirector = HTTPSRedirector(https_port=https_port, allowed_hosts=allowed_hosts)
        self.mode: HTTPSMode = mode
        self.local_http = local_http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") == "https":
            await self.app(scope, receive, send)
            return
        if self.local_http and is_local_development(scope, self.redirector):
            await self.app(scope, receive, send)
            return
        if self.mode == "refuse":
            await send_error(scope, send, 403, "HTTPS required")
            return
        await self.redirector.respond(scope, send)


def redirect_app(https_port: int = 8443, *, allowed_hosts: Iterable[str] | None = None) -> ASGIApp:
    """The plain-HTTP listener's whole application: redirect or refuse, serve nothing."""
    redirector = HTTPSRedirector(https_port=https_port, allowed_hosts=allowed_hosts)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await redirector.respond(scope, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # policy violation: use wss

    return app
