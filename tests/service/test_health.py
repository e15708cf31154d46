"""/healthz's probe: at most one backend round trip per second, shared by concurrent callers,
and a change of state reported once the second has passed."""

from __future__ import annotations

import asyncio

from bastion.service.health import HealthProbe


class Backend:
    def __init__(self) -> None:
        self.up = True
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def ping(self) -> bool:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.up


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_flood_of_calls_costs_one_probe_per_second() -> None:
    database, store, clock = Backend(), Backend(), Clock()
    health = HealthProbe(database.ping, store.ping, clock=clock)
    for _ in range(1000):
        assert await health.body() == {"status": "ok", "database": "ok", "ratelimit_store": "ok"}
        clock.now += 0.0009  # 1000 calls in 0.9 s
    assert (database.calls, store.calls) == (1, 1)
    clock.now += 0.2
    await health.body()
    assert (database.calls, store.calls) == (2, 2)


async def test_concurrent_callers_share_one_probe() -> None:
    database, clock = Backend(), Clock()
    database.gate = asyncio.Event()
    health = HealthProbe(database.ping, None, clock=clock)
    waiting = [asyncio.create_task(health.body()) for _ in range(50)]
    await asyncio.sleep(0)
    database.gate.set()
    bodies = await asyncio.gather(*waiting)
    assert database.calls == 1
    assert all(
        body == {"status": "ok", "database": "ok", "ratelimit_store": "ok"} for body in bodies
    )


async def test_an_outage_and_a_recovery_are_reported_after_the_second() -> None:
    database, store, clock = Backend(), Backend(), Clock()
    health = HealthProbe(database.ping, store.ping, clock=clock)
    assert (await health.body())["database"] == "ok"
    database.up = store.up = False
    assert (await health.body())["database"] == "ok"  # still within the second
    clock.now += 1.0
    assert await health.body() == {"status": "ok", "database": "down", "ratelimit_store": "down"}
    database.up = True
    clock.now += 1.0
    assert await health.body() == {"status": "ok", "database": "ok", "ratelimit_store": "down"}
