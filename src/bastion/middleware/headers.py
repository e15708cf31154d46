"""The contract's security headers on every response — errors included — and no fingerprints.

Why a layer of its own, near the outside of the stack: a header set by a route is missing on
the 404, the 405, the 413 and the 500 that never reached the route; set here, by editing
``http.response.start`` only, it is on all of them. Values (the contract's table, an API that
serves JSON and is never framed or embedded)::

    Strict-Transport-Security      max-age=31536000; includeSubDomains   (HTTPS only; RFC 6797)
    X-Content-Type-Options         nosniff                (no MIME sniffing of JSON into HTML)
    Cache-Control                  no-store               (tokens and personal data never cached)
    Content-Security-Policy        default-src 'none'; frame-ancestors 'none'
    X-Frame-Options                DENY                   (clickjacking, older browsers)
    Referrer-Policy                no-referrer            (no URL leaks to other sites)
    Cross-Origin-Resource-Policy   same-origin            (Spectre-style cross-origin reads)

HSTS is sent only when the request's scheme is ``https`` — read when the response starts, so
the trusted-proxy layer inside has already resolved it — because RFC 6797 §7.2 forbids it over
plain HTTP (where an attacker could inject or strip it anyway); an app-set HSTS on a plain-HTTP
response is removed. ``hsts_preload=True`` appends ``; preload`` (hstspreload.org requires
``max-age`` ≥ one year and ``includeSubDomains``, checked at construction).

Each header is an option that is the contract's value by default, ``None`` to leave it off
(then an app-set value passes through) or a custom string (validated: no CR/LF or other
control characters, so no header injection). Values set by the app for a header this layer
sends are replaced, never duplicated. ``Server`` and ``X-Powered-By`` from the app are removed
(fingerprinting; uvicorn's own ``Server`` is turned off with ``server_header=False``).

One exception, by exact path: ``app_csp_paths`` lists canonical paths whose app-set
``Content-Security-Policy`` is kept (the default is added there too when the app sets none).
The OAuth login page (``/oauth/authorize``) needs its own policy — a hash for its one inline
style and ``form-action`` for the redirect back to the client — that ``default-src 'none'``
would break. Matching is exact and case-sensitive on the path the canonicalisation layer
wrote, so another spelling of the path only ever gets the default policy.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable

from bastion.asgi import ASGIApp, HeaderNames, Headers, Message, Receive, Scope, Send
from bastion.errors import ConfigError
from bastion.middleware.paths import InvalidPath, canonicalise

__all__ = ["DEFAULTS", "FINGERPRINT_HEADERS", "SecurityHeadersMiddleware"]

#: The contract's values, by header name.
DEFAULTS: dict[str, str] = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
#: Headers that identify the software; removed from every response.
FINGERPRINT_HEADERS: tuple[str, ...] = ("Server", "X-Powered-By")

_HSTS = "Strict-Transport-Security"
_CSP = b"content-security-policy"
_FIELD_VALUE = re.compile(r"[\x20-\x7e]+")  # visible ASCII and spaces: RFC 9110 §5.5, no CR/LF
_MAX_AGE = re.compile(r"(?i)(?:^|;)\s*max-age=\"?([0-9]+)\"?\s*(?:;|$)")
_ONE_YEAR = 31536000
_REFERRER_POLICIES = frozenset(
    {
        "no-referrer",
        "no-referrer-when-downgrade",
        "origin",
        "origin-when-cross-origin",
        "same-origin",
        "strict-origin",
        "strict-origin-when-cross-origin",
        "unsafe-url",
    }
)


def _option(name: str) -> str:
    return f"SecurityHeadersMiddleware({name}=...)"


def _field_value(name: str, value: object) -> str:
    if not isinstance(value, str) or not _FIELD_VALUE.fullmatch(value):
        raise ConfigError(_option(name), f"{value!r} is not a header value (visible ASCII only)")
    return value.strip()


# --- one small function per header: validate the option, return the value to send ----------
def _hsts(value: str, preload: bool) -> str:
    """RFC 6797 §6.1: ``max-age`` is required; preload needs one year and includeSubDomains."""
    value = _field_value("hsts", value)
    match = _MAX_AGE.search(value)
    if match is None:
        raise ConfigError(_option("hsts"), f"{value!r} has no max-age (RFC 6797 §6.1.1)")
    if preload:
        if int(match.group(1)) < _ONE_YEAR or "includesubdomains" not in value.lower():
            raise ConfigError(
                _option("hsts_preload"),
                "preload needs max-age >= 31536000 and includeSubDomains (hstspreload.org)",
            )
        if "preload" not in value.lower():
            value += "; preload"
    return value


def _content_type_options(value: str) -> str:
    if value.strip().lower() != "nosniff":
        raise ConfigError(_option("content_type_options"), "the only value is nosniff")
    return "nosniff"


def _cache_control(value: str) -> str:
    return _field_value("cache_control", value)


def _content_security_policy(value: str) -> str:
    return _field_value("content_security_policy", value)


def _frame_options(value: str) -> str:
    upper = _field_value("frame_options", value).upper()
    if upper not in ("DENY", "SAMEORIGIN"):  # ALLOW-FROM is obsolete and ignored by browsers
        raise ConfigError(_option("frame_options"), "must be DENY or SAMEORIGIN")
    return upper


def _referrer_policy(value: str) -> str:
    policies = [p.strip().lower() for p in _field_value("referrer_policy", value).split(",")]
    if not all(p in _REFERRER_POLICIES for p in policies):
        raise ConfigError(_option("referrer_policy"), f"{value!r} is not a referrer policy")
    return ", ".join(policies)


def _app_csp_paths(paths: Iterable[str]) -> frozenset[str]:
    """Exact canonical paths (what the path layer writes), so a listed path can match."""
    if isinstance(paths, str | bytes):
        raise ConfigError(_option("app_csp_paths"), "give a list of paths, not one string")
    checked = set()
    for path in paths:
        if not isinstance(path, str):
            raise ConfigError(_option("app_csp_paths"), f"{path!r} is not a path")
        try:
            encoded, decoded = canonicalise(path.encode("utf-8"))
        except InvalidPath as exc:
            raise ConfigError(_option("app_csp_paths"), f"{path!r}: {exc}") from None
        if decoded != path or encoded != path.encode():
            raise ConfigError(_option("app_csp_paths"), f"{path!r} is not canonical")
        checked.add(path)
    return frozenset(checked)


def _cross_origin_resource_policy(value: str) -> str:
    lower = _field_value("cross_origin_resource_policy", value).lower()
    if lower not in ("same-origin", "same-site", "cross-origin"):
        raise ConfigError(
            _option("cross_origin_resource_policy"),
            "must be same-origin, same-site or cross-origin",
        )
    return lower


_VALIDATORS: dict[str, Callable[[str], str]] = {
    "X-Content-Type-Options": _content_type_options,
    "Cache-Control": _cache_control,
    "Content-Security-Policy": _content_security_policy,
    "X-Frame-Options": _frame_options,
    "Referrer-Policy": _referrer_policy,
    "Cross-Origin-Resource-Policy": _cross_origin_resource_policy,
}


class SecurityHeadersMiddleware:
    """Add the contract's security headers to every HTTP response; strip fingerprints."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        hsts: str | None = DEFAULTS["Strict-Transport-Security"],
        hsts_preload: bool = False,
        content_type_options: str | None = DEFAULTS["X-Content-Type-Options"],
        cache_control: str | None = DEFAULTS["Cache-Control"],
        content_security_policy: str | None = DEFAULTS["Content-Security-Policy"],
        frame_options: str | None = DEFAULTS["X-Frame-Options"],
        referrer_policy: str | None = DEFAULTS["Referrer-Policy"],
        cross_origin_resource_policy: str | None = DEFAULTS["Cross-Origin-Resource-Policy"],
        strip: Iterable[str] = FINGERPRINT_HEADERS,
        app_csp_paths: Iterable[str] = (),
    ) -> None:
        if not isinstance(hsts_preload, bool):
            raise ConfigError(_option("hsts_preload"), "must be True or False")
        if hsts_preload and hsts is None:
            raise ConfigError(_option("hsts_preload"), "preload needs HSTS (hsts is None)")
        if isinstance(strip, str):
            raise ConfigError(_option("strip"), "give a list of header names, not one string")
        self.app = app
        chosen = {
            "X-Content-Type-Options": content_type_options,
            "Cache-Control": cache_control,
            "Content-Security-Policy": content_security_policy,
            "X-Frame-Options": frame_options,
            "Referrer-Policy": referrer_policy,
            "Cross-Origin-Resource-Policy": cross_origin_resource_policy,
        }
        common: Headers = [
            (name.lower().encode(), _VALIDATORS[name](value).encode())
            for name, value in chosen.items()
            if value is not None
        ]
        hsts_value = _hsts(hsts, hsts_preload) if hsts is not None else None
        #: headers added over HTTPS and over plain HTTP (never HSTS there: RFC 6797 §7.2)
        self.https_headers: Headers = (
            [(_HSTS.lower().encode(), hsts_value.encode()), *common] if hsts_value else common
        )
        self.http_headers: Headers = list(common)
        stripped = {_field_value("strip", s).lower().encode() for s in strip}
        sent = {name for name, _ in common}
        drop_https = stripped | sent | ({_HSTS.lower().encode()} if hsts_value else set())
        drop_http = stripped | sent | {_HSTS.lower().encode()}
        self._drop_https = HeaderNames(drop_https)
        self._drop_http = HeaderNames(drop_http)
        #: paths whose app-set CSP is kept, and the header sets used for such a response
        self.app_csp_paths = _app_csp_paths(app_csp_paths)
        self._keep_csp = {
            "https": (
                HeaderNames(drop_https - {_CSP}),
                [h for h in self.https_headers if h[0] != _CSP],
            ),
            "http": (
                HeaderNames(drop_http - {_CSP}),
                [h for h in self.http_headers if h[0] != _CSP],
            ),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        # A plain function returning the next send's awaitable (the caller awaits it at once):
        # one coroutine frame fewer per message than an ``async def`` wrapper.
        def send_with_headers(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                # Read now, not at request start: the proxy layer may have rewritten the scheme.
                https = scope.get("scheme") == "https"
                if https:
                    drop, extra = self._drop_https, self.https_headers
                else:
                    drop, extra = self._drop_http, self.http_headers
                original = message.get("headers", ())
                if (
                    self.app_csp_paths
                    and scope.get("path") in self.app_csp_paths
                    and any(h[0].lower() == _CSP for h in original)
                ):
                    drop, extra = self._keep_csp["https" if https else "http"]
                message["headers"] = drop.without(original, extra)
            return send(message)

        await self.app(scope, receive, send_with_headers)
