"""Access-token revocations: the in-process map and its Redis-shared form.

The Redis tests run on a private ``redis-server`` (password and TLS when available): one
process revokes, another hears it within the contract's second; a process started later, or
one whose subscription was cut, reloads what it missed; entries past the token lifetime go.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from bastion.auth.revocation import LEEWAY, MemoryRevocations, RedisRevocations
from tests.support_redis import PrivateRedis, start_redis


async def test_memory_keeps_the_latest_second_and_forgets_after_the_lifetime() -> None:
    now = [1_000_000.0]
    revocations = MemoryRevocations(ttl=900, clock=lambda: now[0])
    user, other = uuid.uuid4(), uuid.uuid4()
    assert revocations.not_before(user) == -1
    await revocations.revoke(user, 1_000_000.7)
    await revocations.revoke(user, 999_990.0)  # an older revocation never moves it back
    assert revocations.not_before(user) == 1_000_000
    assert revocations.not_before(other) == -1
    now[0] += 900 + LEEWAY + 1  # every token it could refuse has expired
    await revocations.revoke(other, now[0])
    assert revocations.not_before(user) == -1 and revocations.not_before(other) == int(now[0])


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = start_redis(tmp_path_factory.mktemp("revocations-redis"))
    try:
        yield server
    finally:
        server.stop()


async def wait_for(condition: Callable[[], object], timeout: float = 1.0) -> float:
    """Seconds until ``condition()`` holds; fails past *timeout* (the contract's second)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


Pair = tuple[str, RedisRevocations, RedisRevocations]


@pytest.fixture
async def pair(redis_server: PrivateRedis) -> AsyncIterator[Pair]:
    """Two processes' worth of revocations sharing one fresh key: (key, here, there)."""
    key = f"test:revoked:{uuid.uuid4().hex}"
    here, there = (RedisRevocations(redis_server.url, ttl=900, key=key) for _ in range(2))
    await here.start()
    await there.start()
    try:
        yield key, here, there
    finally:
        await here.aclose()
        await there.aclose()


async def test_a_revocation_reaches_another_process_within_a_second(
    redis_server: PrivateRedis, pair: Pair
) -> None:
    key, here, there = pair
    user = uuid.uuid4()
    moment = time.time()
    await here.revoke(user, moment)
    assert here.not_before(user) == int(moment)  # at once in the revoking process
    await wait_for(lambda: there.not_before(user) == int(moment))
    late = RedisRevocations(redis_server.url, ttl=900, key=key)  # started afterwards
    await late.start()
    try:
        assert late.not_before(user) == int(moment)
    finally:
        await late.aclose()


async def test_a_cut_subscription_resubscribes_and_reloads_what_it_missed(
    redis_server: PrivateRedis, pair: Pair
) -> None:
    _key, here, there = pair
    admin = redis_server.client()
    assert admin.client_kill_filter(_type="pubsub") >= 1  # every subscriber's connection
    user = uuid.uuid4()
    await here.revoke(user, time.time())  # published while "there" is not listening
    await wait_for(lambda: there.not_before(user) != -1, timeout=5.0)


async def test_stale_entries_leave_the_shared_set(redis_server: PrivateRedis) -> None:
    key = f"test:revoked:{uuid.uuid4().hex}"
    now = [2_000_000.0]
    revocations = RedisRevocations(redis_server.url, ttl=900, key=key, clock=lambda: now[0])
    await revocations.start()
    try:
        old, new = uuid.uuid4(), uuid.uuid4()
        await revocations.revoke(old, now[0])
        now[0] += 900 + LEEWAY + 1
        await revocations.revoke(new, now[0])
        # redis-py types a reply for either decode_responses setting; this client's are bytes.
        members = {m.decode() for m in redis_server.client().zrange(key, 0, -1)}  # type: ignore[union-attr]
        assert members == {str(new)}
    finally:
        await revocations.aclose()


def test_a_malformed_message_is_ignored() -> None:
    shared = RedisRevocations.__new__(RedisRevocations)
    MemoryRevocations.__init__(shared, ttl=900)
    shared._on_message(b"not-a-uuid 12")
    shared._on_message(b"\xff")
    user = uuid.uuid4()
    shared._on_message(f"{user} 1234".encode())
    assert shared.not_before(user) == 1234
