"""What only the Redis store must prove: the wire (one EVALSHA, hash-tagged keys, TTLs), the
server clock, and behaviour when Redis is flushed, hung, stopped and restarted."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from bastion.errors import ConfigError, StoreError
from bastion.ratelimit.policy import Rate
from bastion.ratelimit.redis_store import RedisStore
from tests.ratelimit.decisions import hit
from tests.ratelimit.redis_server import (
    FakeClock,
    RedisServer,
    delete_prefix,
    require_shared_redis,
    silent_server,
    unique_prefix,
)
from tests.support import free_port

pytestmark = pytest.mark.redis
RATE = Rate(3, 60)


def commandstats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def test_one_evalsha_per_decision_and_the_script_loaded_once(
    redis_server: RedisServer,
) -> None:
    store = RedisStore(redis_server.url)
    client = redis_server.client()
    client.config_resetstat()
    for _ in range(10):
        await hit(store, "api:1.2.3.4", RATE)
    await store.aclose()
    calls = commandstats(client)
    assert calls.get("evalsha") == 10
    assert calls.get("script|load") == 1
    assert "eval" not in calls
    # Nothing else goes over the wire per decision (the rest runs inside the script).
    inside_script = {"time", "zremrangebyscore", "zcard", "zadd", "pexpire", "zrange"}
    setup = {"hello", "client|setinfo", "select", "config|resetstat", "info"}
    assert set(calls) - inside_script - setup == {"evalsha", "script|load"}


async def test_keys_carry_a_hash_tag_and_expire_with_the_window() -> None:
    url = require_shared_redis()
    prefix = unique_prefix()
    store = RedisStore(url, prefix=prefix)
    client = redis.Redis.from_url(url)
    try:
        await hit(store, "api:1.2.3.4", RATE)
        key = f"{prefix}{{api:1.2.3.4}}"
        assert client.exists(key) == 1
        assert 0 < client.pttl(key) <= 60_000
        # Redis Cluster hashes only the tag, so the slot depends on rule and client alone.
        assert client.zcard(key) == 1
    finally:
        await store.aclose()
        client.close()
        delete_prefix(url, prefix)


async def test_server_clock_by_default() -> None:
    url = require_shared_redis()
    prefix = unique_prefix()
    store = RedisStore(url, prefix=prefix)
    try:
        decisions = [await hit(store, "api:k", RATE) for _ in range(4)]
        assert [d[:2] for d in decisions] == [(True, 1), (True, 2), (True, 3), (False, 3)]
        assert 59 < decisions[3].reset_after <= 60
    finally:
        await store.aclose()
        delete_prefix(url, prefix)


async def test_huge_rates_use_the_array_reply() -> None:
    """(window_ms + 1) × (limit + 1) beyond 2**53 cannot be packed in one Lua number."""
    url = require_shared_redis()
    prefix = unique_prefix()
    clock = FakeClock()
    store = RedisStore(url, prefix=prefix, clock=clock)
    huge = Rate(10**9, 365 * 86400)
    try:
        allowed, used, reset, token = await hit(store, "api:k", huge)
        assert (allowed, used, reset) == (True, 1, 365 * 86400.0)
        assert isinstance(token, bytes)
        assert store._specs[huge][2] is False  # the array reply was used
        assert store._prepare(RATE)[2] is True  # while ordinary rates get one integer
    finally:
        await store.aclose()
        delete_prefix(url, prefix)


async def test_script_flushed_by_a_restart_is_reloaded(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url)
    await hit(store, "api:k", RATE)
    redis_server.client().script_flush()
    decision = await hit(store, "api:k", RATE)
    assert (decision.allowed, decision.used) == (True, 2)
    await store.aclose()


async def test_unreachable_redis_raises_store_error_fast() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(StoreError):
        await hit(store, "api:k", RATE)
    with pytest.raises(StoreError):
        await store.refund("api:k", RATE, b"token")
    assert await store.ping() is False
    assert time.monotonic() - started < 2
    await store.aclose()


async def test_hung_redis_times_out_into_store_error() -> None:
    sock, port = silent_server()
    try:
        store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(StoreError):
            await hit(store, "api:k", RATE)
        assert time.monotonic() - started < 1.5
        await store.aclose()
    finally:
        sock.close()


async def test_recovers_by_itself_after_a_restart(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, max_connections=4)
    # Open several connections, so stale ones are waiting in the idle list after the restart.
    await asyncio.gather(*(store.hit(f"api:{i}", RATE) for i in range(8)))
    redis_server.stop()
    with pytest.raises(StoreError):
        await hit(store, "api:k", RATE)
    assert await store.ping() is False
    redis_server.start()
    # No error after the restart: stale connections are retried once on a fresh one, and the
    # flushed script cache is refilled.
    decision = await hit(store, "api:k", RATE)
    assert (decision.allowed, decision.used) == (True, 1)
    assert await store.ping() is True
    await store.aclose()


async def test_concurrency_is_bounded_by_max_connections(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, max_connections=3)
    rate = Rate(1000, 60)
    decisions = await asyncio.gather(*(hit(store, "api:k", rate) for _ in range(300)))
    assert sorted(d.used for d in decisions) == list(range(1, 301))
    assert redis_server.client().info("clients")["connected_clients"] <= 3 + 1  # + this client
    await store.aclose()


def test_bad_options_are_refused_at_construction() -> None:
    with pytest.raises(ConfigError, match="redis_url"):
        RedisStore("http://127.0.0.1:6379")
    with pytest.raises(ConfigError, match="prefix"):
        RedisStore("redis://127.0.0.1:6379/0", prefix="a{b}")
    with pytest.raises(ConfigError, match="timeout"):
        RedisStore("redis://127.0.0.1:6379/0", timeout=0)
    with pytest.raises(ConfigError, match="max_connections"):
        RedisStore("redis://127.0.0.1:6379/0", max_connections=0)


async def test_waiting_for_a_busy_pool_is_bounded_by_the_timeout() -> None:
    sock, port = silent_server()
    try:
        store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout=0.3, max_connections=1)
        started = time.monotonic()
        results = await asyncio.gather(
            *(store.hit("api:k", RATE) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, StoreError) for r in results), results
        assert time.monotonic() - started < 1.5  # each waits at most its own timeout
        await store.aclose()
    finally:
        sock.close()


@pytest.mark.parametrize("cancel_holder", [False, True])
async def test_cancelled_callers_leak_no_connection(
    redis_server: RedisServer, cancel_holder: bool
) -> None:
    """Requests cancelled (client gone) while holding or awaiting the only connection."""
    store = RedisStore(redis_server.url, max_connections=1, timeout=5)
    rate = Rate(1000, 60)
    await hit(store, "api:k", rate)
    redis_server.client().client_pause(400)  # the server holds every reply for 0.4 s
    tasks = [asyncio.create_task(store.hit("api:k", rate)) for _ in range(4)]
    await asyncio.sleep(0.1)  # task 0 holds the connection, the others wait for it
    for task in tasks[0 if cancel_holder else 1 :]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(r, asyncio.CancelledError) for r in results) == (
        4 if cancel_holder else 3
    )
    assert (await hit(store, "api:k", rate)).allowed  # the single connection is usable again
    assert store._opened == 1
    assert len(store._idle) == 1 and not store._waiters
    await store.aclose()
