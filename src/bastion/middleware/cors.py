"""Strict CORS: an exact origin allow-list, checked once at construction, cheap per request.

Why not Starlette's or express' CORS? Both leak ``Access-Control-Allow-Credentials`` and
``-Expose-Headers`` to origins they refuse, answer a refused preflight with 400/204, and let
``"*"`` plus credentials reflect any origin (Starlette 1.10 ``CORSMiddleware``; a fix was
declined in https://github.com/Kludex/starlette/pull/3246). This layer decides per request
in one of four ways:

* **no origins configured** (an internal API): it is a plain pass-through. No CORS header of
  any kind, no preflight answered (an ``OPTIONS`` reaches the app, which answers ``405``).
* **excluded path** (``/oauth/authorize`` by default; RFC 9700 §2.6 "CORS MUST NOT be
  supported at the Authorization Endpoint"): pass-through, whatever the configuration.
* **allowed origin**: a preflight gets ``204`` with the exact configured lists; an actual
  request gets ``Access-Control-Allow-Origin`` (the origin), ``-Allow-Credentials`` and
  ``-Expose-Headers`` added to whatever the inner layers answer — 429s and 500s included,
  so a browser shows the real status instead of a CORS error
  (https://github.com/Kludex/starlette/issues/1116).
* **anything else** (unlisted, ``null``, malformed, several ``Origin`` headers): no
  ``Access-Control-*`` header at all; a preflight gets ``403`` in the contract's error shape.

Every response this layer could change carries ``Vary: Origin`` (merged into an existing
``Vary``), so a shared cache never hands one origin's answer to another.

Origins are compared as normalised ``(scheme, host, port)`` triples — never by suffix,
prefix or pattern (an unanchored pattern is the classic hole:
``https://app.example.com.evil.com`` and ``https://evilexample.com`` are different origins).
``Access-Control-Allow-Origin`` carries the configured origin's serialisation, which is
exactly what a browser sends (RFC 6454 §6.1: lower-case scheme and host, default port
omitted); nothing from the request is reflected.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from bastion.asgi import (
    ASGIApp,
    HeaderNames,
    Headers,
    Message,
    Receive,
    Scope,
    Send,
    send_error,
)
from bastion.caching import BoundedDict
from bastion.errors import ConfigError

__all__ = [
    "DEFAULT_ALLOW_HEADERS",
    "DEFAULT_ALLOW_METHODS",
    "DEFAULT_EXCLUDE_PATHS",
    "DEFAULT_EXPOSE_HEADERS",
    "DEFAULT_MAX_AGE",
    "ORIGINS_OPTION",
    "CORSMiddleware",
    "Origin",
    "parse_origin",
    "parse_origins",
]

# The contract's CORS section, as defaults.
DEFAULT_ALLOW_METHODS: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE")
DEFAULT_ALLOW_HEADERS: tuple[str, ...] = ("Content-Type", "Authorization", "X-Request-ID")
DEFAULT_EXPOSE_HEADERS: tuple[str, ...] = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "Retry-After",
    "RateLimit",
    "RateLimit-Policy",
    "X-Request-ID",
)
DEFAULT_MAX_AGE = 86400
DEFAULT_EXCLUDE_PATHS: tuple[str, ...] = ("/oauth/authorize",)

#: The option an origin error names by default; ``secure()`` and the service's settings pass
#: their own name (``cors_origins``, ``BASTION_CORS_ORIGINS``), so the message says what to fix.
ORIGINS_OPTION = "CORSMiddleware(origins=...)"
_OPTION = "CORSMiddleware"

_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 9110 §5.6.2 token: header names and methods.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# A DNS-ish label. Underscores are accepted because browsers accept them in hosts.
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_IPV4ISH = re.compile(r"^[0-9.]+$")
# Fetch's CORS-safelisted methods: a browser allows them whatever Access-Control-Allow-Methods
# says, so refusing them in a preflight would protect nothing and only break HEAD requests.
_SAFELISTED_METHODS = frozenset({"GET", "HEAD", "POST"})
# Fetch "forbidden methods": no browser can send them, so listing one is a mistake.
_FORBIDDEN_METHODS = frozenset({"CONNECT", "TRACE", "TRACK"})
_MAX_ORIGIN_LENGTH = 2048

_ORIGIN = b"origin"
_ACRM = b"access-control-request-method"
_ACRH = b"access-control-request-headers"
_VARY = b"vary"
_AC_PREFIX = b"access-control-"
_VARY_ORIGIN = b"Origin"
_VARY_PREFLIGHT = b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
# The response headers _merge_vary edits: Vary is merged, Access-Control-* dropped.
_MERGED = HeaderNames((_VARY,), prefixes=(_AC_PREFIX,))
_EXCLUDED_CACHE_SIZE = 4096
_EXCLUDED_CACHE_PATH_LENGTH = 512


@dataclass(frozen=True, slots=True)
class Origin:
    """A normalised web origin (RFC 6454): lower-case scheme and host, explicit port."""

    scheme: str
    host: str
    port: int

    def serialize(self) -> str:
        """RFC 6454 §6.1 serialisation: what a browser puts in ``Origin``."""
        if _DEFAULT_PORTS[self.scheme] == self.port:
            return f"{self.scheme}://{self.host}"
        return f"{self.scheme}://{self.host}:{self.port}"


class _OriginSyntaxError(ValueError):
    """Why a string is not an exact origin (the message is shown in the config error)."""


def _parse_host(host: str) -> str:
    if not host:
        raise _OriginSyntaxError("it has no host")
    if host.startswith("["):  # IPv6 literal, RFC 3986 §3.2.2
        if not host.endswith("]"):
            raise _OriginSyntaxError(f"{host!r} is not a valid IPv6 literal")
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise _OriginSyntaxError(f"{host!r} is not a valid IPv6 literal") from None
        return f"[{address.compressed}]"
    if "*" in host:
        raise _OriginSyntaxError("wildcards are not allowed; list every origin exactly")
    if not host.isascii():
        try:
            hint = host.encode("idna").decode("ascii")
        except UnicodeError:
            hint = "its punycode (xn--) form"
        raise _OriginSyntaxError(f"the host is not ASCII; write it as browsers send it: {hint}")
    host = host.lower()
    if _IPV4ISH.match(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise _OriginSyntaxError(f"{host!r} is not a valid IPv4 address") from None
    if len(host) > 253:
        raise _OriginSyntaxError("the host is longer than 253 characters")
    for label in host.split("."):
        if not label:
            raise _OriginSyntaxError(f"the host {host!r} has an empty label")
        if not _LABEL.match(label):
            raise _OriginSyntaxError(f"the host {host!r} has an invalid label {label!r}")
    return host


def _parse(text: str) -> Origin:
    """Parse one origin strictly; raise :class:`_OriginSyntaxError` saying what is wrong."""
    if text == "*":
        raise _OriginSyntaxError(
            "a wildcard is not an origin; with credentials it would let every site read "
            "responses — list the exact origins"
        )
    if text.lower() == "null":
        raise _OriginSyntaxError(
            "'null' is the origin of sandboxed frames, data: URLs and file pages — any site "
            "can produce it, so it is never allowed"
        )
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise _OriginSyntaxError("write scheme://host[:port], e.g. https://app.example.com")
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise _OriginSyntaxError(f"the scheme must be http or https, not {scheme!r}")
    if any(c.isspace() for c in rest) or "\\" in rest or "%" in rest:
        raise _OriginSyntaxError("it contains whitespace, a backslash or a percent-encoding")
    if "@" in rest:
        raise _OriginSyntaxError("it has user information ('user@'); an origin has none")
    for char, what in (("/", "a path"), ("?", "a query"), ("#", "a fragment")):
        if char in rest:
            extra = " (not even a trailing '/')" if char == "/" else ""
            raise _OriginSyntaxError(f"it has {what}; an origin is scheme://host[:port]{extra}")
    host, port_text = rest, ""
    if rest.startswith("["):
        end = rest.find("]")
        if end != -1:
            host, after = rest[: end + 1], rest[end + 1 :]
            if after and not after.startswith(":"):
                raise _OriginSyntaxError(f"unexpected {after!r} after the IPv6 literal")
            port_text = after[1:] if after else ""
            if after == ":":
                raise _OriginSyntaxError("the port after ':' is empty")
    elif ":" in rest:
        host, _, port_text = rest.rpartition(":")
        if not port_text:
            raise _OriginSyntaxError("the port after ':' is empty")
    port = _DEFAULT_PORTS[scheme]
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
            raise _OriginSyntaxError(f"the port {port_text!r} is not a number")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise _OriginSyntaxError(f"the port {port} is outside 1-65535")
    return Origin(scheme, _parse_host(host), port)


def parse_origin(text: str, *, option: str = ORIGINS_OPTION) -> Origin:
    """Parse one configured origin, raising :class:`ConfigError` naming *option* and the entry."""
    try:
        return _parse(text.strip())
    except _OriginSyntaxError as exc:
        raise ConfigError(option, f"{text!r} is not an exact origin: {exc}") from None


def parse_origins(entries: Iterable[str], *, option: str = ORIGINS_OPTION) -> tuple[Origin, ...]:
    """Parse and de-duplicate configured origins (a bare string is refused: list them)."""
    if isinstance(entries, str | bytes):
        raise ConfigError(option, "give a list of origins, not one string")
    out: dict[Origin, None] = {}
    for entry in entries:
        if not isinstance(entry, str):
            raise ConfigError(option, f"{entry!r} is not a string")
        out[parse_origin(entry, option=option)] = None
    return tuple(out)


@functools.lru_cache(maxsize=512)
def _request_origin(value: bytes) -> Origin | None:
    """The normalised origin of an ``Origin`` header value, or ``None`` if it is not one.

    Cached (bounded): the same few foreign origins come back again and again, and an
    attacker sending fresh values only pays the parse each time, as without a cache.
    """
    if len(value) > _MAX_ORIGIN_LENGTH or not value.isascii():
        return None
    try:
        return _parse(value.decode("ascii"))
    except _OriginSyntaxError:
        return None


def _normalise_path(path: str) -> str:
    """A canonical form of *path* for the exclusion check only.

    Deliberately generous (an over-match only withholds CORS, which is the safe side): the
    path-canonicalisation layer sits inside this one, so ``/OAuth//authorize/``,
    ``/oauth/./authorize``, ``/oauth/authorize;x`` and double-encoded spellings must all be
    recognised as the authorization endpoint they will be routed to.
    """
    for _ in range(3):  # undo up to three rounds of percent-encoding
        if "%" not in path:
            break
        path = unquote(path)
    segments: list[str] = []
    for segment in path.replace("\\", "/").lower().split("/"):
        segment = segment.split(";", 1)[0]
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


def _tokens(name: str, values: Iterable[str], *, allow_empty: bool = True) -> tuple[str, ...]:
    if isinstance(values, str | bytes):
        raise ConfigError(f"{_OPTION}({name}=...)", "give a list, not one string")
    out: dict[str, str] = {}
    for value in values:
        if not isinstance(value, str) or not _TOKEN.match(value):
            raise ConfigError(f"{_OPTION}({name}=...)", f"{value!r} is not a valid name")
        if value == "*":
            raise ConfigError(
                f"{_OPTION}({name}=...)",
                "'*' is not allowed: with credentials browsers treat it as a literal name",
            )
        out.setdefault(value.lower(), value)
    if not out and not allow_empty:
        raise ConfigError(f"{_OPTION}({name}=...)", "the list is empty")
    return tuple(out.values())


def _merge_vary(headers: Iterable[tuple[bytes, bytes]], add: bytes) -> Headers:
    """Copy *headers* without inner ``Access-Control-*`` ones, merging *add* into ``Vary``.

    Inner ``Access-Control-*`` headers are dropped: this layer alone decides CORS, so a
    route or a misconfigured inner middleware cannot leak them to a refused origin.
    """
    out: Headers = []
    vary_values: list[bytes] = []
    for key, value in headers:
        lower = key.lower()
        if lower == _VARY:
            vary_values.append(bytes(value))
        elif not lower.startswith(_AC_PREFIX):
            out.append((key, value))
    if not vary_values:
        out.append((_VARY, add))
        return out
    present = {t.strip().lower() for v in vary_values for t in v.split(b",") if t.strip()}
    if b"*" in present:  # RFC 9110 §12.5.5: "*" already varies on everything
        out.append((_VARY, b", ".join(vary_values)))
        return out
    missing = [t for t in add.split(b", ") if t.lower() not in present]
    out.append((_VARY, b", ".join([*vary_values, *missing])))
    return out


class CORSMiddleware:
    """Strict, exact-list CORS as pure ASGI (the contract's CORS section).

    Place it *outside* the safe-errors and rate-limit layers: the 500s and 429s they produce
    then pass through this layer's ``send`` and carry CORS headers too, so a browser sees
    their status rather than a CORS error.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        origins: Iterable[str],
        allow_methods: Iterable[str] = DEFAULT_ALLOW_METHODS,
        allow_headers: Iterable[str] = DEFAULT_ALLOW_HEADERS,
        expose_headers: Iterable[str] = DEFAULT_EXPOSE_HEADERS,
        allow_credentials: bool = True,
        max_age: int = DEFAULT_MAX_AGE,
        exclude_paths: Iterable[str] = DEFAULT_EXCLUDE_PATHS,
        origins_option: str = ORIGINS_OPTION,
    ) -> None:
        self.app = app
        self.origins = parse_origins(origins, option=origins_option)
        methods = _tokens("allow_methods", allow_methods, allow_empty=False)
        for method in methods:
            if method != method.upper():
                raise ConfigError(
                    f"{_OPTION}(allow_methods=...)",
                    f"{method!r}: methods are case-sensitive; write {method.upper()!r}",
                )
            if method in _FORBIDDEN_METHODS:
                raise ConfigError(
                    f"{_OPTION}(allow_methods=...)", f"{method} must never be allowed"
                )
        headers = _tokens("allow_headers", allow_headers)
        exposed = _tokens("expose_headers", expose_headers)
        if not isinstance(allow_credentials, bool):
            raise ConfigError(f"{_OPTION}(allow_credentials=...)", "must be True or False")
        if isinstance(max_age, bool) or not isinstance(max_age, int) or not 0 <= max_age <= 86400:
            # Browsers clamp larger values (Firefox at 86400 s, Chromium at 7200 s).
            raise ConfigError(f"{_OPTION}(max_age=...)", f"{max_age!r} is not 0..86400 seconds")
        if isinstance(exclude_paths, str | bytes):
            raise ConfigError(f"{_OPTION}(exclude_paths=...)", "give a list, not one string")
        excluded = []
        for path in exclude_paths:
            if not isinstance(path, str) or not path.startswith("/"):
                raise ConfigError(f"{_OPTION}(exclude_paths=...)", f"{path!r} must start with /")
            excluded.append(_normalise_path(path))
        self.allow_methods = methods
        self.allow_headers = headers
        self.expose_headers = exposed
        self.allow_credentials = allow_credentials
        self.max_age = max_age
        self.exclude_paths = tuple(excluded)
        self._exclude_exact = frozenset(exclude_paths)
        self._exclude_prefixes = tuple(p.rstrip("/") + "/" for p in excluded)
        # Normalisation only drops or lower-cases characters (percent-decoding aside), so a
        # path whose lower-cased form holds no excluded path's last segment cannot match.
        self._exclude_needles = tuple({p.rsplit("/", 1)[-1] or p for p in excluded})
        # _excluded is a pure function of the path (and this configuration): remembered.
        self._excluded_cache: BoundedDict[str, bool] = BoundedDict(_EXCLUDED_CACHE_SIZE)
        self._method_set = frozenset(methods) | _SAFELISTED_METHODS
        self._header_set = frozenset(h.lower() for h in headers)

        # Precomputed header byte pairs, one list per allowed origin.
        credentials = [(b"access-control-allow-credentials", b"true")] if allow_credentials else []
        actual_extra = credentials[:]
        if exposed:
            actual_extra.append((b"access-control-expose-headers", ", ".join(exposed).encode()))
        preflight_extra = [
            (b"access-control-allow-methods", ", ".join(methods).encode()),
            *([(b"access-control-allow-headers", ", ".join(headers).encode())] if headers else []),
            *credentials,
            (b"access-control-max-age", str(max_age).encode()),
            (_VARY, _VARY_PREFLIGHT),
        ]
        self._actual: dict[Origin, Headers] = {}
        self._preflight: dict[Origin, Headers] = {}
        self._by_bytes: dict[bytes, Origin] = {}
        for origin in self.origins:
            acao = (b"access-control-allow-origin", origin.serialize().encode())
            self._actual[origin] = [acao, *actual_extra]
            self._preflight[origin] = [acao, *preflight_extra]
            self._by_bytes[origin.serialize().encode()] = origin

    def _excluded(self, path: str) -> bool:
        excluded = self._excluded_cache.get(path)
        if excluded is None:
            excluded = self._excluded_uncached(path)
            if len(path) <= _EXCLUDED_CACHE_PATH_LENGTH:  # long paths (floods) not kept
                self._excluded_cache.put(path, excluded)  # bounded: distinct paths
        return excluded

    def _excluded_uncached(self, path: str) -> bool:
        if path in self._exclude_exact:
            return True
        if not self.exclude_paths:
            return False
        lower = path.lower()
        plain = "%" not in lower and "\\" not in lower
        if plain and not any(needle in lower for needle in self._exclude_needles):
            return False  # the fast path for almost every request
        norm = _normalise_path(path)
        return norm in self.exclude_paths or norm.startswith(self._exclude_prefixes)

    def _match(self, values: list[bytes]) -> Origin | None:
        """The allowed origin the request comes from, or ``None``.

        Several ``Origin`` headers are ambiguous (a proxy and the app might read different
        ones), so they are refused outright.
        """
        if len(values) != 1:
            return None
        value = values[0]
        origin = self._by_bytes.get(value)  # the browser's exact bytes: one dict lookup
        if origin is not None:
            return origin
        parsed = _request_origin(value)  # e.g. HTTPS://APP.example.com:443
        return parsed if parsed in self._actual else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.origins or self._excluded(scope["path"]):
            await self.app(scope, receive, send)
            return

        origins: list[bytes] = []
        acrm: bytes | None = None
        acrh: list[bytes] = []
        preflight_possible = scope["method"] == "OPTIONS"
        for key, value in scope["headers"]:
            if key == _ORIGIN:
                origins.append(value)
            elif preflight_possible:
                if key == _ACRM:
                    acrm = value
                elif key == _ACRH:
                    acrh.append(value)

        origin = self._match(origins) if origins else None
        if preflight_possible and origins and acrm is not None:
            await self._answer_preflight(scope, send, origin, acrm, acrh)
            return

        extra = self._actual[origin] if origin is not None else []

        # A plain function returning the next send's awaitable: one coroutine frame fewer
        # per message than an ``async def`` wrapper (the caller awaits it at once).
        def send_with_cors(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                if type(headers) is not list and type(headers) is not tuple:
                    headers = list(headers)  # any iterable: read it once
                if _MERGED.absent_from(headers):
                    # No Vary and no Access-Control-* inside: _merge_vary would copy every
                    # header and append "Vary: Origin"; this is that list, without its loop.
                    headers = [*headers, (_VARY, _VARY_ORIGIN)]
                else:
                    headers = _merge_vary(headers, _VARY_ORIGIN)
                headers.extend(extra)
                message["headers"] = headers  # in place, as every layer outside does
            return send(message)

        await self.app(scope, receive, send_with_cors)

    async def _answer_preflight(
        self,
        scope: Scope,
        send: Send,
        origin: Origin | None,
        acrm: bytes,
        acrh: list[bytes],
    ) -> None:
        """Answer a CORS preflight (Fetch §4.8) here; it never reaches the app."""
        vary = [(_VARY, _VARY_PREFLIGHT)]
        if origin is None:
            await send_error(scope, send, 403, "CORS origin not allowed", headers=vary)
            return
        if acrm.decode("latin-1") not in self._method_set:
            await send_error(scope, send, 403, "CORS method not allowed", headers=vary)
            return
        requested = {
            name.strip().lower()
            for value in acrh
            for name in value.decode("latin-1").split(",")
            if name.strip()
        }
        if not requested <= self._header_set:
            await send_error(scope, send, 403, "CORS header not allowed", headers=vary)
            return
        # 204 with no Content-Length: RFC 9110 §8.6 forbids it on a 204. A fresh list, since
        # outer layers may append their headers to it in place.
        headers = list(self._preflight[origin])
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
