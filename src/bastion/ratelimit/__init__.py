"""Rate limiting: policies, rules, client keys, header formatting and the stores.

The ASGI layer that applies them is :class:`bastion.middleware.ratelimit.RateLimitMiddleware`;
:func:`build_ratelimit` / :func:`from_settings` assemble the contract's configuration.
The algorithm (a sliding log, no boundary burst) is argued in :mod:`bastion.ratelimit.store`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.ratelimit.factory import (
    build_ratelimit,
    from_settings,
    rules_from_settings,
    store_from_settings,
)
from bastion.ratelimit.keys import canonical_path, client_key, ip_key, make_client_key
from bastion.ratelimit.memory import MemoryStore
from bastion.ratelimit.policy import Rate
from bastion.ratelimit.rules import AUTH_MESSAGE, Rule, api_rule, auth_rule
from bastion.ratelimit.store import Decision, Store

if TYPE_CHECKING:
    from bastion.middleware.ratelimit import RateLimitMiddleware
    from bastion.ratelimit.dependency import RateLimit
    from bastion.ratelimit.redis_store import RedisStore

__all__ = [
    "AUTH_MESSAGE",
    "Decision",
    "MemoryStore",
    "Rate",
    "RateLimit",
    "RateLimitMiddleware",
    "RedisStore",
    "Rule",
    "Store",
    "api_rule",
    "auth_rule",
    "build_ratelimit",
    "canonical_path",
    "client_key",
    "from_settings",
    "ip_key",
    "make_client_key",
    "rules_from_settings",
    "store_from_settings",
]


def __getattr__(name: str) -> Any:
    # Loaded on first use: the Redis store imports redis-py, and the middleware module
    # imports this package (an eager import here would be circular).
    if name == "RedisStore":
        from bastion.ratelimit.redis_store import RedisStore

        return RedisStore
    if name == "RateLimit":
        from bastion.ratelimit.dependency import RateLimit

        return RateLimit
    if name == "RateLimitMiddleware":
        from bastion.middleware.ratelimit import RateLimitMiddleware

        return RateLimitMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
