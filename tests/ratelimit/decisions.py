"""A store decision with names, for tests that read one field of it.

Stores return a plain ``(allowed, used, reset_after, token)`` tuple: building a NamedTuple
instead costs about 40% of an in-process decision (measured with bench/bench_ratelimit.py
for issue 17), so the names live here, where reading them costs nothing that matters.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from bastion.ratelimit.policy import Rate
from bastion.ratelimit.store import Store


class Decided(NamedTuple):
    allowed: bool
    used: int
    reset_after: float
    token: Any


async def hit(store: Store, key: str, rate: Rate) -> Decided:
    """``store.hit(key, rate)``, its decision named (and checked to have four fields)."""
    return Decided(*await store.hit(key, rate))
