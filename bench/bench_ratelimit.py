"""Rate-limit decisions per second: bastion's stores next to ``limits`` and a bare Redis floor.

Run: ``.venv/bin/python bench/bench_ratelimit.py [--quick]`` (needs Redis on 127.0.0.1:6379
for the Redis rows; they are skipped otherwise).

Every row spreads its calls over 10,000 client keys with the contract's rate (100/15m), so
the state is realistic (most keys hold several charges). A "decision with header info" is
one call that says allowed/refused *and* how many remain and when the window frees a unit —
what a middleware needs for ``RateLimit``/``X-RateLimit-*``. ``limits`` needs two calls for
that (``hit`` then ``get_window_stats``), so it is measured both ways.

Rows:
* bastion MemoryStore.hit — the default store, awaited as the middleware awaits it.
* limits memory moving-window, sync API (what slowapi calls), hit and hit + stats; also the
  asyncio API (``limits.aio``) with stats, the like-for-like comparison.
* bare redis.asyncio PING on one connection: the round-trip floor the goal refers to; and
  PING on a raw redis-py Connection, the floor of the path RedisStore takes (it skips the
  client's per-command layers, which is why it can beat the first floor).
* bastion RedisStore.hit on one connection (sequential) and pooled (32 tasks, 32 connections),
  next to bare PING with the same 32 tasks.
* limits Redis moving window (``limits.aio``, redis-py), hit and hit + stats.

Each row is measured in several rounds interleaved with the others and the best round is
reported (the one least disturbed by other processes on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import redis
import redis.asyncio as aioredis
from limits import parse
from limits.aio.storage import MemoryStorage as AioMemoryStorage
from limits.aio.storage import RedisStorage as AioRedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as AioMovingWindow
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from bastion.ratelimit.memory import MemoryStore
from bastion.ratelimit.policy import Rate
from bastion.ratelimit.redis_store import RedisStore

REDIS_URL = "redis://127.0.0.1:6379/0"
KEYS = 10_000
RATE = Rate(100, 900)
LIMITS_ITEM = parse("100/15 minutes")

Loop = Callable[[int], Awaitable[None]]  # runs n operations


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def key_sequence(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    ips = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(KEYS)]
    return [ips[rng.randrange(KEYS)] for _ in range(n)]


async def concurrently(tasks: int, n: int, one: Callable[[int], Awaitable[object]]) -> None:
    """*n* operations split over *tasks* concurrent workers."""

    async def worker(start: int) -> None:
        for i in range(start, n, tasks):
            await one(i)

    await asyncio.gather(*(worker(t) for t in range(tasks)))


async def best_rate(rows: dict[str, tuple[Loop, int]], rounds: int) -> dict[str, float]:
    """Operations per second of each row: best of *rounds*, rows interleaved per round."""
    best = dict.fromkeys(rows, 0.0)
    for _ in range(rounds):
        for name, (loop, n) in rows.items():
            start = time.perf_counter()
            await loop(n)
            best[name] = max(best[name], n / (time.perf_counter() - start))
    return best


async def memory_rows(n: int) -> dict[str, tuple[Loop, int]]:
    keys = key_sequence(n)
    api_keys = [f"api:{k}" for k in keys]  # precomputed, as the middleware builds them once

    async def bastion_memory(count: int) -> None:
        store = MemoryStore()
        hit, rate = store.hit, RATE
        for key in api_keys[:count]:
            await hit(key, rate)

    def limits_sync(with_stats: bool) -> Loop:
        async def loop(count: int) -> None:
            limiter = MovingWindowRateLimiter(MemoryStorage())
            hit, stats, item = limiter.hit, limiter.get_window_stats, LIMITS_ITEM
            for key in keys[:count]:
                hit(item, key)
                if with_stats:
                    stats(item, key)

        return loop

    async def limits_aio_stats(count: int) -> None:
        limiter = AioMovingWindow(AioMemoryStorage())
        hit, stats, item = limiter.hit, limiter.get_window_stats, LIMITS_ITEM
        for key in keys[:count]:
            await hit(item, key)
            await stats(item, key)

    return {
        "bastion MemoryStore.hit (with header info)": (bastion_memory, n),
        "limits memory moving-window hit (sync)": (limits_sync(False), n // 2),
        "limits memory moving-window hit + stats (sync)": (limits_sync(True), n // 4),
        "limits memory moving-window hit + stats (asyncio)": (limits_aio_stats, n // 4),
    }


async def redis_rows(n: int, prefix: str) -> tuple[dict[str, tuple[Loop, int]], list[object]]:
    keys = key_sequence(n)
    api_keys = [f"api:{k}" for k in keys]
    single = aioredis.Redis.from_url(REDIS_URL, single_connection_client=True)
    pooled = aioredis.Redis.from_url(REDIS_URL, max_connections=32)
    one_conn = RedisStore(REDIS_URL, prefix=prefix, max_connections=1)
    pool32 = RedisStore(REDIS_URL, prefix=prefix, max_connections=32)
    limits_storage = AioRedisStorage(
        "async+" + REDIS_URL, implementation="redispy", key_prefix=prefix + "LIMITS"
    )
    limits_redis = AioMovingWindow(limits_storage)

    async def bare_ping(count: int) -> None:
        ping = single.ping
        for _ in range(count):
            await ping()

    raw_conn = single.connection_pool.make_connection()  # type: ignore[no-untyped-call]

    async def raw_ping(count: int) -> None:
        # The wire floor: PING on a redis-py Connection without the client's per-command
        # layers (the path RedisStore takes). Not the goal's reference, shown for honesty.
        send_packed, read = raw_conn.send_packed_command, raw_conn.read_response
        for _ in range(count):
            await send_packed(b"*1\r\n$4\r\nPING\r\n", check_health=False)
            await read()

    async def bare_ping_pooled(count: int) -> None:
        await concurrently(32, count, lambda i: pooled.ping())

    async def store_one(count: int) -> None:
        hit, rate = one_conn.hit, RATE
        for key in api_keys[:count]:
            await hit(key, rate)

    async def store_pooled(count: int) -> None:
        hit, rate = pool32.hit, RATE
        await concurrently(32, count, lambda i: hit(api_keys[i], rate))

    def limits_loop(with_stats: bool) -> Loop:
        async def loop(count: int) -> None:
            item = LIMITS_ITEM
            for key in keys[:count]:
                await limits_redis.hit(item, key)
                if with_stats:
                    await limits_redis.get_window_stats(item, key)

        return loop

    rows: dict[str, tuple[Loop, int]] = {
        "bare redis.asyncio PING, one connection": (bare_ping, n),
        "raw redis-py Connection PING (wire floor)": (raw_ping, n),
        "bastion RedisStore.hit, one connection": (store_one, n),
        "bare redis.asyncio PING, 32 tasks / 32 connections": (bare_ping_pooled, n),
        "bastion RedisStore.hit, pooled (32 tasks / 32 conns)": (store_pooled, n),
        "limits Redis moving-window hit": (limits_loop(False), n // 2),
        "limits Redis moving-window hit + stats": (limits_loop(True), n // 2),
    }
    return rows, [single, pooled, one_conn, pool32, raw_conn]


def delete_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        batch = list(client.scan_iter(match=f"{prefix}*", count=5000))
        for i in range(0, len(batch), 5000):
            client.delete(*batch[i : i + 5000])
    finally:
        client.close()


def table(title: str, results: dict[str, float]) -> None:
    print(f"\n{title}")
    width = max(map(len, results))
    for name, rate in results.items():
        print(f"  {name:<{width}}  {rate:>10,.0f} /s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer operations and rounds")
    args = parser.parse_args()
    rounds = 3 if args.quick else 5
    mem_n = 100_000 if args.quick else 300_000
    redis_n = 3_000 if args.quick else 10_000

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {KEYS:,} keys, rate {RATE}")
    memory = await best_rate(await memory_rows(mem_n), rounds)
    table(f"In-process (decisions/s, best of {rounds} rounds)", memory)
    ours = memory["bastion MemoryStore.hit (with header info)"]
    theirs = memory["limits memory moving-window hit + stats (sync)"]
    theirs_aio = memory["limits memory moving-window hit + stats (asyncio)"]
    met = ours >= 560_000 and ours >= 5 * theirs
    print(
        f"  → bastion memory = {ours / theirs:.1f}× limits sync with stats, "
        f"{ours / theirs_aio:.1f}× limits asyncio with stats "
        f"(goal ≥ 5× and ≥ 560,000/s: {'met' if met else 'NOT met'})"
    )

    if not redis_up():
        print("\nRedis rows skipped: nothing listens on 127.0.0.1:6379")
        return
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    rows, clients = await redis_rows(redis_n, prefix)
    try:
        results = await best_rate(rows, rounds)
    finally:
        for client in clients:
            close = getattr(client, "aclose", None) or client.disconnect  # type: ignore[attr-defined]
            await close()
        delete_prefix(prefix)
    table(f"Redis 127.0.0.1:6379 (decisions or round trips/s, best of {rounds} rounds)", results)
    floor = results["bare redis.asyncio PING, one connection"]
    wire = results["raw redis-py Connection PING (wire floor)"]
    one = results["bastion RedisStore.hit, one connection"]
    limits_stats = results["limits Redis moving-window hit + stats"]
    print(
        f"  → bastion Redis (one connection) = {one / floor:.0%} of the bare round trip "
        f"(goal ≥ 85%), {one / limits_stats:.1f}× limits with stats (goal ≥ 2×): "
        f"{'met' if one >= 0.85 * floor and one >= 2 * limits_stats else 'NOT met'}; "
        f"{one / wire:.0%} of the raw-connection PING"
    )


if __name__ == "__main__":
    asyncio.run(main())
