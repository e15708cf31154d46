"""``/healthz``'s answer, probed at most once a second.

A probe per call would put a database round trip (and a Redis one) under every poll of a
load balancer and every request of a flood aimed at the one unauthenticated, unlimited
endpoint that touches the backends. The last answer is kept for ``ttl`` seconds; when it is
stale, one caller probes and the callers that arrive meanwhile wait for that probe instead
of starting their own. A backend that goes down (or comes back) is therefore reported within
``ttl`` seconds. Readiness checks belong elsewhere: this stays a liveness answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

Probe = Callable[[], Awaitable[bool]]


class HealthProbe:
    """The ``/healthz`` body, cached for *ttl* seconds (monotonic *clock*)."""

    def __init__(
        self,
        database: Probe,
        ratelimit_store: Probe | None,
        *,
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database = database
        self.ratelimit_store = ratelimit_store
        self.ttl = ttl
        self.clock = clock
        self._body: dict[str, Any] | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def body(self) -> dict[str, Any]:
        if self._body is not None and self.clock() < self._expires:
            return self._body
        async with self._lock:  # one probe at a time; latecomers take its answer
            if self._body is None or self.clock() >= self._expires:
                self._body = await self._probe()
                self._expires = self.clock() + self.ttl
            return self._body

    async def _probe(self) -> dict[str, Any]:
        database_ok = await self.database()
        store_ok = True if self.ratelimit_store is None else await self.ratelimit_store()
        return {
            "status": "ok",
            "database": "ok" if database_ok else "down",
            "ratelimit_store": "ok" if store_ok else "down",
        }


__all__ = ["HealthProbe"]
