"""``RateLimit("5/15m")``: a limit on one route, as a FastAPI dependency or in any endpoint.

    @app.post("/export", dependencies=[Depends(RateLimit("5/15m"))])
    @app.get("/report", dependencies=[Depends(auth), Depends(RateLimit("30/1h", key="principal"))])

    async def export(request: Request) -> Response:      # plain Starlette
        await export_limit(request)

Why not a second limiter: it is the middleware's machinery seen from a route. It charges the
same store (found at ``scope["bastion.ratelimit"]``, where the rate-limit layer of
:func:`bastion.secure` puts itself — no global, so two stacks in one process stay apart), with
the same algorithm (the sliding log of :mod:`bastion.ratelimit.store`), and its policy joins
the same four headers: a route under ``/api/`` limited to ``5/15m`` answers
``RateLimit-Policy: "api";q=100;w=900, "export";q=5;w=900`` and ``X-RateLimit-*`` describe the
most restrictive of the two (the contract's rule for two policies). A refusal is ``429`` in
the contract's shape with ``Retry-After``, raised as :class:`bastion.errors.HTTPError`, which
the stack's safe-errors layer (or :func:`bastion.fastapi.install_error_handlers`) answers.

Whom it charges (``key``):

* ``"client"`` (default): the client address the trusted-proxy layer resolved (IPv6 by /64),
  exactly as the middleware's rules;
* ``"principal"``: the authenticated caller's ``subject`` (``scope["bastion.principal"]``,
  set by bearer authentication, so put the auth dependency first), so a limit follows a user
  across addresses; an anonymous request is charged by its address instead (never free).
  Users and addresses live in separate key spaces (``user:`` / ``ip:``), so a subject that
  looks like an address cannot drain that address's budget;
* a callable ``key(request) -> str | None``: ``None`` leaves the request uncharged.

Counters: a limit without ``name`` counts per route (its path template, so ``/items/1`` and
``/items/2`` share one budget) under the policy name of the route's endpoint; ``name="export"``
shares one budget wherever that name is used. Per-route limits never share counters with the
middleware's rules (their keys are under ``route.``).

Without :func:`bastion.secure` around the app, pass ``store=``; the limit is then enforced and
its ``429`` carries every header, but successful responses carry none (no layer adds them).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from starlette.requests import Request

from bastion.asgi import (
    PRINCIPAL_KEY,
    RATE_CHARGES_KEY,
    RATELIMIT_KEY,
    RESPONSE_HEADERS_KEY,
    Scope,
)
from bastion.errors import ConfigError, HTTPError, StoreError
from bastion.ratelimit.headers import POLICY_NAME, rate_headers, retry_after
from bastion.ratelimit.keys import client_key
from bastion.ratelimit.policy import Rate
from bastion.ratelimit.rules import Charge, FailureMode, Rule
from bastion.ratelimit.store import Store

if TYPE_CHECKING:
    from bastion.middleware.ratelimit import RateLimitMiddleware

__all__ = ["NO_STORE_MESSAGE", "RateLimit", "RateLimitKey"]

logger = logging.getLogger("bastion.ratelimit")

RateLimitKey = Literal["client", "principal"] | Callable[[Request], str | None]
NO_STORE_MESSAGE = (
    "RateLimit found no store: wrap the app with bastion.secure() or pass RateLimit(store=...)"
)
_MAX_KEY = 200
_NOT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_UNAVAILABLE = "Service temporarily unavailable"


class RateLimit:
    """At most *rate* requests per client (or per user) on the routes that depend on it."""

    def __init__(
        self,
        rate: Rate | str,
        *,
        key: RateLimitKey = "client",
        name: str | None = None,
        message: str = "Too many requests",
        on_store_failure: FailureMode = "fail-open",
        store: Store | None = None,
    ) -> None:
        if name is not None and (not isinstance(name, str) or not POLICY_NAME.match(name)):
            raise ConfigError(
                "RateLimit(name=...)", f"{name!r}: 1-64 letters, digits, '.', '_' or '-'"
            )
        if key not in ("client", "principal") and not callable(key):
            raise ConfigError(
                "RateLimit(key=...)", f"{key!r}: 'client', 'principal' or a callable(request)"
            )
        if store is not None and not isinstance(store, Store):
            raise ConfigError("RateLimit(store=...)", "must implement hit/refund/ping/aclose")
        # A rule validates rate, message and on_store_failure (and names the option).
        try:
            self._template = Rule(
                name or "route",
                rate,
                message=message,
                on_store_failure=on_store_failure,
                namespace=f"route.{name}" if name else None,
            )
        except ConfigError as exc:
            option = exc.name.rsplit(": ", 1)[-1]
            raise ConfigError(f"RateLimit({option}=...)", exc.problem) from None
        self.rate = self._template.rate
        self.name = name
        self.key = key
        self.store = store
        self._rules: dict[str, Rule] = {}

    def __repr__(self) -> str:
        return f"RateLimit({str(self.rate)!r}, name={self.name!r}, key={self.key!r})"

    async def __call__(self, request: Request) -> None:
        """Charge this request; raise ``HTTPError(429)`` when the budget is spent.

        FastAPI injects *request* (``Depends(RateLimit(...))``); elsewhere call it yourself.
        """
        scope = request.scope
        limiter: RateLimitMiddleware | None = scope.get(RATELIMIT_KEY)
        store = self.store if self.store is not None else getattr(limiter, "store", None)
        if store is None:
            raise RuntimeError(NO_STORE_MESSAGE)  # a 500, logged: never an unenforced limit
        client = self._client(request)
        if client is None:
            return
        if len(client) > _MAX_KEY:
            client = hashlib.sha256(client.encode()).hexdigest()
        rule = self._rule(scope)
        store_key = rule.store_prefix + client
        try:
            allowed, used, reset, token = await store.hit(store_key, rule.rate)
        except StoreError as exc:
            logger.error("rate-limit store unavailable (limit %s): %s", rule.name, exc.detail)
            if rule.on_store_failure == "fail-closed":
                raise HTTPError(503, _UNAVAILABLE, headers=[(b"retry-after", b"5")]) from None
            return
        headers = self._record(scope, Charge(rule, store_key, used, reset, token))
        if not allowed:
            raise HTTPError(
                429, rule.message, headers=[*headers, (b"retry-after", retry_after(reset))]
            )

    # --- whom to charge --------------------------------------------------------------------
    def _client(self, request: Request) -> str | None:
        key = self.key
        scope = request.scope
        if key == "client":
            return client_key(scope)
        if key == "principal":
            subject = getattr(scope.get(PRINCIPAL_KEY), "subject", None)
            if isinstance(subject, str) and subject:
                return "user:" + subject
            return "ip:" + client_key(scope)
        value = key(request)
        if value is None:
            return None
        if not isinstance(value, str):
            raise TypeError(f"RateLimit key function returned {type(value).__name__}, not str")
        return value

    # --- which counters -------------------------------------------------------------------
    def _rule(self, scope: Scope) -> Rule:
        """The rule for this route: the named one, or one per route template."""
        if self.name is not None:
            return self._template
        template, policy = _route_identity(scope)
        rule = self._rules.get(template)
        if rule is None:
            base = self._template
            rule = Rule(
                policy,
                base.rate,
                message=base.message,
                on_store_failure=base.on_store_failure,
                namespace=f"route.{template}",
            )
            if len(self._rules) < 1024:  # bounded: templates are few, but be safe
                self._rules[template] = rule
        return rule

    @staticmethod
    def _record(scope: Scope, charge: Charge) -> list[tuple[bytes, bytes]]:
        """Join this charge to the request's others; the headers the response must carry.

        Inside the stack the four headers live once in ``scope["bastion.response_headers"]``
        (updated in place, merged with the middleware's rules) and nothing is returned;
        without it they are returned, for the 429 to carry.
        """
        added = scope.get(RESPONSE_HEADERS_KEY)
        state = scope.get(RATE_CHARGES_KEY)
        if added is None:
            return rate_headers([charge])
        if state is None:
            charges = [charge]
            first = len(added)
            added.extend(rate_headers(charges))
            scope[RATE_CHARGES_KEY] = (charges, first)
        else:
            charges, first = state
            charges.append(charge)
            added[first : first + 4] = rate_headers(charges)
        return []


def _route_identity(scope: Scope) -> tuple[str, str]:
    """``(template, policy name)`` of the matched route.

    FastAPI records the route (``scope["route"]``: its path template and name); Starlette
    records the endpoint, whose qualified name is stable across processes (a Redis store is
    shared by many). The policy name is the endpoint's name, reduced to the characters a
    ``RateLimit-Policy`` name may hold.
    """
    route = scope.get("route")
    endpoint = scope.get("endpoint")
    template = getattr(route, "path", None)
    name = getattr(route, "name", None) or getattr(endpoint, "__name__", None)
    if not isinstance(template, str):
        module = getattr(endpoint, "__module__", "")
        qualname = getattr(endpoint, "__qualname__", None)
        template = f"{module}.{qualname}" if qualname else "app"
    policy = _NOT_NAME.sub("_", str(name or "route")).strip("_.-")[:64] or "route"
    if not policy[0].isalnum():
        policy = "route"
    return template, policy
