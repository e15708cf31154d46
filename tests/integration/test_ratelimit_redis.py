"""Rate limits shared through Redis by real ``bastion serve`` processes, and Redis outages.

Each test runs its own ``redis-server`` on a free port (no state shared with parallel tests,
and it can be stopped and restarted under the running servers).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server
from tests.ratelimit.redis_server import RedisServer
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.redis]

AUTH_MESSAGE = "Too many authentication attempts"
LOGIN_BODY = {"email": "nobody@example.com", "password": "not-the-password-42"}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def env_for(redis_server: RedisServer, **extra: str) -> dict[str, str]:
    return {
        "BASTION_REDIS_URL": redis_server.url,
        "BASTION_API_SLOWDOWN_DELAY_MS": "0",
        **{f"BASTION_{k.upper()}": v for k, v in extra.items()},
    }


async def test_four_processes_sharing_redis_admit_exactly_the_limit(
    serve: Callable[..., Server], redis_server: RedisServer
) -> None:
    servers: list[Server] = [
        serve(env=env_for(redis_server, api_limit="100/15m"), wait=False) for _ in range(4)
    ]
    for server in servers:  # started together, then each awaited: faster than one by one
        wait_until(partial(healthy, server), timeout=60, what=f"bastion serve :{server.port}")
    clients = [s.async_client(limits=httpx.Limits(max_connections=25)) for s in servers]
    try:

        async def one(i: int) -> int:
            response = await clients[i % 4].get(f"/api/v1/shared-budget/{i}")
            return response.status_code

        statuses = collections.Counter(await asyncio.gather(*(one(i) for i in range(1000))))
    finally:
        for client in clients:
            await client.aclose()
    assert statuses[429] == 900, statuses
    assert statuses[404] == 100, statuses  # admitted (the path does not exist)
    assert sum(statuses.values()) == 1000


def healthy(server: Server) -> bool:
    if server.process.poll() is not None:
        pytest.fail(f"bastion serve exited with {server.process.returncode}:\n{server.log()}")
    with server.client() as client:
        return client.get("/healthz").status_code == 200


def login(server: Server) -> httpx.Response:
    with server.client() as client:
        return client.post("/api/v1/auth/login", json=LOGIN_BODY)


def get_api(server: Server) -> httpx.Response:
    with server.client() as client:
        return client.get("/api/v1/no-such-thing")


def store_state(server: Server) -> str:
    with server.client() as client:
        return str(client.get("/healthz").json().get("ratelimit_store"))


def assert_limits_enforced(server: Server) -> None:
    api = get_api(server)
    assert api.status_code == 404
    assert api.headers["RateLimit-Policy"] == '"api";q=100;w=900'
    for _ in range(5):
        assert login(server).status_code in (401, 404)
    locked = login(server)
    assert locked.status_code == 429
    assert locked.json()["error"] == AUTH_MESSAGE


@pytest.mark.parametrize(
    ("mode", "api_status", "auth_status"),
    [("auto", 404, 503), ("fail-open", 404, None), ("fail-closed", 503, 503)],
)
def test_redis_outage_follows_the_policy_and_recovers(
    serve: Callable[..., Server],
    redis_server: RedisServer,
    mode: str,
    api_status: int,
    auth_status: int | None,
) -> None:
    server: Server = serve(env=env_for(redis_server, ratelimit_store_failure=mode))
    assert store_state(server) == "ok"
    assert_limits_enforced(server)

    redis_server.stop()
    # /healthz probes at most once a second (bastion.service.health)
    wait_until(lambda: store_state(server) == "down", timeout=5, what="store reported down")
    for _ in range(3):
        api = get_api(server)
        assert api.status_code == api_status
        if api_status == 404:  # failed open: served, without pretending to be limited
            assert "RateLimit" not in api.headers and "X-RateLimit-Remaining" not in api.headers
        else:
            assert api.json()["error"] == "Service temporarily unavailable"
            assert api.headers["Retry-After"] == "5"
        auth = login(server)
        if auth_status is None:  # fail-open: the login handler answers (a failure here)
            assert auth.status_code in (401, 404)
        else:
            assert auth.status_code == 503
            assert auth.json()["error"] == "Service temporarily unavailable"
            assert auth.headers["Retry-After"] == "5"
    assert "rate-limit store unavailable" in server.log()

    redis_server.start()  # same port, empty (no persistence): counters start afresh
    wait_until(lambda: store_state(server) == "ok", timeout=10, what="store back")
    assert_limits_enforced(server)
    assert '"status":500' not in server.log()
