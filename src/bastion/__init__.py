"""bastion: a security stack for Python REST APIs, and the scanner that proves it.

The public API (everything else is internal)::

    from bastion import secure
    asgi = secure(app, cors_origins=["https://app.example.com"], trusted_proxies=["10.0.0.0/8"])

Names are imported on first use, so ``import bastion`` stays cheap and needs nothing beyond
the core install (Starlette, cryptography, pydantic): no FastAPI, database driver, Redis
client, HTTP client or terminal renderer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0.dev0"

# name -> module that defines it (imported on first access, PEP 562).
_EXPORTS: dict[str, str] = {
    # the one call and its options
    "secure": "bastion.stack",
    "Options": "bastion.stack",
    "ConfigError": "bastion.errors",
    "HTTPError": "bastion.errors",
    "SwaggerUI": "bastion.docs",
    # rate limits
    "RateLimit": "bastion.ratelimit.dependency",
    "Rule": "bastion.ratelimit.rules",
    "api_rule": "bastion.ratelimit.rules",
    "auth_rule": "bastion.ratelimit.rules",
    "MemoryStore": "bastion.ratelimit.memory",
    "RedisStore": "bastion.ratelimit.redis_store",
    "Store": "bastion.ratelimit.store",
    # the layers, each usable alone
    "AccessLogMiddleware": "bastion.middleware.access_log",
    "BodyRulesMiddleware": "bastion.middleware.body",
    "CORSMiddleware": "bastion.middleware.cors",
    "HTTPSOnlyMiddleware": "bastion.middleware.https",
    "MethodPolicyMiddleware": "bastion.middleware.methods",
    "PathCanonicalMiddleware": "bastion.middleware.paths",
    "RateLimitMiddleware": "bastion.middleware.ratelimit",
    "RequestIDMiddleware": "bastion.middleware.request_id",
    "SafeErrorsMiddleware": "bastion.middleware.errors",
    "SecurityHeadersMiddleware": "bastion.middleware.headers",
    "SwaggerUIMiddleware": "bastion.docs",
    "TrustedProxyMiddleware": "bastion.middleware.proxy",
    # --- bearer tokens (lib-tokens) ---
    "BearerAuth": "bastion.auth.bearer",
    "Principal": "bastion.auth.principal",
}

__all__ = [
    "AccessLogMiddleware",
    "BearerAuth",
    "BodyRulesMiddleware",
    "CORSMiddleware",
    "ConfigError",
    "HTTPError",
    "HTTPSOnlyMiddleware",
    "MemoryStore",
    "MethodPolicyMiddleware",
    "Options",
    "PathCanonicalMiddleware",
    "Principal",
    "RateLimit",
    "RateLimitMiddleware",
    "RedisStore",
    "RequestIDMiddleware",
    "Rule",
    "SafeErrorsMiddleware",
    "SecurityHeadersMiddleware",
    "Store",
    "SwaggerUI",
    "SwaggerUIMiddleware",
    "TrustedProxyMiddleware",
    "__version__",
    "api_rule",
    "auth_rule",
    "secure",
]

if TYPE_CHECKING:
    from bastion.auth.bearer import BearerAuth
    from bastion.auth.principal import Principal
    from bastion.docs import SwaggerUI, SwaggerUIMiddleware
    from bastion.errors import ConfigError, HTTPError
    from bastion.middleware.access_log import AccessLogMiddleware
    from bastion.middleware.body import BodyRulesMiddleware
    from bastion.middleware.cors import CORSMiddleware
    from bastion.middleware.errors import SafeErrorsMiddleware
    from bastion.middleware.headers import SecurityHeadersMiddleware
    from bastion.middleware.https import HTTPSOnlyMiddleware
    from bastion.middleware.methods import MethodPolicyMiddleware
    from bastion.middleware.paths import PathCanonicalMiddleware
    from bastion.middleware.proxy import TrustedProxyMiddleware
    from bastion.middleware.ratelimit import RateLimitMiddleware
    from bastion.middleware.request_id import RequestIDMiddleware
    from bastion.ratelimit.dependency import RateLimit
    from bastion.ratelimit.memory import MemoryStore
    from bastion.ratelimit.redis_store import RedisStore
    from bastion.ratelimit.rules import Rule, api_rule, auth_rule
    from bastion.ratelimit.store import Store
    from bastion.stack import Options, secure


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bastion' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
