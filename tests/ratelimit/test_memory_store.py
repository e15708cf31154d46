"""What only the in-process store must prove: bounded memory, eviction, safety under load."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from bastion.errors import ConfigError
from bastion.ratelimit.memory import MemoryStore
from bastion.ratelimit.policy import Rate
from tests.ratelimit.decisions import hit
from tests.ratelimit.redis_server import FakeClock

RATE = Rate(5, 10)


async def test_expired_keys_are_evicted_as_new_keys_arrive(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    for i in range(300):
        await hit(store, f"api:old-{i}", RATE)
    assert len(store) == 300
    clock.advance(10)  # every old charge has left its window
    for i in range(40):
        await hit(store, f"api:new-{i}", RATE)
    assert len(store) == 40
    assert len(store._expiry) == 40  # one expiry entry per key, no leak


async def test_a_key_charged_since_it_was_filed_survives_the_sweep(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    await hit(store, "api:busy", RATE)
    clock.advance(8)
    await hit(store, "api:busy", RATE)  # alive until t = 18
    clock.advance(3)  # t = 11: its first charge expired, the second has not
    await hit(store, "api:newcomer", RATE)  # triggers the sweep
    assert len(store) == 2
    assert (await hit(store, "api:busy", RATE)).used == 2  # the t=8 charge is still counted


async def test_a_flood_of_distinct_keys_cannot_exhaust_memory(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Spoofed or rotating clients, all inside one window: memory stays at the cap."""
    store = MemoryStore(max_keys=1000, clock=clock)
    with caplog.at_level(logging.WARNING, logger="bastion.ratelimit"):
        for i in range(50_000):
            await hit(store, f"api:flood-{i}", RATE)
            if i % 1000 == 0:
                clock.advance(0.001)
    assert len(store) == 1000
    assert len(store._expiry) == 1000
    assert store.evictions == 49_000
    assert "memory store full" in caplog.text
    assert len(caplog.records) == 1  # warned once, not 49,000 times


async def test_at_the_cap_the_least_recently_charged_key_goes(clock: FakeClock) -> None:
    store = MemoryStore(max_keys=3, clock=clock)
    for name in ("a", "b", "c"):
        await hit(store, f"api:{name}", RATE)
        clock.advance(1)
    await hit(store, "api:a", RATE)  # a was created first but charged last
    clock.advance(1)
    await hit(store, "api:d", RATE)
    assert set(store._logs) == {"api:a", "api:c", "api:d"}
    assert (await hit(store, "api:a", RATE)).used == 3  # a kept both its charges


async def test_refunded_empty_log_is_cleaned_later(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    _, _, _, token = await hit(store, "auth:k", RATE)
    await store.refund("auth:k", RATE, token)
    decision = await hit(store, "auth:k", RATE)
    assert (decision.allowed, decision.used, decision.reset_after) == (True, 1, 10.0)
    _, _, _, token = await hit(store, "auth:gone", RATE)
    await store.refund("auth:gone", RATE, token)
    clock.advance(11)
    await hit(store, "auth:fresh", RATE)
    assert "auth:gone" not in store._logs


async def test_stress_many_tasks_many_keys() -> None:
    """Concurrent hits, refunds and sweeps with a moving clock (limits 5.8 raised KeyError)."""
    clock = FakeClock()
    store = MemoryStore(max_keys=500, clock=clock)
    rate = Rate(8, 2)
    rng = random.Random(1234)

    async def worker() -> None:
        for _ in range(300):
            key = f"api:{rng.randrange(800)}"
            allowed, used, reset, token = await hit(store, key, rate)
            assert 0 <= used <= rate.limit
            assert 0 < reset <= rate.window
            if allowed and rng.random() < 0.2:
                await asyncio.sleep(0)  # let others interleave before the refund
                await store.refund(key, rate, token)
            if rng.random() < 0.1:
                clock.advance(0.01)
            await asyncio.sleep(0)

    await asyncio.gather(*(worker() for _ in range(200)))
    assert len(store) <= 500
    assert len(store._expiry) == len(store)
    for key, log in store._logs.items():
        assert list(log) == sorted(log), key
        assert len(log) <= rate.limit, key


def test_bad_options_are_refused_at_construction() -> None:
    with pytest.raises(ConfigError, match="max_keys"):
        MemoryStore(max_keys=0)
    with pytest.raises(ConfigError, match="clock"):
        MemoryStore(clock=42)  # type: ignore[arg-type]
