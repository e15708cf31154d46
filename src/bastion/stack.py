"""``secure(app, settings)``: every protective layer, composed in one documented order.

Outermost first — each line says why the layer sits where it does:

1. **request id**: first, so every later layer, log line and error body has the id.
2. **access log**: sees the final status of everything below, errors included, and the id.
3. **security headers**: outside every layer that can answer, so 4xx/5xx carry them too.
4. **CORS**: outside safe-errors and the rate limiter, so a browser can read a 500 or a 429
   instead of reporting a CORS failure (pitfall: Starlette #1116); answers preflights before
   method policy would refuse ``OPTIONS``.
5. **safe errors**: turns any exception below into the contract's 500 with the id.
6. **trusted proxy**: resolves the real client and scheme before anything uses them.
7. **HTTPS enforcement**: needs the proxy-resolved scheme.
8. **path canonicalisation**: before any layer keys on the path (rate limits, methods,
   routing), so ``/api%2Fv1/...`` or ``%6Cogin`` cannot open a fresh budget.
9. **rate limit / slow-down**: counts every request under ``/api/``, including the ones the
   layers below refuse (405, 413, 415, 400), so refusals are not a free probe.
10. **method policy**: the full ``Allow`` list, ``TRACE``/``TRACK`` refused.
11. **body rules**: media type, size while streaming, JSON depth, just before the app.
"""

from __future__ import annotations

import logging
from typing import Any

from bastion.asgi import ASGIApp
from bastion.config import Settings
from bastion.middleware.access_log import AccessLogMiddleware
from bastion.middleware.body import BodyRulesMiddleware
from bastion.middleware.cors import CORSMiddleware
from bastion.middleware.errors import SafeErrorsMiddleware
from bastion.middleware.headers import SecurityHeadersMiddleware
from bastion.middleware.https import HTTPSOnlyMiddleware, redirect_app
from bastion.middleware.methods import MethodPolicyMiddleware
from bastion.middleware.paths import PathCanonicalMiddleware
from bastion.middleware.proxy import TrustedProxyMiddleware
from bastion.middleware.ratelimit import RateLimitMiddleware
from bastion.middleware.request_id import RequestIDMiddleware
from bastion.ratelimit import Store, from_settings

log = logging.getLogger("bastion.stack")


class Stack:
    """What the layers share with the app, built once per process: the rate-limit store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rules, self.store = from_settings(settings)

    async def ping_store(self) -> bool:
        """True when the rate-limit store answers (reported by /healthz)."""
        return bool(await self.store.ping())

    async def close(self) -> None:
        await self.store.aclose()


def secure(app: ASGIApp, settings: Settings, *, stack: Stack | None = None) -> ASGIApp:
    """Wrap *app* in every bastion layer configured by *settings* (order: module docstring)."""
    stack = stack or Stack(settings)
    routes = _routes_of(app)
    inner: ASGIApp = BodyRulesMiddleware(app)
    if routes is not None:
        inner = MethodPolicyMiddleware(inner, routes=routes)
    inner = RateLimitMiddleware(inner, rules=stack.rules, store=stack.store)
    inner = PathCanonicalMiddleware(inner)
    if _enforce_https(settings):
        inner = HTTPSOnlyMiddleware(inner, https_port=settings.port)
    inner = TrustedProxyMiddleware(inner, trusted=settings.trusted_proxies)
    inner = SafeErrorsMiddleware(inner)
    if settings.cors_origins:
        inner = CORSMiddleware(inner, origins=settings.cors_origins)
    inner = SecurityHeadersMiddleware(
        inner,
        hsts_preload=settings.hsts_preload,
        # the OAuth login page and the password-reset page bring their own CSP
        app_csp_paths=("/oauth/authorize", "/password-reset"),
    )
    inner = AccessLogMiddleware(inner)
    return RequestIDMiddleware(inner)


def secure_redirect(settings: Settings) -> ASGIApp:
    """The plain-HTTP listener: redirect GET/HEAD to HTTPS, refuse the rest; ids and headers."""
    inner = SecurityHeadersMiddleware(redirect_app(settings.port), hsts_preload=False)
    return RequestIDMiddleware(AccessLogMiddleware(inner))


def _enforce_https(settings: Settings) -> bool:
    """HTTPS enforcement is on unless plain HTTP was chosen with no proxy to say otherwise.

    Over ``bastion serve``'s TLS listener every request is HTTPS already and the check is
    free. Behind a TLS-terminating proxy (``--insecure-http`` + ``trusted_proxies``), the
    proxy's ``X-Forwarded-Proto`` decides. With ``--insecure-http`` and no trusted proxy (a
    local development setup) nothing could ever be HTTPS, so enforcing would refuse all.
    """
    return not (settings.insecure_http and not settings.trusted_proxies)


def _routes_of(app: Any) -> Any:
    """The route list of a Starlette/FastAPI app (or router), for the method policy."""
    router = getattr(app, "router", app)
    return getattr(router, "routes", None)


__all__ = ["Stack", "Store", "secure", "secure_redirect"]
