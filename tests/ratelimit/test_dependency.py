"""RateLimit per route: a FastAPI dependency (and plain Starlette code) on the stack's store,
with the middleware's algorithm and headers, keyed by client, principal or a function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion import ConfigError, MemoryStore, RateLimit, Rule, secure
from bastion.asgi import PRINCIPAL_KEY
from bastion.fastapi import install_error_handlers
from bastion.ratelimit.store import Store
from tests.ratelimit.decisions import hit
from tests.ratelimit.redis_server import FakeClock


@dataclass(frozen=True)
class FakePrincipal:
    """What bearer authentication stores at scope["bastion.principal"]: a subject string."""

    subject: str


def sign_in(request: Request) -> None:
    """Stands in for Depends(auth): the caller named by a header becomes the principal."""
    user = request.headers.get("x-test-user")
    if user:
        request.scope[PRINCIPAL_KEY] = FakePrincipal(user)


def client_for(asgi: Any, ip: str = "203.0.113.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=asgi, client=(ip, 5000))
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


def fastapi_app(store: Store, *, handlers: bool = True, **secure_options: Any) -> Any:
    app = FastAPI(docs_url=None, openapi_url=None, redirect_slashes=False)
    if handlers:
        install_error_handlers(app)

    @app.post("/export", dependencies=[Depends(RateLimit("2/1m"))])
    async def export() -> dict[str, str]:
        return {"status": "queued"}

    @app.get("/items/{item_id}", dependencies=[Depends(RateLimit("2/1m"))])
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    shared = RateLimit("3/1m", name="reports")

    @app.get("/reports/a", dependencies=[Depends(shared)])
    async def report_a() -> dict[str, str]:
        return {"report": "a"}

    @app.get("/reports/b", dependencies=[Depends(shared)])
    async def report_b() -> dict[str, str]:
        return {"report": "b"}

    per_user = RateLimit("2/1m", key="principal", name="per-user")

    @app.get("/me/report", dependencies=[Depends(sign_in), Depends(per_user)])
    async def me_report() -> dict[str, str]:
        return {"report": "mine"}

    def api_key(request: Request) -> str | None:
        return request.headers.get("x-api-key")

    @app.get("/keyed", dependencies=[Depends(RateLimit("1/1m", key=api_key, name="keyed"))])
    async def keyed() -> dict[str, str]:
        return {"ok": "yes"}

    @app.post("/api/orders", dependencies=[Depends(RateLimit("2/1m", name="orders"))])
    async def orders() -> dict[str, str]:
        return {"order": "new"}

    return secure(app, ratelimit_store=store, **secure_options)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_route_limit_headers_and_429(store: Store, clock: FakeClock) -> None:
    async with client_for(fastapi_app(store)) as client:
        first = await client.post("/export")
        clock.advance(10)
        second = await client.post("/export")
        refused = await client.post("/export")
    assert first.status_code == second.status_code == 200
    assert first.headers["ratelimit-policy"] == '"export";q=2;w=60'
    assert first.headers["ratelimit"] == '"export";r=1;t=60'
    assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"]) == (
        "2",
        "1",
    )
    assert second.headers["ratelimit"] == '"export";r=0;t=50'  # the oldest charge leaves first
    assert refused.status_code == 429
    assert refused.json() == {
        "error": "Too many requests",
        "requestId": refused.headers["x-request-id"],
    }
    assert refused.headers["retry-after"] == "50"
    assert refused.headers["ratelimit"] == '"export";r=0;t=50'
    assert refused.headers.get_list("ratelimit-policy") == ['"export";q=2;w=60']
    assert (
        refused.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    )
    clock.advance(50)
    async with client_for(fastapi_app(store)) as client:
        again = await client.post("/export")
    assert again.status_code == 200  # the window slid: the same store, a new app


async def test_without_error_handlers_the_stack_answers_the_429(store: Store) -> None:
    async with client_for(fastapi_app(store, handlers=False)) as client:
        answers = [await client.post("/export") for _ in range(3)]
    refused = answers[2]
    assert refused.status_code == 429
    assert refused.json() == {
        "error": "Too many requests",
        "requestId": refused.headers["x-request-id"],
    }
    assert refused.headers["retry-after"] == "60"
    assert refused.headers["ratelimit-policy"] == '"export";q=2;w=60'


async def test_one_budget_per_route_template_not_per_path(store: Store) -> None:
    async with client_for(fastapi_app(store)) as client:
        statuses = [(await client.get(f"/items/{n}")).status_code for n in range(3)]
        export = await client.post("/export")
    assert statuses == [200, 200, 429]  # /items/0, /items/1, /items/2 share "/items/{item_id}"
    assert export.status_code == 200  # another route, its own budget
    assert export.headers["ratelimit-policy"] == '"export";q=2;w=60'


async def test_a_named_limit_is_one_budget_wherever_used(store: Store) -> None:
    async with client_for(fastapi_app(store)) as client:
        answers = [await client.get(path) for path in ("/reports/a", "/reports/b", "/reports/a")]
        refused = await client.get("/reports/b")
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[2].headers["ratelimit"] == '"reports";r=0;t=60'
    assert refused.status_code == 429


async def test_principal_key_follows_the_user_not_the_address(store: Store) -> None:
    asgi = fastapi_app(store)
    async with client_for(asgi, "198.51.100.1") as home, client_for(asgi, "198.51.100.2") as work:
        ada = [
            await home.get("/me/report", headers={"x-test-user": "ada"}),
            await work.get("/me/report", headers={"x-test-user": "ada"}),
            await home.get("/me/report", headers={"x-test-user": "ada"}),
        ]
        bob = await home.get("/me/report", headers={"x-test-user": "bob"})
        # Anonymous: charged by address, in a key space of its own.
        anonymous = [await home.get("/me/report") for _ in range(3)]
        # A subject that looks like an address does not share that address's budget.
        lookalike = await work.get("/me/report", headers={"x-test-user": "198.51.100.1"})
    assert [r.status_code for r in ada] == [200, 200, 429]  # two addresses, one budget
    assert bob.status_code == 200 and bob.headers["ratelimit"] == '"per-user";r=1;t=60'
    assert [r.status_code for r in anonymous] == [200, 200, 429]
    assert lookalike.status_code == 200


async def test_callable_key_and_none_leaves_the_request_uncharged(store: Store) -> None:
    async with client_for(fastapi_app(store)) as client:
        one = await client.get("/keyed", headers={"x-api-key": "k1"})
        two = await client.get("/keyed", headers={"x-api-key": "k1"})
        other = await client.get("/keyed", headers={"x-api-key": "k2"})
        free = [await client.get("/keyed") for _ in range(3)]
    assert (one.status_code, two.status_code, other.status_code) == (200, 429, 200)
    assert [r.status_code for r in free] == [200, 200, 200]
    assert "ratelimit" not in free[0].headers  # not charged: no policy applied


async def test_shares_the_middlewares_store_and_headers(store: Store, clock: FakeClock) -> None:
    """Under /api/ the stack's rule and the route's limit are both charged, in one store;
    both policies are listed and X-RateLimit-* describe the most restrictive one."""
    async with client_for(fastapi_app(store)) as client:
        first = await client.post("/api/orders")
        clock.advance(5)
        second = await client.post("/api/orders")
        refused = await client.post("/api/orders")
    assert first.headers["ratelimit-policy"] == '"api";q=100;w=900, "orders";q=2;w=60'
    assert first.headers["ratelimit"] == '"api";r=99;t=900, "orders";r=1;t=60'
    assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"]) == (
        "2",
        "1",
    )
    assert second.headers["ratelimit"] == '"api";r=98;t=895, "orders";r=0;t=55'
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "55"
    # The refused request was charged to the api rule before the route refused it.
    assert refused.headers["ratelimit"] == '"api";r=97;t=895, "orders";r=0;t=55'
    for response in (first, second, refused):
        for name in ("ratelimit", "ratelimit-policy", "x-ratelimit-limit", "x-ratelimit-remaining"):
            assert len(response.headers.get_list(name)) == 1, name
    # Both counters live in the one store: the middleware's key and the route's.
    assert (await hit(store, "api:203.0.113.7", Rule("api", "100/15m").rate)).used == 4
    assert (await hit(store, "route.orders:203.0.113.7", Rule("x", "2/1m").rate)).allowed is False


async def test_plain_starlette_endpoint_awaits_the_limit() -> None:
    limit = RateLimit("1/1m")

    async def export(request: Any) -> Response:
        await limit(request)
        return JSONResponse({"status": "queued"})

    asgi = secure(Starlette(routes=[Route("/export", export, methods=["POST"])]))
    async with client_for(asgi) as client:
        first = await client.post("/export")
        refused = await client.post("/export")
    assert first.status_code == 200
    # A Starlette route: the policy is the endpoint's name, the budget its qualified name.
    assert first.headers["ratelimit-policy"] == '"export";q=1;w=60'
    assert refused.status_code == 429
    assert refused.json()["error"] == "Too many requests"
    assert refused.headers["retry-after"] == "60"


async def test_without_the_stack_a_store_must_be_given() -> None:
    app = FastAPI(docs_url=None, openapi_url=None)
    install_error_handlers(app)

    @app.get("/unbound", dependencies=[Depends(RateLimit("1/1m"))])
    async def unbound() -> dict[str, str]:
        return {"ok": "no"}

    @app.get("/bound", dependencies=[Depends(RateLimit("1/1m", store=MemoryStore()))])
    async def bound() -> dict[str, str]:
        return {"ok": "yes"}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
        unenforced = await client.get("/unbound")
        first = await client.get("/bound")
        refused = await client.get("/bound")
    assert unenforced.status_code == 500  # never an unenforced limit: a loud failure instead
    assert first.status_code == 200 and "ratelimit" not in first.headers  # no layer adds them
    assert refused.status_code == 429
    assert refused.headers["ratelimit-policy"] == '"bound";q=1;w=60'
    assert refused.headers["retry-after"] == "60"


async def test_store_outage_follows_the_failure_policy() -> None:
    from bastion.ratelimit.redis_store import RedisStore
    from tests.support import free_port

    down = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    app = FastAPI(docs_url=None, openapi_url=None)
    install_error_handlers(app)

    @app.get("/open", dependencies=[Depends(RateLimit("1/1m"))])
    async def open_() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/closed", dependencies=[Depends(RateLimit("1/1m", on_store_failure="fail-closed"))])
    async def closed() -> dict[str, str]:
        return {"ok": "no"}

    asgi = secure(app, ratelimit_store=down, rate_limits=[])
    async with client_for(asgi) as client:
        served = await client.get("/open")
        refused = await client.get("/closed")
    await down.aclose()
    assert served.status_code == 200 and "ratelimit" not in served.headers
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"


@pytest.mark.parametrize(
    ("kwargs", "name", "problem"),
    [
        ({"rate": "5 per minute"}, "RateLimit(rate=...)", "expected"),
        ({"rate": "5/15m", "name": "two words"}, "RateLimit(name=...)", "letters"),
        ({"rate": "5/15m", "key": "ip"}, "RateLimit(key=...)", "'client', 'principal'"),
        ({"rate": "5/15m", "store": object()}, "RateLimit(store=...)", "must implement"),
        ({"rate": "5/15m", "message": ""}, "RateLimit(message=...)", "non-empty"),
        ({"rate": "5/15m", "on_store_failure": "x"}, "RateLimit(on_store_failure=...)", "fail-"),
    ],
)
def test_bad_options_name_themselves(kwargs: dict[str, Any], name: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        RateLimit(**kwargs)
    assert info.value.name == name
    assert problem in info.value.problem
