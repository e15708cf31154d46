"""Fixtures for the rate-limit tests: stores over an injected clock, a private Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bastion.ratelimit.memory import MemoryStore
from bastion.ratelimit.redis_store import RedisStore
from bastion.ratelimit.store import Store
from tests.ratelimit.redis_server import (
    FakeClock,
    RedisServer,
    delete_prefix,
    require_shared_redis,
    unique_prefix,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Store]:
    """Each store the project ships, on the same fake clock: the shared contract runs on all."""
    if request.param == "memory":
        memory = MemoryStore(clock=clock)
        yield memory
        await memory.aclose()
        return
    url = require_shared_redis()
    prefix = unique_prefix()
    shared = RedisStore(url, prefix=prefix, clock=clock)
    try:
        yield shared
    finally:
        await shared.aclose()
        delete_prefix(url, prefix)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server (started) that the test may stop and restart."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
