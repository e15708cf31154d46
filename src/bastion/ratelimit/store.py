"""The storage protocol behind every rate-limit rule, and the algorithm both stores implement.

Algorithm: a **sliding log** (also called "moving window"). For each key the store keeps the
instants of the charges still inside the window; a request at instant ``now`` is admitted iff
fewer than ``limit`` charges lie in ``(now - window, now]``, and an admitted request records
``now``. Why this one and not the others:

* **Fixed window** (one counter reset every ``window`` seconds) admits ``limit`` requests at
  the end of one window and ``limit`` more at the start of the next: a 2× burst at every
  boundary, exactly what a password guesser wants.
* **Sliding-window counter** (the current counter plus a weighted share of the previous one)
  is an estimate: it assumes the previous window's requests were spread evenly, so bursts in
  that window can still put more than ``limit`` requests in some window of length ``window``
  (and ``limits`` documents an extra bypass in its first sampling period).
* **Token bucket / GCRA** with a burst of ``limit`` refills continuously: after a full burst
  it admits one more request every ``window / limit`` seconds, so up to ``2 × limit - 1`` in
  one window. With a burst of 1 it never exceeds the rate but forbids what the contract
  allows (five login attempts in a row would have to be three minutes apart).
* **Sliding log** admits at most ``limit`` requests in *any* interval of length ``window``,
  with no boundary at all: that is the property stated by ``"5/15m"`` and the one the
  property tests check. It is also exact to *give a charge back* (remove that one instant),
  which the auth rule needs to count only failures. Its cost is memory proportional to
  ``limit`` per active key — a few KiB for the contract's 100/15m, bounded by the memory
  store's key cap, and a compact sorted set in Redis.

The reset time follows from the log: the oldest charge in the window expires at
``oldest + window``, which is the moment one more unit becomes available; both the
``RateLimit`` header's ``t`` and ``Retry-After`` on a ``429`` are that moment.

A store is done when it passes ``tests/ratelimit/test_store_contract.py`` unchanged.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias, runtime_checkable

from bastion.ratelimit.policy import Rate

__all__ = ["Decision", "Store"]

#: ``(allowed, used, reset_after, token)`` — a plain tuple because a decision is made on every
#: request and a tuple costs a fraction of an object (see bench/bench_ratelimit.py):
#:
#: * ``allowed`` — the request was admitted and charged;
#: * ``used`` — charges in the window *after* this decision (``limit - used`` remain);
#: * ``reset_after`` — seconds until the oldest charge in the window expires (when one more
#:   unit becomes available); ``0.0`` when the window holds no charge;
#: * ``token`` — opaque proof of this charge for :meth:`Store.refund` (``None`` if refused).
Decision: TypeAlias = tuple[bool, int, float, Any]


@runtime_checkable
class Store(Protocol):
    """Where the sliding logs live. Each method is atomic with respect to the others.

    Keys are namespaced by the caller (``"<rule>:<client>"``); a store may add its own prefix.
    Backend failures raise :class:`bastion.errors.StoreError`, never a library exception.
    """

    async def hit(self, key: str, rate: Rate) -> Decision:
        """Charge one request to *key* if *rate* allows it; say so, and how much is left."""
        ...

    async def refund(self, key: str, rate: Rate, token: Any) -> None:
        """Give back the charge *token* proves (a no-op if it already expired or was refunded)."""
        ...

    async def ping(self) -> bool:
        """``True`` when the backend answers; never raises (for ``/healthz``)."""
        ...

    async def aclose(self) -> None:
        """Release connections; the store must not be used afterwards."""
        ...
