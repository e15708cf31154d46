"""RequestIDMiddleware: the contract's echo rule, one id per response, injection refused."""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion.asgi import REQUEST_ID_KEY, request_id
from bastion.middleware.request_id import RequestIDMiddleware, new_request_id, valid_request_id
from tests.middleware.rawasgi import (
    Receive,
    Scope,
    Send,
    call,
    never_receive,
    never_send,
    recorder,
)

FRESH = re.compile(r"^[0-9a-f]{32}$")


async def test_fresh_id_generated_stored_in_scope_and_sent() -> None:
    inner, seen = recorder()
    result = await call(RequestIDMiddleware(inner))
    rid = result.header("x-request-id")
    assert rid is not None and FRESH.fullmatch(rid)
    assert seen[0][REQUEST_ID_KEY] == rid
    # The scope is mutated in place so an outer layer (the access log) can read it afterwards.
    assert result.scope[REQUEST_ID_KEY] == rid


async def test_ids_differ_between_requests() -> None:
    inner, _ = recorder()
    app = RequestIDMiddleware(inner)
    ids = {(await call(app)).header("x-request-id") for _ in range(20)}
    assert len(ids) == 20


@pytest.mark.parametrize(
    "value", ["abc", "A.b_c-9", "x" * 64, "0", "550e8400-e29b-41d4-a716-446655440000"]
)
async def test_valid_client_id_is_echoed(value: str) -> None:
    inner, seen = recorder()
    result = await call(RequestIDMiddleware(inner), headers=[("X-Request-ID", value)])
    assert result.header("x-request-id") == value
    assert seen[0][REQUEST_ID_KEY] == value


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"x" * 65,  # too long: log flooding
        b"abc\n",  # `$` would accept a trailing newline; fullmatch does not
        b"abc\r\nSet-Cookie: a=b",  # response splitting
        b'a"b',  # breaks out of a quoted log field
        b"a b",
        b"<script>",
        b"a/b",
        b"a:b",
        "caf\u00e9".encode(),  # non-ASCII
        b"a\x00b",
    ],
)
async def test_invalid_client_id_is_replaced(value: bytes) -> None:
    inner, seen = recorder()
    result = await call(RequestIDMiddleware(inner), headers=[(b"x-request-id", value)])
    rid = result.header("x-request-id")
    assert rid is not None and FRESH.fullmatch(rid)
    assert seen[0][REQUEST_ID_KEY] == rid


async def test_only_first_header_is_considered() -> None:
    inner, _ = recorder()
    result = await call(
        RequestIDMiddleware(inner), headers=[("x-request-id", "bad id"), ("x-request-id", "good")]
    )
    rid = result.header("x-request-id")
    assert rid is not None and FRESH.fullmatch(rid)


async def test_app_set_request_id_is_replaced_not_duplicated() -> None:
    inner, _ = recorder(headers=[(b"X-Request-ID", b"from-app"), (b"x-request-id", b"again")])
    result = await call(RequestIDMiddleware(inner), headers=[("x-request-id", "client-1")])
    assert result.header_list("x-request-id") == ["client-1"]


async def test_starlette_app_through_httpx_sees_same_id_as_response() -> None:
    async def show(request: Request) -> JSONResponse:
        return JSONResponse({"id": request_id(request.scope)})

    app = RequestIDMiddleware(Starlette(routes=[Route("/", show)]))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://testserver"
    ) as client:
        response = await client.get("/", headers={"X-Request-ID": "trace.42"})
        assert response.headers["x-request-id"] == "trace.42"
        assert response.json() == {"id": "trace.42"}
        response = await client.get("/")
        assert response.json() == {"id": response.headers["x-request-id"]}


async def test_non_http_scope_passes_untouched() -> None:
    seen: list[dict[str, object]] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(dict(scope))

    await RequestIDMiddleware(inner)({"type": "lifespan"}, never_receive, never_send)
    assert seen == [{"type": "lifespan"}]


def test_helpers() -> None:
    assert FRESH.fullmatch(new_request_id())
    assert valid_request_id(b"a" * 64)
    assert not valid_request_id(b"a" * 65)
    assert not valid_request_id(b"a\n")


def test_fresh_ids_stay_unique_across_pool_refills() -> None:
    ids = [new_request_id() for _ in range(1000)]  # 256 ids per 4 KiB read of os.urandom
    assert len(set(ids)) == 1000
    assert all(FRESH.fullmatch(i) for i in ids)
