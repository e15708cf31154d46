"""BodyRulesMiddleware: 415 / 413 (while streaming) / 400, and an unchanged replay."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion.errors import ConfigError
from bastion.middleware.body import BodyRulesMiddleware, json_depth_exceeds
from tests.middleware.rawasgi import Result, Scope, call, recorder

JSON = ("content-type", "application/json")
LIMIT = 65536


async def post(
    body: bytes | list[bytes],
    headers: list[tuple[str, str]] | None = None,
    *,
    method: str = "POST",
    path: str = "/api/v1/orders",
    content_length: bool = True,
    **options: Any,
) -> tuple[Result, list[Scope]]:
    inner, seen = recorder(status=201, body=b"created")
    hdrs = list(headers if headers is not None else [JSON])
    total = len(body) if isinstance(body, bytes) else sum(map(len, body))
    if content_length and isinstance(body, bytes) and total:
        hdrs.append(("content-length", str(total)))
    result = await call(
        BodyRulesMiddleware(inner, **options), method, path, body=body, headers=hdrs
    )
    return result, seen


def refused(result: Any, status: int, message: str) -> None:
    assert result.status == status
    assert result.json() == {"error": message, "requestId": ""}


# --- accepted bodies are replayed unchanged -------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        'Application/JSON ; Charset="UTF-8"',
        "application/json;charset=utf8",
    ],
)
async def test_json_body_replayed_unchanged(content_type: str) -> None:
    body = b'{"productId": "x", "quantity": 2,  "address": {"city": "\\u00e9"}}'
    result, seen = await post(body, [("content-type", content_type)])
    assert result.status == 201
    assert seen[0]["_body"] == body


async def test_chunks_are_joined_and_replayed() -> None:
    result, seen = await post(
        [b'{"a":', b" [1, 2", b"]}"], [JSON, ("transfer-encoding", "chunked")]
    )
    assert result.status == 201
    assert seen[0]["_body"] == b'{"a": [1, 2]}'


async def test_exactly_the_limit_is_accepted() -> None:
    body = b'"' + b"a" * (LIMIT - 2) + b'"'
    result, seen = await post(body)
    assert result.status == 201 and len(seen[0]["_body"]) == LIMIT


async def test_starlette_handler_reads_the_replayed_body() -> None:
    async def create(request: Request) -> JSONResponse:
        return JSONResponse({"got": await request.json()}, status_code=201)

    app = BodyRulesMiddleware(Starlette(routes=[Route("/api/x", create, methods=["POST"])]))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://testserver"
    ) as client:
        response = await client.post("/api/x", json={"a": [1, {"b": None}]})
        assert response.status_code == 201
        assert response.json() == {"got": {"a": [1, {"b": None}]}}
        response = await client.post(
            "/api/x", content=b"a=1", headers={"content-type": "text/plain"}
        )
        assert response.status_code == 415


# --- 415 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [],  # no Content-Type at all
        [("content-type", "text/json")],
        [("content-type", "application/jsonx")],
        [("content-type", "application/json-patch+json")],
        [("content-type", "text/plain")],  # the CORS "simple request" CSRF vector
        [("content-type", "application/x-www-form-urlencoded")],
        [("content-type", "multipart/form-data; boundary=x")],
        [("content-type", "application/json; charset=utf-16")],
        [JSON, ("content-type", "text/plain")],  # two headers
        [JSON, ("content-encoding", "gzip")],  # no decompression bombs
    ],
)
async def test_not_json_refused_with_415(headers: list[tuple[str, str]]) -> None:
    result, seen = await post(b'{"a": 1}', headers)
    refused(result, 415, "Unsupported media type")
    assert seen == []
    assert result.received == []  # decided from the headers alone


async def test_chunked_without_content_type_refused() -> None:
    result, _ = await post([b"{}"], [("transfer-encoding", "chunked")])
    refused(result, 415, "Unsupported media type")


async def test_unannounced_body_still_needs_json() -> None:
    """HTTP/2 needs no Content-Length: the bytes that arrive decide."""
    result, seen = await post(b"a=1", [("content-type", "text/plain")], content_length=False)
    refused(result, 415, "Unsupported media type")
    assert seen == []


# --- bodyless requests (documented choice) ----------------------------------------------------


@pytest.mark.parametrize(
    "headers", [[], [("content-length", "0")], [("content-type", "text/plain")]]
)
async def test_bodyless_post_passes_without_content_type(headers: list[tuple[str, str]]) -> None:
    """/auth/logout and /auth/refresh are sent with only a cookie."""
    result, seen = await post(b"", headers, path="/api/v1/auth/logout")
    assert result.status == 201
    assert seen[0]["_body"] == b""


# --- 413 ------------------------------------------------------------------------------------


async def test_declared_length_over_limit_refused_without_reading() -> None:
    result, seen = await post(
        b"x", [JSON, ("content-length", str(LIMIT + 1))], content_length=False
    )
    refused(result, 413, "Request body too large")
    assert result.received == [] and seen == []


async def test_chunked_flood_stops_as_soon_as_limit_passed() -> None:
    chunk = b" " * 16384
    chunks = [b"[", *([chunk] * 100), b"]"]  # 1.6 MB announced by nobody
    result, seen = await post(chunks, [JSON, ("transfer-encoding", "chunked")])
    refused(result, 413, "Request body too large")
    assert seen == []
    assert len(result.received) == 5  # 1 + 4 * 16384 > 65536: the fifth message trips it


async def test_body_lying_about_its_length_is_counted() -> None:
    body = [b"[" + b"1," * 20000, b"1," * 20000 + b"1]"]
    result, _ = await post(body, [JSON, ("content-length", "10")])
    refused(result, 413, "Request body too large")


async def test_custom_limit() -> None:
    result, _ = await post(b"[1,2,3]", max_bytes=4)
    refused(result, 413, "Request body too large")


# --- 400 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"{'a': 1}",
        b'{"a": 1,}',
        b"NaN",
        b'{"a": Infinity}',
        b"[-Infinity]",
        b'"\xff\xfe"',  # not UTF-8
        b"\xef\xbb\xbf{}",  # a BOM (RFC 8259 §8.1: must not be added)
        b'{"a": 1} {"b": 2}',
        b"[" + b"1" * 5000 + b"]",  # past Python's int digit limit
    ],
)
async def test_malformed_json_refused(body: bytes) -> None:
    result, seen = await post(body)
    refused(result, 400, "Malformed JSON")
    assert seen == []


async def test_depth_32_accepted_33_refused() -> None:
    result, _ = await post(b"[" * 32 + b"]" * 32)
    assert result.status == 201
    result, _ = await post(b'{"a":' * 16 + b"[" * 17 + b"]" * 17 + b"}" * 16)
    refused(result, 400, "JSON nested too deeply")


async def test_deep_nesting_attack_refused_without_recursion_error() -> None:
    """CWE-674: 60 000 levels would blow a recursive parser's stack."""
    result, _ = await post(b"[" * 60000)
    refused(result, 400, "JSON nested too deeply")
    result, _ = await post(b'{"a":' * 12000)
    refused(result, 400, "JSON nested too deeply")


