"""``secure(app, **options)``: every protective layer, composed in one documented order.

Outermost first — each line says why the layer sits where it does:

1. **request id**: first, so every later layer, log line and error body has the id.
2. **access log**: sees the final status of everything below, errors included, and the id.
3. **security headers**: outside every layer that can answer, so 4xx/5xx carry them too.
4. **CORS**: outside safe-errors and the rate limiter, so a browser can read a 500 or a 429
   instead of reporting a CORS failure (Starlette #1116); answers preflights before method
   policy would refuse ``OPTIONS``.
5. **safe errors**: turns any exception below into the contract's 500 with the id.
6. **trusted proxy**: resolves the real client and scheme before anything uses them.
7. **HTTPS enforcement**: needs the proxy-resolved scheme (and the direct peer, for ``auto``).
8. **path canonicalisation**: before any layer keys on the path (rate limits, methods,
   routing), so ``/api%2Fv1/...`` or ``%6Cogin`` cannot open a fresh budget.
9. **rate limit / slow-down**: counts every request its rules cover, including the ones the
   layers below refuse (405, 413, 415, 400), so refusals are not a free probe; publishes its
   store in the scope for per-route limits (:class:`bastion.RateLimit`).
10. **API docs** (only with ``docs=``): the Swagger UI page and its files, at exact paths.
11. **method policy**: the full ``Allow`` list, ``TRACE``/``TRACK`` refused.
12. **body rules**: media type, size while streaming, JSON depth, just before the app.

Every option has a safe default and is checked here, before anything is served: a bad value
raises :class:`~bastion.errors.ConfigError` naming the option. The options are the stack's
only (no database, mailer, data directory, workers or certificate: those are the reference
service's ``Settings``); ``secure(app, settings=Settings(...))`` derives them from the
service's settings, explicit options winning.

HTTPS policy (``https=``):

* ``"auto"`` (default): HTTPS requests pass; a plain-HTTP request is served only when it is
  local development — TCP peer on loopback, ``Host`` a loopback name, no forwarding header
  (:func:`bastion.middleware.https.is_local_development`) — so ``uvicorn app:asgi`` on
  ``http://127.0.0.1:8000`` just works, while the same app reached from elsewhere over plain
  HTTP is redirected (``GET``/``HEAD``) or refused (``403``). With ``trusted_proxies`` set
  (a deployment behind a proxy), ``auto`` is ``redirect``.
* ``"redirect"``: the contract — ``301`` to ``https://host[:https_port]`` for ``GET``/
  ``HEAD``, ``403 {"error":"HTTPS required"}`` for the rest.
* ``"refuse"``: ``403`` for every plain-HTTP request (an API whose clients are programs).
* ``"off"``: no enforcement (TLS is known to be handled and checked elsewhere).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack

from bastion.asgi import ASGIApp
from bastion.docs import SwaggerUI, SwaggerUIMiddleware
from bastion.errors import ConfigError
from bastion.log import ensure_handler
from bastion.middleware.access_log import ACCESS_LOGGER, AccessLogMiddleware
from bastion.middleware.body import BodyRulesMiddleware
from bastion.middleware.cors import (
    DEFAULT_ALLOW_HEADERS,
    DEFAULT_EXPOSE_HEADERS,
    CORSMiddleware,
)
from bastion.middleware.errors import SafeErrorsMiddleware
from bastion.middleware.headers import DEFAULTS as HEADER_DEFAULTS
from bastion.middleware.headers import SecurityHeadersMiddleware
from bastion.middleware.https import HTTPSOnlyMiddleware, redirect_app
from bastion.middleware.methods import MethodPolicyMiddleware
from bastion.middleware.paths import PathCanonicalMiddleware
from bastion.middleware.proxy import TrustedProxyMiddleware, parse_trusted
from bastion.middleware.ratelimit import RateLimitMiddleware
from bastion.middleware.request_id import RequestIDMiddleware
from bastion.ratelimit.memory import MemoryStore
from bastion.ratelimit.rules import Rule, api_rule
from bastion.ratelimit.store import Store

if TYPE_CHECKING:
    from bastion.config import Settings

__all__ = ["HTTPS_POLICIES", "Options", "options_from_settings", "secure", "secure_redirect"]

log = logging.getLogger("bastion.stack")

HTTPSPolicy = Literal["auto", "redirect", "refuse", "off"]
HTTPS_POLICIES: tuple[str, ...] = ("auto", "redirect", "refuse", "off")
ProxyHeaders = Literal["auto", "forwarded", "x-forwarded"]

# The security headers layer's keyword for each header a user may override.
_HEADER_OPTIONS: dict[str, str] = {
    "strict-transport-security": "hsts",
    "x-content-type-options": "content_type_options",
    "cache-control": "cache_control",
    "content-security-policy": "content_security_policy",
    "x-frame-options": "frame_options",
    "referrer-policy": "referrer_policy",
    "cross-origin-resource-policy": "cross_origin_resource_policy",
}
_CANONICAL_NAMES = {name.lower(): name for name in HEADER_DEFAULTS}


class Options(TypedDict, total=False):
    """The keyword options of :func:`secure` (every one optional; defaults in its docstring)."""

    https: HTTPSPolicy
    https_port: int
    allowed_hosts: Iterable[str] | None
    trusted_proxies: Iterable[Any]
    proxy_headers: ProxyHeaders
    cors_origins: Iterable[str]
    cors_allow_headers: Iterable[str]
    cors_expose_headers: Iterable[str]
    headers: Mapping[str, str | None]
    hsts_preload: bool
    app_csp_paths: Iterable[str]
    docs: bool | SwaggerUI
    rate_limits: Iterable[Rule] | None
    ratelimit_store: Store | str
    body_max_bytes: int
    body_max_depth: int
    body_paths: Iterable[str]
    trust_request_id: bool
    access_log: bool | str | logging.Logger


def secure(
    app: ASGIApp, *, settings: Settings | None = None, **options: Unpack[Options]
) -> ASGIApp:
    """Wrap *app* in every bastion layer (order and reasons: the module docstring).

    Options (keyword only; each validated now, a bad value raises ``ConfigError`` naming it):

    * ``https`` — ``"auto"`` (default), ``"redirect"``, ``"refuse"`` or ``"off"`` (module
      docstring); ``https_port`` — the port redirects name (``443``: omitted from the URL);
      ``allowed_hosts`` — when set, a redirect for any other ``Host`` is refused with 400.
    * ``trusted_proxies`` — addresses/CIDRs whose ``X-Forwarded-For``/``-Proto`` or
      ``Forwarded`` are believed (default: none); ``proxy_headers`` — ``"auto"``,
      ``"x-forwarded"`` or ``"forwarded"``: the family your proxy writes.
    * ``cors_origins`` — exact origins allowed to read responses with credentials (default:
      none, no CORS header ever); ``cors_allow_headers`` / ``cors_expose_headers`` — extra
      request / response header names, added to the contract's lists.
    * ``headers`` — per-header override of the security headers: ``{"X-Frame-Options":
      "SAMEORIGIN", "Cross-Origin-Resource-Policy": None}`` (``None``: not sent);
      ``hsts_preload``; ``app_csp_paths`` — exact paths whose own CSP the app may set.
    * ``docs`` — ``True`` or ``SwaggerUI(...)``: interactive docs at ``/docs`` under a
      nonce-based CSP (:mod:`bastion.docs`); every other path keeps the strict policy.
    * ``rate_limits`` — a list of :class:`~bastion.ratelimit.Rule` (default: the contract's
      ``/api/`` rule, 100 per 15 min with slow-down after 50; ``[]``: none);
      ``ratelimit_store`` — ``"memory"`` (default, one process), a ``redis://`` URL (the
      ``[redis]`` extra; shared by processes and hosts) or a store object. A store made here
      is closed at lifespan shutdown; one passed in is yours to close.
    * ``body_max_bytes`` (65536), ``body_max_depth`` (32), ``body_paths`` (``["/api/"]``):
      the JSON body rules and where they apply.
    * ``trust_request_id`` — echo a well-formed client ``X-Request-ID`` (default ``True``).
    * ``access_log`` — ``True`` (logger ``bastion.access``), ``False``, or a logger (name).
      bastion's redacted line replaces uvicorn's own access line (``uvicorn.access`` is
      turned off: it would write query strings — reset tokens, OAuth codes — as sent).

    Logging: every ``bastion.*`` line is one JSON object with ``timestamp`` and ``level``;
    where the process configured no logging (plain ``uvicorn app:asgi``) they go to stderr,
    and once it does, only through its handlers (:mod:`bastion.log`).
    """
    if settings is not None:
        options = {**options_from_settings(settings), **options}
    return _compose(app, _Checked(options))


def options_from_settings(settings: Settings) -> Options:
    """The stack's options as the reference service's ``Settings`` give them.

    ``bastion serve`` terminates TLS itself, so every request on its main listener is HTTPS
    and ``redirect`` costs nothing; with ``--insecure-http`` and no trusted proxy there is no
    way a request could be HTTPS, so enforcement is off (local development, with the banner).
    """
    from bastion.ratelimit.factory import rules_from_settings, store_from_settings

    insecure_dev = settings.insecure_http and not settings.trusted_proxies
    docs: bool | SwaggerUI = False
    if settings.expose_docs:
        try:
            docs = SwaggerUI()
        except ConfigError as exc:  # named as the service's user knows it
            raise ConfigError("BASTION_EXPOSE_DOCS", exc.problem) from None
    return {
        "https": "off" if insecure_dev else "redirect",
        "https_port": settings.port,
        "trusted_proxies": settings.trusted_proxies,
        "cors_origins": settings.cors_origins,
        "hsts_preload": settings.hsts_preload,
        # the OAuth login page and the password-reset page bring their own CSP
        "app_csp_paths": ("/oauth/authorize", "/password-reset"),
        "docs": docs,
        "rate_limits": rules_from_settings(settings),
        "ratelimit_store": store_from_settings(settings),
    }


def secure_redirect(settings: Settings) -> ASGIApp:
    """The plain-HTTP listener: redirect GET/HEAD to HTTPS, refuse the rest; ids and headers."""
    inner = SecurityHeadersMiddleware(redirect_app(settings.port), hsts_preload=False)
    return RequestIDMiddleware(AccessLogMiddleware(inner))


# --- validation: one small function per option ----------------------------------------------
class _Checked:
    """The validated options; each attribute is ready for the layer that takes it."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - set(Options.__annotations__))
        if unknown:
            raise ConfigError(unknown[0], f"unknown option of secure(); known: {_known()}")
        get = options.get
        self.https: HTTPSPolicy = _choice("https", get("https", "auto"), HTTPS_POLICIES)
        self.https_port = _port("https_port", get("https_port", 443))
        self.allowed_hosts = get("allowed_hosts")
        self.trusted = _renamed("trusted_proxies", parse_trusted, get("trusted_proxies", ()))
        self.proxy_headers: ProxyHeaders = _choice(
            "proxy_headers", get("proxy_headers", "auto"), ("auto", "forwarded", "x-forwarded")
        )
        self.cors_origins = _list("cors_origins", get("cors_origins", ()))
        self.cors_allow_headers = _list("cors_allow_headers", get("cors_allow_headers", ()))
        self.cors_expose_headers = _list("cors_expose_headers", get("cors_expose_headers", ()))
        _cors_names("cors_allow_headers", self.cors_allow_headers)
        _cors_names("cors_expose_headers", self.cors_expose_headers)
        self.headers = _header_overrides(get("headers", {}))
        self.hsts_preload = _bool("hsts_preload", get("hsts_preload", False))
        self.app_csp_paths = _list("app_csp_paths", get("app_csp_paths", ()))
        self.docs = _docs(get("docs", False))
        self.rules = _rules(get("rate_limits"))
        self.store, self.owns_store = _store(get("ratelimit_store", "memory"))
        self.body_max_bytes = get("body_max_bytes", 65536)
        self.body_max_depth = get("body_max_depth", 32)
        self.body_paths = _list("body_paths", get("body_paths", ("/api/",)))
        self.trust_request_id = _bool("trust_request_id", get("trust_request_id", True))
        self.access_log = _access_log(get("access_log", True))


