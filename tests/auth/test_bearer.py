"""Bearer credentials on a raw ASGI scope (RFC 6750 §2.1) and the RequireBearer middleware."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from bastion.asgi import Message, Receive, Scope, Send
from bastion.auth.bearer import (
    PRINCIPAL_KEY,
    MissingToken,
    RefusedToken,
    RequireBearer,
    authenticate,
    bearer_token,
)
from bastion.auth.principal import Principal
from bastion.errors import AuthError, ConfigError

ALICE = Principal(uuid.uuid4(), "user", "jti-1")


class Verifier:
    """Accepts exactly one token; records what it was asked."""

    def __init__(self, good: str = "good.token.value") -> None:
        self.good = good
        self.seen: list[str] = []

    def verify_access(self, token: str) -> Principal:
        self.seen.append(token)
        if token != self.good:
            raise AuthError("bad token")
        return ALICE


def scope(*headers: tuple[bytes, bytes], path: str = "/api/v1/me", query: bytes = b"") -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query,
        "headers": list(headers),
    }


@pytest.mark.parametrize(
    "value",
    [
        b"Bearer good.token.value",
        b"bearer good.token.value",
        b"BEARER good.token.value",
        b"bEaReR good.token.value",
        b"Bearer    good.token.value",  # several spaces (RFC 6750 §2.1: 1*SP)
        b"Bearer good.token.value ",
    ],
)
def test_the_scheme_is_case_insensitive_and_spaces_may_repeat(value: bytes) -> None:
    assert authenticate(scope((b"authorization", value)), Verifier()) == ALICE


def test_no_authorization_header_is_missing_with_a_plain_challenge() -> None:
    with pytest.raises(MissingToken) as caught:
        authenticate(scope(), Verifier())
    assert caught.value.status == 401
    assert caught.value.headers == [(b"www-authenticate", b"Bearer")]
    assert caught.value.public_message == "Authentication required"


def test_a_token_in_the_query_string_is_never_read() -> None:
    verifier = Verifier()
    with pytest.raises(MissingToken):
        authenticate(scope(query=b"access_token=good.token.value"), verifier)
    assert verifier.seen == []


@pytest.mark.parametrize(
    "value",
    [
        b"Basic dXNlcjpwYXNz",
        b"Token good.token.value",
        b"Bearer",
        b"Bearer ",
        b"Bearergood.token.value",
        b"Bearer good token",
        b"Bearer good\ttoken",
        b'Bearer "good.token.value"',
        b"good.token.value",
    ],
)
def test_other_schemes_and_malformed_credentials_are_refused(value: bytes) -> None:
    verifier = Verifier()
    with pytest.raises(RefusedToken) as caught:
        authenticate(scope((b"authorization", value)), verifier)
    assert caught.value.headers == [(b"www-authenticate", b'Bearer error="invalid_token"')]
    assert caught.value.public_message == "Invalid token"
    assert verifier.seen == []


def test_two_authorization_headers_are_refused() -> None:
    with pytest.raises(RefusedToken):
        authenticate(
            scope(
                (b"authorization", b"Bearer good.token.value"),
                (b"authorization", b"Bearer other"),
            ),
            Verifier(),
        )


def test_a_refused_token_gives_invalid_token_and_no_reason() -> None:
    with pytest.raises(RefusedToken) as caught:
        authenticate(scope((b"authorization", b"Bearer forged.token.x")), Verifier())
    assert caught.value.public_message == "Invalid token"
    assert caught.value.detail == "bad token"  # internal only


def test_bearer_token_returns_the_token_text() -> None:
    assert bearer_token(scope((b"authorization", b"bearer  abc-_.~+/="))) == "abc-_.~+/="
    assert bearer_token(scope()) is None


# --- RequireBearer --------------------------------------------------------------------------


async def call(app: Any, s: Scope) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(s, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


async def inner(s: Scope, receive: Receive, send: Send) -> None:
    principal = s.get(PRINCIPAL_KEY)
    body = json.dumps({"user": str(principal.user_id) if principal else None}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def test_require_bearer_puts_the_principal_in_the_scope() -> None:
    app = RequireBearer(inner, verifier=Verifier(), prefixes=("/api/",))
    status, _, body = await call(app, scope((b"authorization", b"Bearer good.token.value")))
    assert status == 200
    assert json.loads(body) == {"user": str(ALICE.user_id)}


async def test_require_bearer_answers_401_in_the_contract_shape() -> None:
    app = RequireBearer(inner, verifier=Verifier(), prefixes=("/api/",))
    s = scope((b"authorization", b"Bearer forged"))
    s["bastion.request_id"] = "req-1"
    status, headers, body = await call(app, s)
    assert status == 401
    assert headers[b"www-authenticate"] == b'Bearer error="invalid_token"'
    assert json.loads(body) == {"error": "Invalid token", "requestId": "req-1"}


async def test_require_bearer_leaves_other_paths_alone() -> None:
    app = RequireBearer(inner, verifier=Verifier(), prefixes=("/api/",))
    status, _, body = await call(app, scope(path="/healthz"))
    assert status == 200 and json.loads(body) == {"user": None}


@pytest.mark.parametrize("prefixes", [(), ("api/",)])
def test_require_bearer_refuses_bad_prefixes_at_construction(prefixes: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError):
        RequireBearer(inner, verifier=Verifier(), prefixes=prefixes)
