"""Rate limits and progressive slow-down, as a pure ASGI layer.

Where it sits: after the trusted-proxy layer (``scope["client"]`` is the real client, so a
spoofed ``X-Forwarded-For`` from an untrusted peer changes nothing) and after path
canonicalisation, before the body rules and the app. It never depends on routing: rules
match path prefixes, so a request the router will ``404`` is charged like any other
(limits that only apply to matched routes, as slowapi's exemption of unmatched ones, let
scanners roam free).

Per request, for each matching rule in order: compute its key, charge it in the store
(:class:`~bastion.ratelimit.store.Store`, one atomic decision). The first rule that refuses
answers ``429`` with its public message, ``Retry-After`` and the rate headers of the rules
evaluated so far. Otherwise the request waits the largest slow-down delay of its rules
(``await sleep(...)``, never blocking the loop) and goes to the app; the rate headers are
added to the response. For a rule that counts only failures, a response status below 400
gives that charge back, atomically, before the headers are written. Inside the safe-errors
layer (as in ``secure()``), the headers go to the list it keeps at
``scope["bastion.response_headers"]`` and it adds them to whatever response leaves it —
the app's, or the 500 it makes when the app fails (a limited response too); alone, this layer
adds them to the response start itself.

Headers on every response a rule applied to (draft-ietf-httpapi-ratelimit-headers-10):
``RateLimit-Policy`` lists each applied policy (``"api";q=100;w=900, "auth";q=5;w=900``),
``RateLimit`` its state (``"api";r=73;t=412, "auth";r=4;t=900``), and
``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` describe the most restrictive one (the
fewest remaining). ``t`` is the time until the oldest charge leaves the window, which is also
``Retry-After`` on a ``429``, so both name the same instant (§6).

When the store is unreachable each rule follows its ``on_store_failure``: ``fail-open``
serves the request without that rule's headers and logs an error (at most every 10 s),
``fail-closed`` answers ``503 {"error":"Service temporarily unavailable"}`` with
``Retry-After``. Nothing is cached about the failure: the next request asks the store
again, so service resumes by itself when the store comes back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from bastion.asgi import (
    RATE_CHARGES_KEY,
    RATELIMIT_KEY,
    RESPONSE_HEADERS_KEY,
    ASGIApp,
    Headers,
    Message,
    Receive,
    Scope,
    Send,
    send_error,
)
from bastion.caching import BoundedDict
from bastion.errors import ConfigError, StoreError
from bastion.ratelimit.headers import rate_headers, retry_after
from bastion.ratelimit.keys import canonical_path
from bastion.ratelimit.rules import Charge, Rule
from bastion.ratelimit.store import Store

__all__ = ["UNAVAILABLE_MESSAGE", "RateLimitMiddleware", "rate_headers"]

logger = logging.getLogger("bastion.ratelimit")

UNAVAILABLE_MESSAGE = "Service temporarily unavailable"
_MAX_KEY = 200  # longer keys (from a custom key function) are hashed: bounded store keys
_LOG_EVERY = 10.0
_PATH_CACHE_SIZE = 4096
_CACHED_PATH_LENGTH = 512


class RateLimitMiddleware:
    """Enforce *rules* with counters in *store*; see the module docstring for the behaviour."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        rules: Iterable[Rule],
        store: Store,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        unavailable_retry_after: int = 5,
        close_store: bool = False,
    ) -> None:
        self.app = app
        if isinstance(rules, Rule | str | bytes):
            raise ConfigError("rules", "give a list of Rule, not one")
        self.rules = tuple(rules)
        if not all(isinstance(rule, Rule) for rule in self.rules):
            raise ConfigError("rules", "must be a sequence of Rule")
        names = [rule.name for rule in self.rules]
        if len(set(names)) != len(names):
            # One name is one counter namespace: two rules sharing it would double count.
            raise ConfigError("rules", f"duplicate rule names in {names}")
        if not isinstance(store, Store):
            raise ConfigError("store", "must implement hit/refund/ping/aclose")
        if not callable(sleep):
            raise ConfigError("sleep", "must be an async callable")
        if (
            isinstance(unavailable_retry_after, bool)
            or not isinstance(unavailable_retry_after, int)
            or not 1 <= unavailable_retry_after <= 3600
        ):
            raise ConfigError("unavailable_retry_after", "must be 1..3600 seconds")
        if not isinstance(close_store, bool):
            raise ConfigError("close_store", "must be True or False")
        self.store = store
        self.close_store = close_store
        self._sleep = sleep
        self._unavailable_headers: Headers = [(b"retry-after", b"%d" % unavailable_retry_after)]
        self._down_since: float | None = None
        self._last_log = float("-inf")
        self._by_path: BoundedDict[str, tuple[Rule, ...]] = BoundedDict(_PATH_CACHE_SIZE)

    async def ping_store(self) -> bool:
        """Whether the rate-limit store answers (``/healthz``'s ``ratelimit_store``)."""
        return await self.store.ping()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and self.close_store:
                await self.app(scope, receive, self._closing_send(send))
                return
            await self.app(scope, receive, send)
            return
        scope[RATELIMIT_KEY] = self  # per-route limits (bastion.RateLimit) find the store here
        raw_path = scope.get("path") or "/"
        rules = self._by_path.get(raw_path)
        if rules is None:
            rules = self._rules_for_path(raw_path)
        if not rules:
            await self.app(scope, receive, send)  # no rule's prefix covers this path
            return
        store = self.store
        charges: list[Charge] = []  # one per rule applied
        delay = 0.0
        refundable = False
        for rule in rules:
            if not rule.every_request and not rule.matches_request(scope):
                continue
            client = rule.key(scope)
            if client is None:
                continue
            if len(client) > _MAX_KEY:
                client = hashlib.sha256(client.encode()).hexdigest()
            key = rule.store_prefix + client
            try:
                allowed, used, reset, token = await store.hit(key, rule.rate)
            except StoreError as exc:
                self._store_failed(rule, exc)
                if rule.on_store_failure == "fail-closed":
                    await send_error(
                        scope, send, 503, UNAVAILABLE_MESSAGE, headers=self._unavailable_headers
                    )
                    return
                continue
            if self._down_since is not None:
                self._store_recovered()
            charges.append(Charge(rule, key, used, reset, token))
            if not allowed:
                headers = rate_headers(charges)
                headers.append((b"retry-after", retry_after(reset)))
                await send_error(scope, send, 429, rule.message, headers=headers)
                return
            if rule.count == "failures":
                refundable = True
            after = rule.slowdown_after
            if after is not None and used > after:  # rule.delay() is 0 otherwise
                wait = rule.delay(used)
                if wait > delay:
                    delay = wait
        if not charges:
            await self.app(scope, receive, send)
            return
        if delay:
            await self._sleep(delay)

        added = scope.get(RESPONSE_HEADERS_KEY)
        if added is not None:
            # The safe-errors layer outside adds these to whatever response leaves it, its
            # own 500s included: no send wrapper here, unless a success may give charges back.
            first = len(added)
            added.extend(rate_headers(charges))
            scope[RATE_CHARGES_KEY] = (charges, first)  # a per-route limit merges its own
            if not refundable:
                await self.app(scope, receive, send)
                return

            def send_refunding(message: Message) -> Awaitable[None]:
                if message["type"] == "http.response.start" and message["status"] < 400:
                    return self._refund_then_rewrite(charges, added, first, message, send)
                return send(message)

            await self.app(scope, receive, send_refunding)
            return

        # Alone: add the headers to the response here. A plain function returning the next
        # awaitable (one coroutine frame fewer per message); only a response that may give
        # charges back needs a coroutine of its own.
        def send_with_headers(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                if refundable and message["status"] < 400:
                    return self._refund_then_send(charges, message, send)
                message = {
                    **message,
                    "headers": [*message.get("headers", ()), *rate_headers(charges)],
                }
            return send(message)

        await self.app(scope, receive, send_with_headers)

    def _closing_send(self, send: Send) -> Send:
        """*send* for the lifespan scope: the store is closed once the app has shut down."""

        async def send_then_close(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.store.aclose()
            await send(message)

        return send_then_close

    async def _refund_then_rewrite(
        self, charges: list[Charge], added: Headers, first: int, message: Message, send: Send
    ) -> None:
        """Give the successes back, then correct the headers this layer added (same count)."""
        await self._refund_successes(charges)
        headers = rate_headers(charges)
        added[first : first + len(headers)] = headers
        await send(message)

    async def _refund_then_send(self, charges: list[Charge], message: Message, send: Send) -> None:
        await self._refund_successes(charges)
        await send({**message, "headers": [*message.get("headers", ()), *rate_headers(charges)]})

    def _rules_for_path(self, raw_path: str) -> tuple[Rule, ...]:
        """The rules whose path prefixes cover *raw_path*, remembered per path.

        Exact to cache: :func:`canonical_path` and :meth:`Rule.matches_path` are pure
        functions of the path string. Bounded in entries and in their length, as distinct
        paths (ids, scans, floods of long URLs) are unbounded.
        """
        path = canonical_path(raw_path)
        rules = tuple(rule for rule in self.rules if rule.matches_path(path))
        if len(raw_path) <= _CACHED_PATH_LENGTH:  # long paths (floods) are not kept at all
            self._by_path.put(raw_path, rules)
        return rules

    async def _refund_successes(self, charges: list[Charge]) -> None:
        """Give back the charges of rules that count only failures (the response succeeded)."""
        for charge in charges:
            rule = charge.rule
            if rule.count != "failures" or charge.token is None:
                continue
            try:
                await self.store.refund(charge.key, rule.rate, charge.token)
            except StoreError as exc:
                self._store_failed(rule, exc)  # the charge stays: the safe direction
                continue
            charge.used -= 1
            charge.token = None
            if charge.used <= 0:
                charge.reset_after = 0.0

    def _store_failed(self, rule: Rule, exc: StoreError) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        elif now - self._last_log < _LOG_EVERY:
            return
        self._last_log = now
        logger.error(
            "rate-limit store unavailable (rule %s: %s): %s",
            rule.name,
            "refusing with 503" if rule.on_store_failure == "fail-closed" else "not enforced",
            exc.detail or exc,
        )

    def _store_recovered(self) -> None:
        if self._down_since is not None:
            logger.warning(
                "rate-limit store reachable again after %.1fs", time.monotonic() - self._down_since
            )
            self._down_since = None
