"""Build the contract's rate limiting from :class:`~bastion.config.Settings`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.asgi import ASGIApp
from bastion.ratelimit.memory import MemoryStore
from bastion.ratelimit.rules import FailureMode, Rule, api_rule, auth_rule
from bastion.ratelimit.store import Store

if TYPE_CHECKING:
    from bastion.config import Settings
    from bastion.middleware.ratelimit import RateLimitMiddleware

__all__ = ["build_ratelimit", "from_settings", "rules_from_settings", "store_from_settings"]


def store_from_settings(settings: Settings) -> Store:
    """Redis when ``redis_url`` is set (limits shared by every process), else in-process."""
    if settings.redis_url:
        from bastion.ratelimit.redis_store import RedisStore

        return RedisStore(settings.redis_url)
    return MemoryStore()


def rules_from_settings(settings: Settings) -> list[Rule]:
    """The global ``/api/`` rule (with slow-down) and the strict auth rule, in that order.

    ``ratelimit_store_failure="auto"`` fails closed for the auth rule (an outage must not
    reopen password guessing) and open for the rest (an outage must not take the API down).
    """
    mode = settings.ratelimit_store_failure
    api_failure: FailureMode = "fail-open" if mode == "auto" else mode
    auth_failure: FailureMode = "fail-closed" if mode == "auto" else mode
    return [
        api_rule(
            settings.api_limit,
            slowdown_after=settings.api_slowdown_after,
            slowdown_delay_ms=settings.api_slowdown_delay_ms,
            on_store_failure=api_failure,
        ),
        auth_rule(settings.auth_limit, on_store_failure=auth_failure),
    ]


def from_settings(settings: Settings) -> tuple[list[Rule], Store]:
    """``(rules, store)`` for :class:`~bastion.middleware.ratelimit.RateLimitMiddleware`."""
    return rules_from_settings(settings), store_from_settings(settings)


def build_ratelimit(app: ASGIApp, settings: Settings) -> RateLimitMiddleware:
    """*app* wrapped in the rate-limit layer the settings describe.

    The returned middleware's ``store`` must be closed at shutdown (``await mw.store.aclose()``)
    and ``await mw.ping_store()`` answers ``/healthz``'s ``ratelimit_store``.
    """
    from bastion.middleware.ratelimit import RateLimitMiddleware

    rules, store = from_settings(settings)
    return RateLimitMiddleware(app, rules=rules, store=store)