def _known() -> str:
    return ", ".join(sorted(Options.__annotations__))


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> Any:
    if value not in allowed:
        raise ConfigError(name, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _port(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(name, f"{value!r} is not a port number (1-65535)")
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(name, f"{value!r} is not True or False")
    return value


def _list(name: str, value: Any) -> tuple[Any, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigError(name, "give a list, not one string")
    return tuple(value)


def _renamed(name: str, parse: Any, value: Any) -> Any:
    """*parse(value)*, its ConfigError renamed to the option of secure() that was given."""
    try:
        return parse(value)
    except ConfigError as exc:
        raise ConfigError(name, exc.problem) from None


def _header_overrides(value: Any) -> dict[str, str | None]:
    """``{"Content-Security-Policy": "...", "X-Frame-Options": None}`` → layer keywords."""
    if not isinstance(value, Mapping):
        raise ConfigError("headers", "give a mapping of header name to value (or None)")
    chosen: dict[str, str | None] = {}
    for header, setting in value.items():
        keyword = _HEADER_OPTIONS.get(str(header).lower())
        if keyword is None:
            names = ", ".join(HEADER_DEFAULTS)
            raise ConfigError(
                "headers", f"{header!r} is not a security header bastion sets: {names}"
            )
        if setting is not None and not isinstance(setting, str):
            raise ConfigError(f"headers[{header!r}]", "must be a string, or None to leave it off")
        chosen[keyword] = setting
    return chosen


def _docs(value: Any) -> SwaggerUI | None:
    if value is True:
        return SwaggerUI()
    if value is False or value is None:
        return None
    if isinstance(value, SwaggerUI):
        return value
    raise ConfigError("docs", "must be True, False or a bastion.SwaggerUI(...)")


def _rules(value: Any) -> tuple[Rule, ...]:
    if value is None:
        return (api_rule(),)
    if isinstance(value, Rule | str | bytes) or not isinstance(value, Iterable):
        raise ConfigError("rate_limits", "give a list of bastion.Rule")
    rules = tuple(value)
    for rule in rules:
        if not isinstance(rule, Rule):
            raise ConfigError("rate_limits", f"{rule!r} is not a bastion.Rule")
    names = [rule.store_prefix for rule in rules]
    if len(set(names)) != len(names):
        raise ConfigError("rate_limits", "two rules share a name (they would share counters)")
    return rules


def _store(value: Any) -> tuple[Store, bool]:
    """``(store, made here)``: ``"memory"``, a Redis URL, or a store object."""
    if value == "memory":
        return MemoryStore(), True
    if isinstance(value, str):
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                "ratelimit_store", f"{value!r}: 'memory', a redis:// URL or a store object"
            )
        try:
            from bastion.ratelimit.redis_store import RedisStore
        except ImportError:
            raise ConfigError(
                "ratelimit_store",
                "a Redis store needs the redis extra: pip install 'bastion[redis]'",
            ) from None
        return _renamed("ratelimit_store", RedisStore, value), True
    if isinstance(value, Store):
        return value, False
    raise ConfigError("ratelimit_store", f"{value!r}: 'memory', a redis:// URL or a store object")


def _access_log(value: Any) -> logging.Logger | None:
    if value is True:
        return logging.getLogger(ACCESS_LOGGER)
    if value is False or value is None:
        return None
    if isinstance(value, str) and value:
        return logging.getLogger(value)
    if isinstance(value, logging.Logger):
        return value
    raise ConfigError("access_log", "must be True, False, a logger or a logger name")


def _layer(renames: Mapping[str, str], build: Any, *args: Any, **kwargs: Any) -> Any:
    """Build one layer; its ConfigError is renamed to the option of secure() behind it.

    *renames* maps the layer's keyword to the option (``{"max_bytes": "body_max_bytes"}``).
    """
    try:
        return build(*args, **kwargs)
    except ConfigError as exc:
        for keyword, option in renames.items():
            if exc.name == keyword or f"({keyword}=" in exc.name:
                raise ConfigError(option, exc.problem) from None
        raise


def _header_option_name(exc: ConfigError) -> str:
    """``SecurityHeadersMiddleware(frame_options=...)`` → ``headers['X-Frame-Options']``."""
    for lower, keyword in _HEADER_OPTIONS.items():
        if f"({keyword}=" in exc.name:
            return f"headers[{_CANONICAL_NAMES[lower]!r}]"
    return "hsts_preload" if "hsts_preload" in exc.name else "app_csp_paths"


# --- composition ----------------------------------------------------------------------------
def _compose(app: ASGIApp, o: _Checked) -> ASGIApp:
    routes = _routes_of(app)
    inner: ASGIApp = _layer(
        {
            "max_bytes": "body_max_bytes",
            "max_depth": "body_max_depth",
            "path_prefixes": "body_paths",
        },
        BodyRulesMiddleware,
        app,
        max_bytes=o.body_max_bytes,
        max_depth=o.body_max_depth,
        path_prefixes=o.body_paths,
    )
    if routes is not None:
        inner = MethodPolicyMiddleware(inner, routes=routes)
    if o.docs is not None:
        inner = SwaggerUIMiddleware(inner, docs=o.docs)
    inner = RateLimitMiddleware(inner, rules=o.rules, store=o.store, close_store=o.owns_store)
    inner = PathCanonicalMiddleware(inner)
    if o.https != "off":
        inner = _layer(
            {"allowed_hosts": "allowed_hosts"},
            HTTPSOnlyMiddleware,
            inner,
            https_port=o.https_port,
            allowed_hosts=o.allowed_hosts,
            mode="refuse" if o.https == "refuse" else "redirect",
            local_http=o.https == "auto" and not o.trusted,
        )
    inner = TrustedProxyMiddleware(inner, trusted=o.trusted, headers=o.proxy_headers)
    inner = SafeErrorsMiddleware(inner)
    if o.cors_origins:
        inner = _cors(inner, o)
    csp_paths = (*o.app_csp_paths, *((o.docs.path,) if o.docs is not None else ()))
    try:
        inner = SecurityHeadersMiddleware(
            inner,
            hsts_preload=o.hsts_preload,
            app_csp_paths=csp_paths,
            **o.headers,  # type: ignore[arg-type]  # keywords checked by _header_overrides
        )
    except ConfigError as exc:
        raise ConfigError(_header_option_name(exc), exc.problem) from None
    ensure_handler()  # bastion's JSON lines reach stderr even where logging is not configured
    if o.access_log is not None:
        inner = AccessLogMiddleware(inner, logger=o.access_log)
        # uvicorn's own access line would repeat each request in plain text, query string
        # and all (a reset link's ?token=, an OAuth ?code=): bastion's redacted line replaces it.
        logging.getLogger("uvicorn.access").disabled = True
    return RequestIDMiddleware(inner, trust_client_id=o.trust_request_id)


def _cors_names(option: str, names: tuple[str, ...]) -> None:
    """Header names checked as the CORS layer checks them, whether or not CORS is on."""
    try:
        CORSMiddleware(_no_app, origins=(), allow_headers=names)
    except ConfigError as exc:
        raise ConfigError(option, exc.problem) from None


async def _no_app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    raise RuntimeError("never called: a layer built only to check options")


def _cors(inner: ASGIApp, o: _Checked) -> ASGIApp:
    return CORSMiddleware(
        inner,
        origins=o.cors_origins,
        origins_option="cors_origins",
        allow_headers=(*DEFAULT_ALLOW_HEADERS, *o.cors_allow_headers),
        expose_headers=(*DEFAULT_EXPOSE_HEADERS, *o.cors_expose_headers),
    )


def _routes_of(app: Any) -> Any:
    """The route list of a Starlette/FastAPI app (or router), for the method policy."""
    router = getattr(app, "router", app)
    return getattr(router, "routes", None)
