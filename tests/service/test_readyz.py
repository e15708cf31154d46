"""/readyz (service/main.py): 503 in the contract's error shape, naming the failing
dependency, when requests would fail for it; /healthz stays 200 (liveness) meanwhile.
Real SQLite; the rate-limit store's reachability is what the test switches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bastion.config import Settings
from bastion.service.main import create_app
from bastion.service.routes.auth import prepare_keys


class Store:
    """The part of a rate-limit store /readyz reads: reachable or not."""

    def __init__(self) -> None:
        self.up = True

    async def ping(self) -> bool:
        return self.up

    async def aclose(self) -> None:
        return None


async def _get(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        return await client.get(path)


def _app(tmp_path: Path, store: Store, **settings: Any) -> FastAPI:
    config = Settings(data_dir=tmp_path, **settings)
    prepare_keys(config)
    # Store is the part of a rate-limit store /readyz reads, not a whole one.
    return create_app(config, ratelimit_store=store)  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", ["auto", "fail-closed"])
async def test_a_fail_closed_store_down_makes_the_host_unready(tmp_path: Path, policy: str) -> None:
    store = Store()
    app = _app(tmp_path, store, ratelimit_store_failure=policy)
    ready = await _get(app, "/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "ratelimit_store": "ok"}
    store.up = False
    app = _app(tmp_path, store, ratelimit_store_failure=policy)  # a fresh probe, no 1 s wait
    refused = await _get(app, "/readyz")
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"
    body = refused.json()
    assert body["error"] == "Service unavailable"
    assert body["details"] == {"ratelimit_store": ["down"]}
    assert "requestId" in body  # filled by the stack's request-id layer under bastion serve
    # Liveness is unaffected: the process is alive, restarting it would fix nothing.
    health = await _get(app, "/healthz")
    assert health.status_code == 200 and health.json()["ratelimit_store"] == "down"


async def test_a_fail_open_store_down_leaves_the_host_ready(tmp_path: Path) -> None:
    store = Store()
    store.up = False
    app = _app(tmp_path, store, ratelimit_store_failure="fail-open")
    ready = await _get(app, "/readyz")
    assert ready.status_code == 200 and ready.json()["ratelimit_store"] == "down"


async def test_an_unreachable_database_makes_the_host_unready(tmp_path: Path) -> None:
    from tests.support import free_port

    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    app = _app(tmp_path, Store(), database_url=url, key_store="data-dir")
    refused = await _get(app, "/readyz")
    assert refused.status_code == 503
    assert refused.json()["details"] == {"database": ["down"]}
