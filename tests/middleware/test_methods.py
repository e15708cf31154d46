"""MethodPolicyMiddleware: the complete Allow list (pitfall #23), TRACE/TRACK/OPTIONS refused."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute

from bastion.errors import ConfigError
from bastion.middleware.methods import MethodPolicyMiddleware, methods_for_path
from tests.middleware.rawasgi import call, recorder

ORDER = "/api/v1/orders/550e8400-e29b-41d4-a716-446655440000"


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"method": request.method, "path": request.url.path})


def orders_app() -> Starlette:
    """GET and DELETE of one order declared as two routes: Starlette's Allow misses DELETE."""
    return Starlette(
        routes=[
            Route("/api/v1/orders", echo, methods=["GET"]),
            Route("/api/v1/orders", echo, methods=["POST"]),
            Route("/api/v1/orders/{id:uuid}", echo, methods=["GET"]),
            Route("/api/v1/orders/{id:uuid}", echo, methods=["DELETE"]),
        ]
    )


def guarded(app: Starlette) -> MethodPolicyMiddleware:
    return MethodPolicyMiddleware(app, routes=app.routes)


async def test_starlette_alone_lists_only_the_first_route() -> None:
    """The bug this layer exists for (RFC 9110 §10.2.1 wants every method)."""
    result = await call(orders_app(), "PUT", ORDER)
    assert result.status == 405
    allow = result.header("allow")
    assert allow is not None and set(allow.split(", ")) == {"GET", "HEAD"}  # DELETE missing


async def test_405_lists_every_method_of_every_matching_route() -> None:
    result = await call(guarded(orders_app()), "PUT", ORDER)
    assert result.status == 405
    assert result.header("allow") == "DELETE, GET, HEAD"
    assert result.json() == {"error": "Method not allowed", "requestId": ""}
    result = await call(guarded(orders_app()), "PATCH", "/api/v1/orders")
    assert result.header("allow") == "GET, HEAD, POST"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", ORDER), ("HEAD", ORDER), ("DELETE", ORDER), ("GET", "/api/v1/orders")],
)
async def test_served_methods_reach_the_route(method: str, path: str) -> None:
    result = await call(guarded(orders_app()), method, path)
    assert result.status == 200
    assert result.json() == {"method": method, "path": path}


@pytest.mark.parametrize("method", ["TRACE", "TRACK", "trace", "Track"])
@pytest.mark.parametrize("path", [ORDER, "/", "/no/such/path"])
async def test_trace_and_track_refused_everywhere(method: str, path: str) -> None:
    result = await call(guarded(orders_app()), method, path)
    assert result.status == 405
    assert result.json() == {"error": "Method not allowed", "requestId": ""}
    assert result.header("allow") == ("DELETE, GET, HEAD" if path == ORDER else "")


async def test_options_refused_and_never_listed() -> None:
    async def anything(request: Request) -> Response:
        return Response("served")

    app = Starlette(routes=[Route("/x", anything, methods=["GET", "OPTIONS", "TRACE"])])
    result = await call(guarded(app), "OPTIONS", "/x")
    assert result.status == 405
    assert result.header("allow") == "GET, HEAD"
    assert (await call(guarded(app), "TRACE", "/x")).status == 405


async def test_unknown_path_passes_through_to_404() -> None:
    result = await call(guarded(orders_app()), "POST", "/api/v1/nothing")
    assert result.status == 404
    # a malformed id matches no route (uuid convertor): 404, as the contract wants
    result = await call(guarded(orders_app()), "PUT", "/api/v1/orders/not-a-uuid")
    assert result.status == 404


async def test_mount_recursion_and_nesting() -> None:
    inner = [
        Route("/items", echo, methods=["GET"]),
        Route("/items", echo, methods=["POST"]),
        Mount("/deep", routes=[Route("/x/{n:int}", echo, methods=["PUT"])]),
    ]
    app = Starlette(routes=[Mount("/api", routes=inner), Route("/api/shadowed", echo)])
    guard = guarded(app)
    result = await call(guard, "DELETE", "/api/items")
    assert result.status == 405 and result.header("allow") == "GET, HEAD, POST"
    result = await call(guard, "GET", "/api/deep/x/7")
    assert result.status == 405 and result.header("allow") == "PUT"
    assert (await call(guard, "PUT", "/api/deep/x/7")).status == 200
    # the mount matches /api/* fully: Starlette never reaches the later route
    assert (await call(guard, "GET", "/api/shadowed")).status == 404


