"""The in-process store: the sliding log of :mod:`bastion.ratelimit.store` in a dict of deques.

Why it is safe under asyncio: every method does its whole read-modify-write without an
``await``, so no other task can interleave with a decision. There is no background thread
(``limits`` 5.8's expiry thread raced the request path and raised ``KeyError`` under load).

Why memory stays bounded even under a flood of distinct keys (spoofed or rotating clients):

* each key holds at most ``limit`` instants (refused requests are not recorded);
* an expiry heap holds one ``(expires_at, key, window)`` entry per key, pushed when the key is
  created — not on every hit, which keeps the hot path to a dict lookup and a deque append.
  Each time a new key arrives, a bounded sweep pops due entries: a key that was charged since
  is pushed back with its real expiry, an expired one is deleted. New keys are the only way
  memory grows, so they pay for the cleanup;
* ``max_keys`` is a hard cap: at the cap the least recently charged key is evicted (its
  client starts afresh — logged, because it means the cap is too small or someone is flooding).
  Memory is then at most about ``max_keys × (0.7 KiB + 32 B × limit)``.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from bastion.errors import ConfigError
from bastion.ratelimit.policy import Rate
from bastion.ratelimit.store import Decision

__all__ = ["MemoryStore"]

logger = logging.getLogger("bastion.ratelimit")

_SWEEP_BUDGET = 16  # due heap entries examined per new key: > 1, so cleanup outpaces growth
_EVICT_RECHECK = 64  # stale heap entries re-pushed before evicting whatever is first
_WARN_EVERY = 60.0  # seconds between two "store full" warnings


class MemoryStore:
    """Sliding-log store for one process (the default; use Redis to share limits)."""

    __slots__ = ("_clock", "_expiry", "_last_warning", "_logs", "evictions", "max_keys")

    def __init__(
        self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not isinstance(max_keys, int) or isinstance(max_keys, bool) or max_keys < 1:
            raise ConfigError("max_keys", "must be a positive integer")
        if not callable(clock):
            raise ConfigError("clock", "must be a callable returning seconds")
        self.max_keys = max_keys
        self.evictions = 0  # live keys dropped at the cap (a gauge for operators and tests)
        self._clock = clock
        self._logs: dict[str, deque[float]] = {}
        self._expiry: list[tuple[float, str, int]] = []
        self._last_warning = float("-inf")

    def __len__(self) -> int:
        """Number of keys currently held."""
        return len(self._logs)

    async def hit(self, key: str, rate: Rate) -> Decision:
        """Charge *key* if fewer than ``rate.limit`` charges lie in the last ``rate.window`` s."""
        now = self._clock()
        log = self._logs.get(key)
        if log is None:
            return self._first_hit(key, rate.window, now)
        window = rate.window
        try:
            if log[0] <= now - window:  # the oldest charge left the window: drop expired ones
                cutoff = now - window
                popleft = log.popleft
                while log[0] <= cutoff:
                    popleft()
        except IndexError:  # the log is (or became) empty: refunds can empty it
            pass
        used = len(log)
        if used < rate.limit:
            log.append(now)
            return (True, used + 1, log[0] + window - now, now)
        return (False, used, log[0] + window - now, None)

    async def refund(self, key: str, rate: Rate, token: Any) -> None:
        """Remove the instant *token* recorded (equal instants are interchangeable)."""
        if token is None:
            return
        log = self._logs.get(key)
        if log is not None:
            # ValueError: already expired and trimmed, or evicted with its key.
            with suppress(ValueError):
                log.remove(token)

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._logs.clear()
        self._expiry.clear()

    # -- slow path: a key seen for the first time ------------------------------------------

    def _first_hit(self, key: str, window: int, now: float) -> Decision:
        self._sweep(now, _SWEEP_BUDGET)
        if len(self._logs) >= self.max_keys:
            self._evict(now)
        self._logs[key] = deque((now,))
        heapq.heappush(self._expiry, (now + window, key, window))
        return (True, 1, float(window), now)

    def _sweep(self, now: float, budget: int) -> None:
        """Examine up to *budget* due heap entries: delete expired keys, re-file live ones."""
        heap, logs = self._expiry, self._logs
        while heap and budget > 0 and heap[0][0] <= now:
            budget -= 1
            _, key, window = heap[0]
            log = logs.get(key)
            if log and log[-1] + window > now:  # charged since it was filed: still live
                heapq.heapreplace(heap, (log[-1] + window, key, window))
            else:
                heapq.heappop(heap)
                logs.pop(key, None)

    def _evict(self, now: float) -> None:
        """Drop the least recently charged key(s) until there is room for one more."""
        heap, logs = self._expiry, self._logs
        rechecks = _EVICT_RECHECK
        live_evicted = 0
        while heap and len(logs) >= self.max_keys:
            expires_at, key, window = heap[0]
            log = logs.get(key)
            if rechecks > 0 and log and log[-1] + window > expires_at:
                # Filed with an older expiry than it really has: re-file, look again, so
                # the victim is the key charged least recently rather than created first.
                rechecks -= 1
                heapq.heapreplace(heap, (log[-1] + window, key, window))
                continue
            heapq.heappop(heap)
            logs.pop(key, None)
            if log and log[-1] + window > now:
                live_evicted += 1
        self.evictions += live_evicted
        if live_evicted and now - self._last_warning >= _WARN_EVERY:
            self._last_warning = now
            logger.warning(
                "rate-limit memory store full (%d keys): evicting the least recently used; "
                "raise max_keys or use Redis",
                self.max_keys,
            )
