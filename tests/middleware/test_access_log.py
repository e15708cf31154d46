"""AccessLogMiddleware and redact(): one JSON line per request, and no credential ever in it."""

from __future__ import annotations

import json
import logging
import re

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.asgi import REQUEST_ID_KEY
from bastion.log import timestamp
from bastion.middleware.access_log import (
    ACCESS_LOGGER,
    REDACTED,
    AccessLogMiddleware,
    _access_line,
    log_line,
    redact,
)
from bastion.middleware.request_id import RequestIDMiddleware
from tests.middleware.rawasgi import Receive, Scope, Send, call, recorder

JWT = (
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0"
    ".eyJzdWIiOiIxMjMiLCJ0eXBlIjoiYWNjZXNzIn0"
    ".MEUCIQDx3Jm1q2cL7v0sV9n4kLq8pYt3Zr6wXbA5eF2gH1iJ0"
)
# Fixed values shaped like secrets.token_urlsafe(32): parametrize ids must be stable for xdist.
REFRESH = "q3Vx8Jm2LkP0sT7wYc4Rb1Nf6Hd9Ga5Ez_Ui-Ko3Wp8"
RESET = "Zt5Bq8Lm1Xc7Vn3Hk9Rw2Pd6Jf4Gs0Ay_Ee-Ou7Ti5M"
PASSWORD = "correct horse battery staple 42"
RFC3339_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    out = []
    for record in caplog.records:
        if record.name == ACCESS_LOGGER:
            message = record.getMessage()
            assert "\n" not in message and "\r" not in message
            out.append(json.loads(message))
    return out


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    return caplog


def login_app() -> Starlette:
    async def login(request: Request) -> Response:
        await request.json()
        response = JSONResponse({"access_token": JWT, "token_type": "Bearer"})
        response.set_cookie("refresh_token", REFRESH, httponly=True, secure=True)
        return response

    return Starlette(routes=[Route("/api/v1/auth/login", login, methods=["POST"])])


async def test_credentials_never_reach_the_log(access: pytest.LogCaptureFixture) -> None:
    """Bearer token, cookie, ?token=, password body and a token in the response: none logged."""
    app = RequestIDMiddleware(AccessLogMiddleware(login_app()))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 4000)),
        base_url="https://testserver",
    ) as client:
        response = await client.post(
            f"/api/v1/auth/login?token={RESET}&next=%2Fhome",
            headers={"Authorization": f"Bearer {JWT}", "Cookie": f"refresh_token={REFRESH}"},
            json={"email": "a@example.com", "password": PASSWORD},
        )
    assert response.status_code == 200
    (entry,) = lines(access)
    assert entry == {
        "timestamp": entry["timestamp"],
        "level": "info",
        "event": "access",
        "method": "POST",
        "path": "/api/v1/auth/login",
        "query": ["token", "next"],
        "status": 200,
        "duration_ms": entry["duration_ms"],
        "client": "203.0.113.7",
        "request_id": response.headers["x-request-id"],
    }
    assert RFC3339_MS.fullmatch(str(entry["timestamp"]))
    assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] >= 0
    text = access.text
    for secret in (JWT, JWT.split(".")[0], REFRESH, RESET, PASSWORD, "correct horse", "Bearer"):
        assert secret not in text


async def test_token_shaped_path_segment_is_masked(access: pytest.LogCaptureFixture) -> None:
    inner, _ = recorder(status=404)
    await call(AccessLogMiddleware(inner), "GET", f"/reset/{RESET}")
    await call(AccessLogMiddleware(inner), "GET", f"/callback/{JWT}")
    first, second = lines(access)
    assert first["path"] == f"/reset/{REDACTED}"
    assert second["path"] == f"/callback/{REDACTED}"
    assert RESET not in access.text and JWT[:20] not in access.text


async def test_query_values_never_logged_and_odd_names_masked(
    access: pytest.LogCaptureFixture,
) -> None:
    inner, _ = recorder()
    query = f"code=abc123&state=xyz&{RESET}&a=1&a=2&=nameless&x%0Ay=1".encode()
    await call(AccessLogMiddleware(inner), "GET", "/oauth/cb", query=query)
    (entry,) = lines(access)
    assert entry["query"] == ["code", "state", REDACTED, "a", "?"]
    assert "abc123" not in access.text and "xyz" not in access.text and RESET not in access.text


async def test_log_injection_stays_one_line(access: pytest.LogCaptureFixture) -> None:
    inner, _ = recorder(status=404)
    forged = '/x\n{"event":"access","status":200}\r\n'
    await call(AccessLogMiddleware(inner), "GET", b"/x", path=forged)
    (entry,) = lines(access)  # one record, parsed as one object
    assert entry["path"] == forged  # kept, but escaped by JSON


async def test_client_and_request_id_read_after_inner_layers(
    access: pytest.LogCaptureFixture,
) -> None:
    """The proxy and request-id layers rewrite the scope in place; the log sees their result."""
    inner, _ = recorder()

    async def resolver(scope: Scope, receive: Receive, send: Send) -> None:
        scope["client"] = ("198.51.100.4", 0)
        scope[REQUEST_ID_KEY] = "rid-1"
        await inner(scope, receive, send)

    await call(AccessLogMiddleware(resolver), client=("10.0.0.1", 1))
    (entry,) = lines(access)
    assert entry["client"] == "198.51.100.4"
    assert entry["request_id"] == "rid-1"


async def test_unhandled_exception_logged_as_500_and_reraised(
    access: pytest.LogCaptureFixture,
) -> None:
    async def boom(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError(f"db said password={PASSWORD}")

    with pytest.raises(RuntimeError):
        await call(AccessLogMiddleware(boom))
    (entry,) = lines(access)
    assert entry["status"] == 500
    assert access.records[0].levelno == logging.WARNING
    assert PASSWORD not in access.text


async def test_disabled_logger_costs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=ACCESS_LOGGER)
    inner, _ = recorder()
    result = await call(AccessLogMiddleware(inner))
    assert result.status == 200
    assert lines(caplog) == []


