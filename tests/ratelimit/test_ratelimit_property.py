"""Property tests of the sliding log on every store, against a model, with a fake clock.

Properties: (1) never more than ``limit`` kept charges in any window of length ``window``;
(2) exact — a request is refused only when ``limit`` charges lie in the window (the limiter
is not stricter than stated); (3) ``used`` and ``reset_after`` equal the model's, so the
``RateLimit`` header's ``r`` and ``t`` are consistent; (4) waiting ``reset_after`` after a
refusal is exactly enough, a tick less is not.

Instants are multiples of 1/64 s so they are exact both as floats (memory store) and as
microseconds (Redis store). ``BASTION_FUZZ_EXAMPLES`` raises the example count (make fuzz).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.ratelimit.memory import MemoryStore
from bastion.ratelimit.policy import Rate
from bastion.ratelimit.redis_store import RedisStore
from bastion.ratelimit.store import Store
from tests.ratelimit.decisions import hit
from tests.ratelimit.redis_server import (
    FakeClock,
    delete_prefix,
    require_shared_redis,
    unique_prefix,
)

EXAMPLES = int(os.environ.get("BASTION_FUZZ_EXAMPLES", "100"))
TICK = 1 / 64

KINDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]

operations = st.lists(
    st.tuples(
        st.integers(0, 6 * 64),  # ticks to wait before the operation (up to 6 s)
        st.sampled_from(["hit", "hit", "hit", "refund"]),
        st.integers(0, 1000),  # which live charge a refund gives back
    ),
    max_size=40,
)


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> Any:
    """A per-test key prefix on the shared Redis, cleaned afterwards (None for memory)."""
    if request.node.callspec.params["kind"] != "redis":
        yield None
        return
    url = require_shared_redis()
    prefix = unique_prefix()
    yield prefix
    delete_prefix(url, prefix)


def run_on(
    kind: str, prefix: str | None, scenario: Callable[[Store, FakeClock], Awaitable[None]]
) -> None:
    """Run *scenario* on a fresh store of *kind* in its own event loop (one per example)."""

    async def main() -> None:
        clock = FakeClock()
        if kind == "memory":
            store: Store = MemoryStore(clock=clock)
        else:
            store = RedisStore(require_shared_redis(), prefix=prefix or "", clock=clock)
        try:
            await scenario(store, clock)
        finally:
            await store.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(limit=st.integers(1, 6), window=st.integers(1, 5), ops=operations)
def test_sliding_log_matches_the_model(
    kind: str, redis_prefix: str | None, limit: int, window: int, ops: list[tuple[int, str, int]]
) -> None:
    rate = Rate(limit, window)
    key = f"prop:{uuid.uuid4().hex}"

    async def scenario(store: Store, clock: FakeClock) -> None:
        live: list[tuple[float, Any]] = []  # the model: charges admitted and not given back
        for ticks, action, pick in ops:
            clock.advance(ticks * TICK)
            now = clock.now
            if action == "refund":
                if live:
                    _, token = live.pop(pick % len(live))
                    await store.refund(key, rate, token)
                continue
            in_window = sorted(stamp for stamp, _ in live if stamp > now - window)
            allowed, used, reset, token = await hit(store, key, rate)
            assert allowed == (len(in_window) < limit)  # exact: refused only when full
            assert used == len(in_window) + allowed
            oldest = in_window[0] if in_window else now
            assert reset == pytest.approx(oldest + window - now, abs=1.001e-3)
            assert (token is not None) == allowed
            if allowed:
                live.append((now, token))
        kept = sorted(stamp for stamp, _ in live)
        for i, start in enumerate(kept):  # any window [start, start + w) holds ≤ limit
            assert sum(1 for s in kept[i:] if s < start + window) <= limit

    run_on(kind, redis_prefix, scenario)


@pytest.mark.parametrize("kind", KINDS)
@settings(
    max_examples=max(20, EXAMPLES // 2),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    limit=st.integers(1, 5),
    window=st.integers(1, 5),
    gaps=st.lists(st.integers(0, 3 * 64), min_size=1, max_size=12),
)
def test_waiting_reset_after_is_exactly_enough(
    kind: str, redis_prefix: str | None, limit: int, window: int, gaps: list[int]
) -> None:
    rate = Rate(limit, window)
    key = f"prop:{uuid.uuid4().hex}"

    async def scenario(store: Store, clock: FakeClock) -> None:
        for ticks in gaps:  # some history, then fill the window
            clock.advance(ticks * TICK)
            await hit(store, key, rate)
        while (decision := await hit(store, key, rate)).allowed:
            pass
        reset = decision.reset_after
        assert 0 < reset <= window
        waited = round(reset / TICK) * TICK  # reset is a whole number of ticks here
        if waited > TICK:
            clock.advance(waited - TICK)
            assert not (await hit(store, key, rate)).allowed
            clock.advance(TICK)
        else:
            clock.advance(waited)
        assert (await hit(store, key, rate)).allowed

    run_on(kind, redis_prefix, scenario)
