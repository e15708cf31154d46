"""SafeErrorsMiddleware: contract bodies, no exception text out, redacted details in the log."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion.asgi import REQUEST_ID_KEY
from bastion.errors import HTTPError
from bastion.middleware.errors import ERROR_LOGGER, SafeErrorsMiddleware
from tests.middleware.rawasgi import (
    App,
    Receive,
    Result,
    Scope,
    Send,
    call,
    never_receive,
    never_send,
    recorder,
)

SECRET = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl"
INTERNAL = b'{"error":"An internal error occurred","requestId":"rid-1"}'


def raising(exc: BaseException) -> App:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise exc

    return app


def error_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == ERROR_LOGGER]


async def run(app: App, **kwargs: Any) -> Result:
    request_id: dict[str, Any] = {REQUEST_ID_KEY: "rid-1"}
    return await call(SafeErrorsMiddleware(app), **request_id, **kwargs)


async def test_unhandled_exception_becomes_contract_500_and_logged_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    result = await run(
        raising(RuntimeError(f"SELECT * FROM users WHERE token='{SECRET}' /srv/app/db.py")),
        method="POST",
        raw_path="/api/v1/orders",
    )
    assert result.status == 500
    assert result.body == INTERNAL
    assert result.header("content-type") == "application/json"
    assert result.header("content-length") == str(len(INTERNAL))
    (line,) = error_lines(caplog)
    assert line["request_id"] == "rid-1"
    assert line["exception"] == "RuntimeError"
    assert line["method"] == "POST" and line["path"] == "/api/v1/orders"
    assert "Traceback (most recent call last)" in line["traceback"]
    assert "SELECT * FROM users" in line["traceback"]  # the detail is there for support...
    assert SECRET not in caplog.text and SECRET[:12] not in caplog.text  # ...the token is not
    assert caplog.records[0].exc_info is None  # nothing unredacted for a handler to print


async def test_http_error_keeps_status_message_headers_and_details() -> None:
    error = HTTPError(
        401,
        "Invalid token",
        headers=[(b"www-authenticate", b'Bearer error="invalid_token"'), (b"content-length", b"9")],
        details={"token": ["expired"]},
        detail="signature check failed for kid k1",
    )
    result = await run(raising(error))
    assert result.status == 401
    assert result.json() == {
        "error": "Invalid token",
        "requestId": "rid-1",
        "details": {"token": ["expired"]},
    }
    assert result.header("www-authenticate") == 'Bearer error="invalid_token"'
    assert result.header("content-length") == str(len(result.body))
    assert b"kid k1" not in result.body


@pytest.mark.parametrize("status", [500, 503])
async def test_5xx_http_error_says_only_internal_error(status: int) -> None:
    result = await run(raising(HTTPError(status, "db pool exhausted at 10.0.0.5")))
    assert result.status == status
    assert result.json()["error"] == "An internal error occurred"


@pytest.mark.parametrize("status", [200, 302, 99, 600])
async def test_http_error_with_non_error_status_becomes_500(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    result = await run(raising(HTTPError(status, "odd")))
    assert result.status == 500 and result.body == INTERNAL
    assert error_lines(caplog)[0]["exception"] == "HTTPError"


async def test_http_error_inside_exception_group() -> None:
    group = ExceptionGroup("task group", [ExceptionGroup("inner", [HTTPError(404, "Not found")])])
    result = await run(raising(group))
    assert result.status == 404
    assert result.json() == {"error": "Not found", "requestId": "rid-1"}


async def test_inner_500_body_is_replaced() -> None:
    """A debug page or Starlette's 'Internal Server Error' never reaches the client."""
    inner, _ = recorder(status=500, body=b'Traceback ... File "/srv/app.py" ValueError: x')
    result = await run(inner)
    assert result.status == 500
    assert result.body == INTERNAL
    assert result.header("content-type") == "application/json"


async def test_inner_500_then_http_error_uses_the_error() -> None:
    """Starlette's ServerErrorMiddleware sends its 500 first and re-raises afterwards."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"Internal Server Error"})
        raise HTTPError(413, "Payload too large")

    result = await run(app)
    assert result.status == 413
    assert result.json() == {"error": "Payload too large", "requestId": "rid-1"}


@pytest.mark.parametrize("status", [200, 404, 503])
async def test_other_responses_pass_unchanged(status: int) -> None:
    inner, _ = recorder(status=status, body=b"as sent")
    result = await run(inner)
    assert result.status == status and result.body == b"as sent"


async def test_exception_after_start_sends_no_second_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError(f"stream broke, password={SECRET}")

    result = await run(app)  # returns: the server closes the incomplete response
    assert [m["type"] for m in result.messages] == ["http.response.start", "http.response.body"]
    assert result.messages[-1]["more_body"] is True  # never completed with a fake end
    (line,) = error_lines(caplog)
    assert line["message"] == "exception after the response started; connection closed"
    assert SECRET not in caplog.text


async def test_app_that_never_answers_gets_500(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    result = await run(app)
    assert result.status == 500 and result.body == INTERNAL
    assert error_lines(caplog)[0]["message"] == "no response"


async def test_starlette_route_exception_through_httpx() -> None:
    async def boom(request: Request) -> JSONResponse:
        raise KeyError("/etc/passwd")

    async def refuse(request: Request) -> JSONResponse:
        raise HTTPError(409, "Conflict")

    app = SafeErrorsMiddleware(Starlette(routes=[Route("/boom", boom), Route("/refuse", refuse)]))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://testserver"
    ) as client:
        response = await client.get("/boom")
        assert response.status_code == 500
        assert response.json() == {"error": "An internal error occurred", "requestId": ""}
        assert "passwd" not in response.text and "KeyError" not in response.text
        response = await client.get("/refuse")
        assert response.status_code == 409
        assert response.json() == {"error": "Conflict", "requestId": ""}


async def test_non_http_exceptions_propagate() -> None:
    with pytest.raises(RuntimeError):
        await SafeErrorsMiddleware(raising(RuntimeError("x")))(
            {"type": "lifespan"}, never_receive, never_send
        )


async def test_custom_logger_name(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="custom.errors")
    app = SafeErrorsMiddleware(raising(ValueError("v")), logger="custom.errors")
    await call(app)
    assert [r.name for r in caplog.records] == ["custom.errors"]
