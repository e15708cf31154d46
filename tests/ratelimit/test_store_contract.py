"""The store contract: every store (memory, Redis) must pass this file unchanged.

The clock is injected, so window arithmetic is checked to the instant. Decisions are
``(allowed, used, reset_after, token)``; see bastion.ratelimit.store.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from bastion.ratelimit.policy import Rate
from bastion.ratelimit.store import Store
from tests.ratelimit.decisions import hit
from tests.ratelimit.redis_server import FakeClock

R3 = Rate(3, 10)


async def test_admits_exactly_limit_then_refuses(store: Store) -> None:
    decisions = [await hit(store, "api:k", R3) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.used for d in decisions] == [1, 2, 3, 3, 3]
    assert all(d.token is not None for d in decisions[:3])
    assert decisions[3].token is None and decisions[4].token is None


async def test_reset_after_is_time_until_oldest_charge_expires(
    store: Store, clock: FakeClock
) -> None:
    first = await hit(store, "api:k", R3)
    assert first.reset_after == pytest.approx(10.0)
    clock.advance(2)
    await hit(store, "api:k", R3)
    clock.advance(2)
    third = await hit(store, "api:k", R3)
    assert third[:2] == (True, 3)
    assert third.reset_after == pytest.approx(6.0)  # the charge at t=0 frees a unit at t=10
    clock.advance(1)
    refused = await hit(store, "api:k", R3)
    assert refused[:2] == (False, 3)
    assert refused.reset_after == pytest.approx(5.0)


async def test_an_instant_counts_for_exactly_one_window(store: Store, clock: FakeClock) -> None:
    one = Rate(1, 10)
    assert (await hit(store, "api:k", one)).allowed
    clock.advance(9.999)
    assert not (await hit(store, "api:k", one)).allowed
    clock.advance(0.001)  # exactly t + window: the charge has left (window is [t, t + w))
    decision = await hit(store, "api:k", one)
    assert (decision.allowed, decision.used) == (True, 1)


async def test_no_burst_at_a_window_boundary(store: Store, clock: FakeClock) -> None:
    """The fixed-window flaw: 3 at the end of one window, 3 more just after it. Refused here."""
    clock.advance(9.5)
    assert all([(await hit(store, "api:k", R3)).allowed for _ in range(3)])
    clock.advance(1.0)  # a fixed window starting at a multiple of 10 s would reset now
    assert not (await hit(store, "api:k", R3)).allowed
    clock.advance(8.9)  # 9.9 s after the burst: still inside its window
    assert not (await hit(store, "api:k", R3)).allowed
    clock.advance(0.1)
    assert [(await hit(store, "api:k", R3)).allowed for _ in range(4)] == [True, True, True, False]


async def test_refused_requests_do_not_extend_the_lockout(store: Store, clock: FakeClock) -> None:
    for _ in range(3):
        await hit(store, "api:k", R3)
    for _ in range(20):
        clock.advance(0.25)
        assert not (await hit(store, "api:k", R3)).allowed
    clock.advance(5.0)  # t = 10: the three charges at t = 0 expire; hammering recorded nothing
    decision = await hit(store, "api:k", R3)
    assert (decision.allowed, decision.used) == (True, 1)


async def test_refund_gives_the_charge_back(store: Store, clock: FakeClock) -> None:
    rate = Rate(2, 10)
    a = await hit(store, "auth:k", rate)
    clock.advance(1)
    b = await hit(store, "auth:k", rate)
    assert (a.used, b.used) == (1, 2)
    await store.refund("auth:k", rate, a.token)
    clock.advance(1)
    c = await hit(store, "auth:k", rate)
    assert c[:2] == (True, 2)
    assert c.reset_after == pytest.approx(9.0)  # the oldest charge left is b's (t=1), not a's (t=0)
    decision = await hit(store, "auth:k", rate)
    assert (decision.allowed, decision.used) == (False, 2)


async def test_refund_of_an_expired_charge_takes_nothing_else(
    store: Store, clock: FakeClock
) -> None:
    one = Rate(1, 10)
    old = await hit(store, "auth:k", one)
    clock.advance(10)
    new = await hit(store, "auth:k", one)
    assert new[:2] == (True, 1)
    await store.refund("auth:k", one, old.token)  # arrives late: must not free new's unit
    assert not (await hit(store, "auth:k", one)).allowed


async def test_refund_without_token_or_key_is_a_no_op(store: Store) -> None:
    await store.refund("auth:never-seen", R3, None)
    refused_token = None
    for _ in range(4):
        refused_token = (await hit(store, "auth:k", R3)).token
    await store.refund("auth:k", R3, refused_token)  # a refused request holds no charge
    assert not (await hit(store, "auth:k", R3)).allowed


async def test_keys_are_independent(store: Store) -> None:
    for _ in range(3):
        await hit(store, "api:a", R3)
    assert not (await hit(store, "api:a", R3)).allowed
    decision = await hit(store, "api:b", R3)
    assert (decision.allowed, decision.used) == (True, 1)
    decision = await hit(store, "auth:a", R3)
    assert (decision.allowed, decision.used) == (True, 1)


async def test_each_key_follows_its_own_rate(store: Store, clock: FakeClock) -> None:
    fast, slow = Rate(2, 1), Rate(2, 60)
    for _ in range(2):
        await hit(store, "fast:k", fast)
        await hit(store, "slow:k", slow)
    clock.advance(1)
    assert (await hit(store, "fast:k", fast)).allowed
    assert not (await hit(store, "slow:k", slow)).allowed


async def test_a_lowered_limit_applies_at_once(store: Store) -> None:
    for _ in range(5):
        await hit(store, "api:k", Rate(5, 10))
    allowed, used, _, _ = await hit(store, "api:k", Rate(3, 10))
    assert not allowed
    assert used >= 3


async def test_concurrent_hits_admit_exactly_the_limit(store: Store) -> None:
    rate = Rate(50, 60)
    decisions = await asyncio.gather(*(hit(store, "api:crowd", rate) for _ in range(200)))
    admitted = [d for d in decisions if d.allowed]
    assert len(admitted) == 50
    assert sorted(d.used for d in admitted) == list(range(1, 51))


async def test_concurrent_charges_and_refunds_stay_consistent(store: Store) -> None:
    rate = Rate(40, 60)
    rng = random.Random(7)

    async def attempt() -> int:
        allowed, _, _, token = await hit(store, "auth:race", rate)
        if allowed and rng.random() < 0.5:
            await store.refund("auth:race", rate, token)
            return 0
        return 1 if allowed else 0

    kept = sum(await asyncio.gather(*(attempt() for _ in range(120))))
    assert 0 < kept <= 40
    _, used, _, _ = await hit(store, "auth:race", rate)
    assert used == min(kept + 1, 40)


async def test_ping(store: Store) -> None:
    assert await store.ping() is True
