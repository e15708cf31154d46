"""All of H1's layers around one Starlette app: every refusal carries the id and the headers.

Order, outermost first (as the brief composes them): request id → access log → security
headers → safe errors → proxy → https → paths → methods → body → app.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.middleware.access_log import ACCESS_LOGGER, AccessLogMiddleware
from bastion.middleware.body import BodyRulesMiddleware
from bastion.middleware.errors import ERROR_LOGGER, SafeErrorsMiddleware
from bastion.middleware.headers import SecurityHeadersMiddleware
from bastion.middleware.https import HTTPSOnlyMiddleware
from bastion.middleware.methods import MethodPolicyMiddleware
from bastion.middleware.paths import PathCanonicalMiddleware
from bastion.middleware.proxy import TrustedProxyMiddleware
from bastion.middleware.request_id import RequestIDMiddleware
from tests.middleware.rawasgi import Result, call

ORDER = "/api/v1/orders/550e8400-e29b-41d4-a716-446655440000"
SECURITY = {
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"


async def list_orders(request: Request) -> JSONResponse:
    return JSONResponse({"items": [], "client": request.client.host if request.client else None})


async def create_order(request: Request) -> JSONResponse:
    return JSONResponse(await request.json(), status_code=201)


async def get_order(request: Request) -> JSONResponse:
    return JSONResponse({"id": str(request.path_params["id"])})


async def delete_order(request: Request) -> Response:
    return Response(status_code=204)


async def boom(request: Request) -> Response:
    raise RuntimeError("connection to postgresql://admin:hunter2@db/prod failed")


def build() -> Any:
    app = Starlette(
        routes=[
            Route("/api/v1/orders", list_orders, methods=["GET"]),
            Route("/api/v1/orders", create_order, methods=["POST"]),
            Route("/api/v1/orders/{id:uuid}", get_order, methods=["GET"]),
            Route("/api/v1/orders/{id:uuid}", delete_order, methods=["DELETE"]),
            Route("/api/v1/boom", boom, methods=["GET"]),
        ]
    )
    stack: Any = BodyRulesMiddleware(app)
    stack = MethodPolicyMiddleware(stack, routes=app.routes)
    stack = PathCanonicalMiddleware(stack)
    stack = HTTPSOnlyMiddleware(stack, https_port=8443)
    stack = TrustedProxyMiddleware(stack, trusted=["10.0.0.0/8"])
    stack = SafeErrorsMiddleware(stack)
    stack = SecurityHeadersMiddleware(stack)
    stack = AccessLogMiddleware(stack)
    return RequestIDMiddleware(stack)


def assert_protected(result: Result, *, https: bool = True) -> str:
    rid = result.header("x-request-id")
    assert rid
    for name, value in SECURITY.items():
        assert result.header(name) == value, name
    assert result.header("strict-transport-security") == (HSTS if https else None)
    assert result.header("server") is None and result.header("x-powered-by") is None
    return rid


def assert_error(result: Result, status: int, message: str) -> None:
    assert result.status == status
    rid = assert_protected(result)
    assert result.header("content-type") == "application/json"
    assert result.json() == {"error": message, "requestId": rid}


async def test_success_is_protected_too() -> None:
    result = await call(build(), "GET", "/api/v1/orders")
    assert result.status == 200
    assert_protected(result)


async def test_500_from_a_route(caplog: pytest.LogCaptureFixture) -> None:
    result = await call(build(), "GET", "/api/v1/boom")
    assert_error(result, 500, "An internal error occurred")
    assert b"hunter2" not in result.body and b"postgresql" not in result.body
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == ERROR_LOGGER]
    assert line["request_id"] == result.header("x-request-id")
    assert "RuntimeError" in line["traceback"] and "hunter2" not in caplog.text


async def test_405_lists_every_method() -> None:
    result = await call(build(), "PUT", ORDER)
    assert_error(result, 405, "Method not allowed")
    assert result.header("allow") == "DELETE, GET, HEAD"


async def test_trace_405() -> None:
    assert_error(await call(build(), "TRACE", "/anything"), 405, "Method not allowed")


async def test_413() -> None:
    body = b"[" + b"1," * 40000 + b"1]"
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    result = await call(build(), "POST", "/api/v1/orders", body=body, headers=headers)
    assert_error(result, 413, "Request body too large")


async def test_415() -> None:
    headers = [("content-type", "text/plain"), ("content-length", "7")]
    result = await call(build(), "POST", "/api/v1/orders", body=b'{"a":1}', headers=headers)
    assert_error(result, 415, "Unsupported media type")


async def test_400_malformed_json_and_invalid_path() -> None:
    headers = [("content-type", "application/json"), ("content-length", "2")]
    result = await call(build(), "POST", "/api/v1/orders", body=b"{,", headers=headers)
    assert_error(result, 400, "Malformed JSON")
    result = await call(build(), "GET", b"/api%2Fv1/orders")
    assert_error(result, 400, "Invalid path")


async def test_client_request_id_is_the_body_request_id() -> None:
    result = await call(build(), "PUT", ORDER, headers=[("x-request-id", "support-ticket-7")])
    assert result.header("x-request-id") == "support-ticket-7"
    assert result.json()["requestId"] == "support-ticket-7"


async def test_canonicalised_path_then_routed_and_created() -> None:
    headers = [("content-type", "application/json"), ("content-length", "8")]
    result = await call(build(), "POST", b"/api/v1/%6Frders/", body=b'{"a": 1}', headers=headers)
    assert result.status == 201
    assert result.json() == {"a": 1}


async def test_plain_http_redirect_has_headers_but_no_hsts() -> None:
    result = await call(
        build(), "GET", "/api/v1/orders", scheme="http", headers=[("host", "h:8080")]
    )
    assert result.status == 301
    assert result.header("location") == "https://h:8443/api/v1/orders"
    assert_protected(result, https=False)
    result = await call(build(), "POST", "/api/v1/orders", scheme="http")
    assert result.status == 403
    assert result.json() == {"error": "HTTPS required", "requestId": result.header("x-request-id")}


async def test_trusted_proxy_resolution_reaches_https_app_and_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    headers = [("x-forwarded-for", "6.6.6.6, 203.0.113.8"), ("x-forwarded-proto", "https")]
    result = await call(
        build(), "GET", "/api/v1/orders", scheme="http", headers=headers, client=("10.0.0.2", 1)
    )
    assert result.status == 200  # the proxy terminated TLS: not redirected
    assert result.json()["client"] == "203.0.113.8"
    assert result.header("strict-transport-security") == HSTS
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
    assert line["client"] == "203.0.113.8"
    assert line["request_id"] == result.header("x-request-id")
    # the same headers from an untrusted peer change nothing
    result = await call(
        build(), "GET", "/api/v1/orders", scheme="http", headers=headers, client=("6.6.6.6", 1)
    )
    assert result.status == 301