async def test_opaque_mount_passes_through_but_trace_is_refused() -> None:
    raw_app, seen = recorder()
    app = Starlette(routes=[Mount("/static", app=raw_app)])
    guard = guarded(app)
    assert (await call(guard, "PUT", "/static/a.css")).status == 200
    assert (await call(guard, "TRACE", "/static/a.css")).status == 405
    assert len(seen) == 1


async def test_http_endpoint_methods_are_introspected() -> None:
    class Thing(HTTPEndpoint):
        async def get(self, request: Request) -> Response:
            return PlainTextResponse("get")

        async def patch(self, request: Request) -> Response:
            return PlainTextResponse("patch")

    app = Starlette(routes=[Route("/thing", Thing), WebSocketRoute("/thing", Thing)])
    result = await call(guarded(app), "POST", "/thing")
    assert result.status == 405 and result.header("allow") == "GET, HEAD, PATCH"
    assert (await call(guarded(app), "PATCH", "/thing")).body == b"patch"


async def test_plain_asgi_endpoint_is_opaque() -> None:
    raw_app, _ = recorder()

    class ASGIEndpoint:  # an instance, not a function: Starlette passes every method to it
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await raw_app(scope, receive, send)

    app = Starlette(routes=[Route("/raw", ASGIEndpoint())])
    assert (await call(guarded(app), "PURGE", "/raw")).status == 200


async def test_fastapi_head_served_wherever_get_is() -> None:
    api = FastAPI()

    @api.get("/items")
    async def items() -> dict[str, str]:
        return {"ok": "yes"}

    app = MethodPolicyMiddleware(api, routes=api.routes)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://testserver"
    ) as client:
        response = await client.head("/items")
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(b'{"ok":"yes"}'))
        response = await client.put("/items")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"
    # the outer scope (what the server sees) still says HEAD: the server drops the body
    result = await call(app, "HEAD", "/items")
    assert result.scope["method"] == "HEAD"


async def test_callable_lookup() -> None:
    inner, _ = recorder()

    def lookup(path: str) -> set[str] | None:
        return {"get", "POST"} if path == "/known" else None

    app = MethodPolicyMiddleware(inner, routes=lookup)
    result = await call(app, "DELETE", "/known")
    assert result.status == 405 and result.header("allow") == "GET, HEAD, POST"
    assert (await call(app, "DELETE", "/other")).status == 200
    assert (await call(app, "TRACK", "/other")).status == 405


async def test_routes_added_after_construction_are_seen() -> None:
    app = orders_app()
    guard = guarded(app)
    assert (await call(guard, "PUT", "/late")).status == 404
    app.router.routes.append(Route("/late", echo, methods=["GET"]))
    result = await call(guard, "PUT", "/late")
    assert result.status == 405 and result.header("allow") == "GET, HEAD"


async def test_root_path_is_removed_before_matching() -> None:
    result = await call(guarded(orders_app()), "PUT", "/prefix" + ORDER, root_path="/prefix")
    assert result.status == 405 and result.header("allow") == "DELETE, GET, HEAD"


async def test_cache_is_bounded() -> None:
    guard = guarded(orders_app())
    for n in range(5000):
        await call(guard, "GET", f"/random/{n}")
    assert len(guard._cache) <= 4096


def test_methods_for_path() -> None:
    routes = orders_app().routes
    assert methods_for_path(routes, ORDER) == {"GET", "HEAD", "DELETE"}
    assert methods_for_path(routes, "/nope") is None


@pytest.mark.parametrize("bad", ["GET", 42, [object()]])
def test_bad_routes_option(bad: Any) -> None:
    inner, _ = recorder()
    with pytest.raises(ConfigError):
        MethodPolicyMiddleware(inner, routes=bad)


async def test_fastapi_included_routers_are_probed_route_by_route() -> None:
    # FastAPI 0.16x wraps include_router() in lazy route objects of its own: the layer must
    # still list both methods of /items/{id}, declared as two routes in an included router.
    from fastapi import APIRouter

    router = APIRouter(prefix="/api")

    @router.get("/items/{item_id}")
    async def read(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @router.delete("/items/{item_id}", status_code=204)
    async def delete(item_id: str) -> None:
        return None

    app = FastAPI()
    app.include_router(router)
    guarded_app = MethodPolicyMiddleware(app, routes=app.router.routes)
    transport = httpx.ASGITransport(app=guarded_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        refused = await client.put("/api/items/1")
        served = await client.delete("/api/items/1")
        missing = await client.put("/api/nothing")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "DELETE, GET, HEAD"
    assert served.status_code == 204
    assert missing.status_code == 404