# --- redact() ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Authorization: Bearer {JWT}", f"Authorization: {REDACTED}"),
        (f"got bearer {REFRESH} here", f"got bearer {REDACTED} here"),
        (f"token {JWT}", f"token {REDACTED}"),
        ("password=hunter2&user=bob", f"password={REDACTED}&user=bob"),
        (
            '{"email": "a@b.c", "password": "p a s s"}',
            f'{{"email": "a***@b.c", "password": "{REDACTED}"}}',  # emails masked too
        ),
        ("{'new_password': 'x'}", f"{{'new_password': '{REDACTED}'}}"),
        (f"cookie: refresh_token={REFRESH}", f"cookie: {REDACTED}"),
        (f"Set-Cookie={REFRESH}; HttpOnly", f"Set-Cookie={REDACTED}; HttpOnly"),
        ("X-Api-Key: k", f"X-Api-Key: {REDACTED}"),
        ("client_secret=s3cr3t", f"client_secret={REDACTED}"),
        ("code_verifier=abc", f"code_verifier={REDACTED}"),
        (f"key {'ab12' * 10}", f"key {REDACTED}"),  # 40 hex digits
        (f"id {REFRESH} end", f"id {REDACTED} end"),  # token_urlsafe(32)
        ('password="unterminated', f'password="{REDACTED}"'),
        ("postgresql://admin:hunter2@db/prod", f"postgresql://{REDACTED}@db/prod"),
        ("redis://:s3cret@127.0.0.1:6379/0", f"redis://{REDACTED}@127.0.0.1:6379/0"),
        ("newPassword: x", f"newPassword: {REDACTED}"),
        ("pwd=x sig=y", f"pwd={REDACTED} sig={REDACTED}"),
        ("Basic dXNlcjpwYXNz", f"Basic {REDACTED}"),
        (f"std {'Ab1+/' * 8}==", f"std {REDACTED}"),
    ],
)
def test_redact_masks_secrets(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "/api/v1/orders/550e8400-e29b-41d4-a716-446655440000",
        "GET /healthz 200",
        'File "/work/main/.venv/lib/python3.11/site-packages/starlette/routing.py", line 72',
        "ValueError: invalid literal for int() with base 10: 'abc'",
        "test_something_very_long_function_name_1",
        "user=bob&limit=10",
        "UnicodeDecodeError: 'utf-8' codec can't decode byte",
        "encoding='utf-8' barcode_len=3",
    ],
)
def test_redact_keeps_ordinary_text(text: str) -> None:
    assert redact(text) == text


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "text",
    [
        "a-" * 50_000,
        "\\" + '"\\' * 50_000,
        "password=" + '"\\' * 50_000,
        "x" * 100_000 + "=",
        "eyJ" + "a" * 100_000,
        "A1" * 50_000,
        "f" * 100_000 + "g",
        "://a:" + "b" * 100_000,
        "://" * 50_000,
    ],
)
def test_redact_is_linear_on_hostile_input(text: str) -> None:
    """ReDoS guard: a quadratic pattern would not finish on these before the timeout."""
    out = redact(text)
    assert isinstance(out, str) and len(out) <= len(text) + len(REDACTED)


# --- the hand-built line is exactly the json line ---------------------------------------------
_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)  # incl. CR, LF, quotes, é


@settings(max_examples=400, deadline=None)
@given(
    method=_TEXT,
    path=_TEXT,
    query=st.none() | st.lists(_TEXT, max_size=4),
    status=st.integers(min_value=0, max_value=999),
    duration_ms=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    client=st.none() | _TEXT,
    rid=_TEXT,
)
def test_access_line_equals_log_line_on_any_text(
    method: str,
    path: str,
    query: list[str] | None,
    status: int,
    duration_ms: float,
    client: str | None,
    rid: str,
) -> None:
    when = timestamp()
    fields: dict[str, object] = {
        "timestamp": when,
        "level": "info",
        "event": "access",
        "method": method,
        "path": path,
    }
    if query is not None:
        fields["query"] = query
    fields.update(status=status, duration_ms=duration_ms, client=client, request_id=rid)
    line = _access_line(when, "info", method, path, query, status, duration_ms, client, rid)
    assert line == log_line(fields)
    assert "\n" not in line and "\r" not in line  # one line, whatever the client sent
    assert json.loads(line) == fields


@pytest.mark.parametrize(
    ("method", "status", "duration_ms", "client", "rid"),
    [
        (b"GET", 200, 1.5, "10.0.0.1", "id"),  # bytes method: json's default=str decides
        ("GET", True, 1.5, "10.0.0.1", "id"),  # a bool is not an int here
        ("GET", 200, 2, "10.0.0.1", "id"),  # an int duration
        ("GET", 200, 1.5, ("10.0.0.1", 5), "id"),
        ("GET", 200, 1.5, None, None),
    ],
    ids=["bytes-method", "bool-status", "int-duration", "tuple-client", "no-id"],
)
def test_access_line_odd_types_take_the_json_path(
    method: object, status: int, duration_ms: float, client: object, rid: object
) -> None:
    when = "2025-06-01T12:00:00.000Z"
    fields: dict[str, object] = {
        "timestamp": when,
        "level": "warning",
        "event": "access",
        "method": method,
        "path": "/p",
    }
    fields.update(status=status, duration_ms=duration_ms, client=client, request_id=rid)
    line = _access_line(when, "warning", method, "/p", None, status, duration_ms, client, rid)
    assert line == log_line(fields)