async def test_brackets_inside_strings_do_not_count() -> None:
    body = json.dumps({"note": "[[[[{{{{" * 1000, "q": '\\"[[['}).encode()
    result, seen = await post(body)
    assert result.status == 201 and seen[0]["_body"] == body


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "body", [b'["' + b'\\"' * 30000, b'"' * 60000, b"[" + b'"\\' * 30000, b'["a\\' + b"[" * 60000]
)
async def test_hostile_strings_are_linear(body: bytes) -> None:
    """ReDoS guard: quadratic string scanning would not finish before the timeout."""
    result, _ = await post(body)
    assert result.status == 400


@pytest.mark.parametrize("value", ["abc", "-1", "1, 2", "0x10", ""])
async def test_invalid_content_length_refused(value: str) -> None:
    result, _ = await post(b"{}", [JSON, ("content-length", value)], content_length=False)
    refused(result, 400, "Invalid Content-Length")


async def test_conflicting_content_lengths_refused() -> None:
    headers = [JSON, ("content-length", "2"), ("content-length", "3")]
    result, _ = await post(b"{}", headers, content_length=False)
    refused(result, 400, "Invalid Content-Length")


# --- scope of the rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/orders"),
        ("DELETE", "/api/v1/orders/1"),
        ("POST", "/oauth/token"),  # form-encoded by RFC 6749
        ("POST", "/api"),
    ],
)
async def test_other_methods_and_paths_untouched(method: str, path: str) -> None:
    form = [("content-type", "application/x-www-form-urlencoded")]
    result, seen = await post(b"grant_type=x", form, method=method, path=path)
    assert result.status == 201
    assert seen[0]["_body"] == b"grant_type=x"


async def test_put_and_patch_are_checked() -> None:
    for method in ("PUT", "PATCH"):
        result, _ = await post(b"x", [("content-type", "text/plain")], method=method)
        assert result.status == 415


async def test_client_disconnect_mid_body_is_not_answered() -> None:
    inner, seen = recorder()
    app = BodyRulesMiddleware(inner)
    messages = iter(
        [{"type": "http.request", "body": b"[1,", "more_body": True}, {"type": "http.disconnect"}]
    )
    sent: list[Any] = []

    async def receive() -> Any:
        return next(messages)

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/x",
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
    }
    await app(scope, receive, send)
    assert sent == [] and seen == []


def test_json_depth_exceeds() -> None:
    assert not json_depth_exceeds("[[1]]", 2)
    assert json_depth_exceeds("[[[1]]]", 2)
    assert not json_depth_exceeds('["[[[[[["]', 2)
    assert not json_depth_exceeds("]]]]]]", 2)


@pytest.mark.parametrize(
    "options",
    [
        {"max_bytes": 0},
        {"max_bytes": "64k"},
        {"max_bytes": True},
        {"max_depth": -1},
        {"path_prefixes": "/api/"},
        {"path_prefixes": ["api/"]},
    ],
)
def test_bad_options(options: dict[str, Any]) -> None:
    inner, _ = recorder()
    with pytest.raises(ConfigError):
        BodyRulesMiddleware(inner, **options)
