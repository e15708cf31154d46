"""BearerAuth: the Authorization header (RFC 6750 §2.1), tokens from other issuers, the 401/403
answers (RFC 6750 §3) in Starlette, FastAPI (``Depends``) and raw ASGI, scopes, options."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion import BearerAuth, Principal
from bastion.asgi import Message, Receive, Scope, Send
from bastion.auth import errors as E
from bastion.auth.bearer import (
    PRINCIPAL_KEY,
    InsufficientScope,
    MissingToken,
    RefusedToken,
    RequireBearer,
    bearer_token,
)
from bastion.auth.jwk import curve_order, half_order
from bastion.auth.keys import KeyRing, public_jwk
from bastion.auth.tokens import TokenIssuer
from bastion.config import Settings
from bastion.errors import ConfigError
from bastion.middleware.errors import SafeErrorsMiddleware
from bastion.middleware.request_id import RequestIDMiddleware
from bastion.stack import secure
from tests.auth import forge

ISSUER = "https://login.example.com/"
AUDIENCE = "orders-api"
KEY = ec.generate_private_key(ec.SECP256R1())
KID = "key-1"
JWKS = {"keys": [{**public_jwk(KEY.public_key()), "kid": KID, "alg": "ES256", "use": "sig"}]}


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "42",
        "iat": now,
        "exp": now + 300,
        "scope": "orders:read orders:write",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def signed(header: dict[str, Any] | None = None, **overrides: Any) -> str:
    head = {"alg": "ES256", "kid": KID, "typ": "JWT", **(header or {})}
    head = {k: v for k, v in head.items() if v is not None}
    return forge.token(head, claims(**overrides), key=KEY, alg="ES256")


@pytest.fixture
def auth() -> BearerAuth:
    return BearerAuth(jwks=JWKS, issuer=ISSUER, audience=AUDIENCE)


def http_scope(
    *headers: tuple[bytes, bytes], path: str = "/api/orders", query: bytes = b""
) -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query,
        "headers": list(headers),
    }


def bearer(token: str) -> tuple[bytes, bytes]:
    return (b"authorization", f"Bearer {token}".encode())


# --- the Authorization header -------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [b"Bearer ", b"bearer ", b"BEARER ", b"bEaReR ", b"Bearer    "],  # RFC 6750 §2.1: 1*SP
)
async def test_the_scheme_is_case_insensitive_and_spaces_may_repeat(
    auth: BearerAuth, prefix: bytes
) -> None:
    value = prefix + signed().encode()
    principal = await auth.authenticate(http_scope((b"authorization", value)))
    assert principal.subject == "42"


async def test_no_authorization_header_is_missing_with_a_plain_challenge(auth: BearerAuth) -> None:
    with pytest.raises(MissingToken) as caught:
        await auth.authenticate(http_scope())
    assert caught.value.status == 401
    assert caught.value.headers == [(b"www-authenticate", b"Bearer")]
    assert caught.value.public_message == "Authentication required"


async def test_a_token_in_the_query_string_is_never_read(auth: BearerAuth) -> None:
    with pytest.raises(MissingToken):
        await auth.authenticate(http_scope(query=f"access_token={signed()}".encode()))


@pytest.mark.parametrize(
    "value",
    [
        b"Basic dXNlcjpwYXNz",
        b"Token abc.def.ghi",
        b"Bearer",
        b"Bearer ",
        b"Bearerabc.def.ghi",
        b"Bearer abc def",
        b"Bearer abc\tdef",
        b'Bearer "abc.def.ghi"',
        b"abc.def.ghi",
    ],
)
async def test_other_schemes_and_malformed_credentials_are_refused(
    auth: BearerAuth, value: bytes
) -> None:
    with pytest.raises(RefusedToken) as caught:
        await auth.authenticate(http_scope((b"authorization", value)))
    assert caught.value.headers == [(b"www-authenticate", b'Bearer error="invalid_token"')]
    assert caught.value.public_message == "Invalid token"


async def test_two_authorization_headers_are_refused(auth: BearerAuth) -> None:
    with pytest.raises(RefusedToken):
        await auth.authenticate(http_scope(bearer(signed()), bearer(signed(sub="admin"))))


def test_bearer_token_returns_the_token_text() -> None:
    assert bearer_token(http_scope((b"authorization", b"bearer  abc-_.~+/="))) == "abc-_.~+/="
    assert bearer_token(http_scope()) is None


async def test_a_refused_token_gives_invalid_token_and_keeps_the_reason_internal(
    auth: BearerAuth,
) -> None:
    with pytest.raises(RefusedToken) as caught:
        await auth.authenticate(http_scope(bearer(signed(aud="payments-api"))))
    assert caught.value.public_message == "Invalid token"
    assert caught.value.detail == "WrongAudience: aud does not name us"


# --- tokens of other issuers --------------------------------------------------------------------


async def test_the_principal_has_subject_scopes_claims_and_role(auth: BearerAuth) -> None:
    scope = http_scope(bearer(signed(role="admin", tenant="acme")))
    principal = await auth.authenticate(scope)
    assert principal.subject == "42"
    assert principal.scopes == {"orders:read", "orders:write"}
    assert principal.role == "admin"
    assert principal.claims["tenant"] == "acme"
    assert scope[PRINCIPAL_KEY] is principal


@pytest.mark.parametrize("sub", ["42", "alice@example.com", "auth0|5f7c8ec7c33c6c004bbafe82", "x"])
def test_sub_is_any_non_empty_string(auth: BearerAuth, sub: str) -> None:
    assert auth.verify(signed(sub=sub)).subject == sub


@pytest.mark.parametrize(
    ("sub", "error"), [(None, E.MissingClaim), ("", E.InvalidClaim), (42, E.InvalidClaim)]
)
def test_a_principal_needs_a_subject(auth: BearerAuth, sub: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        auth.verify(signed(sub=sub))


PYJWT_KEYS: list[tuple[str, Any]] = [
    ("ES256", ec.generate_private_key(ec.SECP256R1())),
    ("RS256", rsa.generate_private_key(65537, 2048)),
    ("EdDSA", ed25519.Ed25519PrivateKey.generate()),
]


@pytest.mark.parametrize(("alg", "private"), PYJWT_KEYS, ids=[a for a, _ in PYJWT_KEYS])
def test_real_tokens_from_pyjwt_verify(alg: str, private: Any) -> None:
    jwk = {**public_jwk(private.public_key()), "kid": "pyjwt", "alg": alg}
    auth = BearerAuth(jwks={"keys": [jwk]}, issuer=ISSUER, audience=AUDIENCE, require_low_s=False)
    now = int(time.time())
    for _ in range(20):
        token = jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "42", "iat": now, "exp": now + 60},
            private,
            algorithm=alg,
            headers={"kid": "pyjwt"},
        )
        assert auth.verify(token).subject == "42"


def test_pyjwt_es256_tokens_verify_by_default_exactly_when_low_s() -> None:
    # PyJWT (like most ECDSA signers) does not normalise S: half of its signatures are the
    # high-S form, which the default refuses (issue 13); require_low_s=False accepts both.
    private = PYJWT_KEYS[0][1]
    jwk = {**public_jwk(private.public_key()), "kid": "pyjwt", "alg": "ES256"}
    strict = BearerAuth(jwks={"keys": [jwk]}, issuer=ISSUER, audience=AUDIENCE)
    now = int(time.time())
    outcomes = set()
    for _ in range(40):
        token = jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "42", "exp": now + 60},
            private,
            algorithm="ES256",
            headers={"kid": "pyjwt"},
        )
        sig = base64.urlsafe_b64decode(token.rpartition(".")[2] + "==")
        low = int.from_bytes(sig[32:], "big") <= half_order("ES256")
        if low:
            assert strict.verify(token).subject == "42"
        else:
            with pytest.raises(E.BadSignature):
                strict.verify(token)
        outcomes.add(low)
    assert outcomes == {True, False}  # 40 coin flips: both forms were seen


def test_a_token_without_kid_uses_the_only_key() -> None:
    auth = BearerAuth(
        jwks={"keys": [public_jwk(KEY.public_key())]}, issuer=ISSUER, audience=AUDIENCE
    )
    assert auth.verify(signed(header={"kid": None})).subject == "42"


def test_the_service_issuer_mints_tokens_bearerauth_accepts(tmp_path: Path) -> None:
    # issue 11: TokenIssuer.issue(42, "user") must not mint a token its own verifier refuses.
    ring = KeyRing(tmp_path / "keys")
    ring.ensure()
    issuer = TokenIssuer(ring, issuer=ISSUER, audience=AUDIENCE)
    auth = BearerAuth(key_ring=ring, issuer=ISSUER, audience=AUDIENCE)
    principal = auth.verify(issuer.issue(42, "user").token)
    assert principal.subject == "42" and principal.role == "user"


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("alg none", lambda: forge.token({"alg": "none", "kid": KID}, claims())),
        (
            "HS256 keyed with the public JWK",
            lambda: forge.token(
                {"alg": "HS256", "kid": KID},
                claims(),
                hmac_secret=json.dumps(JWKS["keys"][0]).encode(),
            ),
        ),
        ("jku", lambda: signed(header={"jku": "https://attacker.example/jwks.json"})),
        ("jwk", lambda: signed(header={"jwk": JWKS["keys"][0]})),
        ("x5u", lambda: signed(header={"x5u": "https://attacker.example/cert.pem"})),
        ("crit", lambda: signed(header={"crit": ["exp"]})),
        ("RSA alg on an EC key", lambda: signed(header={"alg": "RS256"})),
        ("wrong iss", lambda: signed(iss="https://login.example.com")),
        ("wrong aud", lambda: signed(aud="payments-api")),
        ("expired", lambda: signed(exp=int(time.time()) - 60)),
        ("nbf ahead", lambda: signed(nbf=int(time.time()) + 120)),
        ("no exp", lambda: signed(exp=None)),
        (
            "high-S",
            lambda: forge.token({"alg": "ES256", "kid": KID}, claims(), key=KEY, high_s=True),
        ),
    ],
)
async def test_every_attack_is_a_401(auth: BearerAuth, name: str, make: Any) -> None:
    with pytest.raises(RefusedToken) as caught:
        await auth.authenticate(http_scope(bearer(make())))
    assert caught.value.status == 401, name


def test_verify_raises_the_precise_error(auth: BearerAuth) -> None:
    with pytest.raises(E.DisallowedAlgorithm):
        auth.verify(forge.token({"alg": "HS256", "kid": KID}, claims(), hmac_secret=b"x"))
    with pytest.raises(E.DisallowedAlgorithm, match="bound to ES256"):
        auth.verify(signed(header={"alg": "RS256"}))


# --- scopes ---------------------------------------------------------------------------------------


async def test_require_needs_every_scope(auth: BearerAuth) -> None:
    need = auth.require(scopes=["orders:write", "orders:read"])
    request = Request(http_scope(bearer(signed())))
    assert (await need(request)).subject == "42"
    with pytest.raises(InsufficientScope) as caught:
        await need(Request(http_scope(bearer(signed(scope="orders:read")))))
    assert caught.value.status == 403
    assert caught.value.public_message == "Insufficient scope"
    assert caught.value.headers == [
        (
            b"www-authenticate",
            b'Bearer error="insufficient_scope", scope="orders:write orders:read"',
        )
    ]


@pytest.mark.parametrize(
    ("token_scopes", "allowed"),
    [
        ({"scp": ["orders:write", "profile"]}, True),  # Okta: a list
        ({"scp": "orders:write profile"}, True),  # Entra ID: a string
        ({"scope": "orders:writer"}, False),  # no prefix matching
        ({"scope": "ORDERS:WRITE"}, False),  # no case folding
        ({"scope": None}, False),
    ],
)
async def test_scopes_come_from_scope_or_scp(
    auth: BearerAuth, token_scopes: dict[str, Any], allowed: bool
) -> None:
    need = auth.require(scopes=["orders:write"])
    request = Request(http_scope(bearer(signed(**token_scopes))))
    if allowed:
        await need(request)
    else:
        with pytest.raises(InsufficientScope):
            await need(request)


@pytest.mark.parametrize(
    "scopes", ["orders:write", ["has space"], ['quote"'], ["back\\slash"], [""], [7]]
)
def test_bad_scopes_are_refused_at_construction(auth: BearerAuth, scopes: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        auth.require(scopes=scopes)
    assert caught.value.name == "scopes"


async def test_a_request_is_verified_once_by_two_dependencies(
    auth: BearerAuth, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    decode = auth.verifier.decode

    def counting(token: str) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return decode(token)

    monkeypatch.setattr(auth.verifier, "decode", counting)
    scope = http_scope(bearer(signed()))
    first = await auth.authenticate(scope)
    second = await auth.require(scopes=["orders:read"])(Request(scope))
    assert first is second and calls == 1
    other = BearerAuth(jwks=JWKS, issuer=ISSUER, audience="payments-api")
    with pytest.raises(RefusedToken):  # another BearerAuth never trusts the first one's result
        await other.authenticate(scope)


# --- FastAPI, through the stack -----------------------------------------------------------------


def fastapi_app(auth: BearerAuth, tmp_path: Path) -> Any:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/api/me")
    async def me(user: Principal = Depends(auth)) -> dict[str, Any]:  # noqa: B008 (the spec's form)
        return {"subject": user.subject, "scopes": sorted(user.scopes)}

    @app.delete(
        "/api/orders/{order_id}", dependencies=[Depends(auth.require(scopes=["orders:write"]))]
    )
    async def delete(order_id: str) -> dict[str, str]:
        return {"deleted": order_id}

    return secure(app, settings=Settings(data_dir=tmp_path, insecure_http=True))


async def call(app: Any, method: str, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.request(method, path, headers=headers)


async def test_fastapi_depends_gives_the_principal(auth: BearerAuth, tmp_path: Path) -> None:
    response = await call(fastapi_app(auth, tmp_path), "GET", "/api/me", signed())
    assert response.status_code == 200
    assert response.json() == {"subject": "42", "scopes": ["orders:read", "orders:write"]}


async def test_fastapi_401s_are_in_the_contract_shape(auth: BearerAuth, tmp_path: Path) -> None:
    app = fastapi_app(auth, tmp_path)
    missing = await call(app, "GET", "/api/me")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json() == {
        "error": "Authentication required",
        "requestId": missing.headers["x-request-id"],
    }
    refused = await call(app, "GET", "/api/me", signed(exp=1))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert refused.json() == {
        "error": "Invalid token",
        "requestId": refused.headers["x-request-id"],
    }
    assert (
        refused.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    )


async def test_fastapi_403_for_a_missing_scope(auth: BearerAuth, tmp_path: Path) -> None:
    app = fastapi_app(auth, tmp_path)
    allowed = await call(app, "DELETE", "/api/orders/7", signed())
    assert allowed.status_code == 200 and allowed.json() == {"deleted": "7"}
    denied = await call(app, "DELETE", "/api/orders/7", signed(scope="orders:read"))
    assert denied.status_code == 403
    assert (
        denied.headers["www-authenticate"]
        == 'Bearer error="insufficient_scope", scope="orders:write"'
    )
    assert denied.json() == {
        "error": "Insufficient scope",
        "requestId": denied.headers["x-request-id"],
    }


async def test_fastapi_outside_secure_answers_with_the_error_handlers(auth: BearerAuth) -> None:
    # README: outside secure(), install_error_handlers gives the same answers.
    from bastion.fastapi import install_error_handlers

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)

    @app.get("/api/orders", dependencies=[Depends(auth.require(scopes=["orders:admin"]))])
    async def orders() -> dict[str, str]:
        return {}

    denied = await call(app, "GET", "/api/orders", signed())
    assert denied.status_code == 403
    assert (
        denied.headers["www-authenticate"]
        == 'Bearer error="insufficient_scope", scope="orders:admin"'
    )
    assert denied.json()["error"] == "Insufficient scope"
    missing = await call(app, "GET", "/api/orders")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"


# --- Starlette and raw ASGI ---------------------------------------------------------------------


async def test_starlette_awaits_the_same_object(auth: BearerAuth) -> None:
    async def me(request: Request) -> JSONResponse:
        user = await auth(request)
        return JSONResponse({"subject": user.subject})

    app = RequestIDMiddleware(SafeErrorsMiddleware(Starlette(routes=[Route("/me", me)])))
    ok = await call(app, "GET", "/me", signed())
    assert ok.status_code == 200 and ok.json() == {"subject": "42"}
    refused = await call(app, "GET", "/me", "a.b.c")
    assert refused.status_code == 401
    assert refused.json() == {
        "error": "Invalid token",
        "requestId": refused.headers["x-request-id"],
    }


async def asgi_call(app: Any, scope: Scope) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return (
        sent[0]["status"],
        dict(sent[0]["headers"]),
        b"".join(m.get("body", b"") for m in sent[1:]),
    )


async def inner(scope: Scope, receive: Receive, send: Send) -> None:
    principal = scope.get(PRINCIPAL_KEY)
    body = json.dumps({"user": principal.subject if principal else None}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def test_require_bearer_puts_the_principal_in_the_scope(auth: BearerAuth) -> None:
    app = RequireBearer(inner, auth=auth, prefixes=("/api/",))
    status, _, body = await asgi_call(app, http_scope(bearer(signed())))
    assert status == 200 and json.loads(body) == {"user": "42"}


async def test_require_bearer_answers_401_in_the_contract_shape(auth: BearerAuth) -> None:
    app = RequireBearer(inner, auth=auth, prefixes=("/api/",))
    scope = http_scope(bearer("forged.token.x"))
    scope["bastion.request_id"] = "req-1"
    status, headers, body = await asgi_call(app, scope)
    assert status == 401
    assert headers[b"www-authenticate"] == b'Bearer error="invalid_token"'
    assert json.loads(body) == {"error": "Invalid token", "requestId": "req-1"}


async def test_require_bearer_leaves_other_paths_alone(auth: BearerAuth) -> None:
    app = RequireBearer(inner, auth=auth, prefixes=("/api/",))
    status, _, body = await asgi_call(app, http_scope(path="/healthz"))
    assert status == 200 and json.loads(body) == {"user": None}


@pytest.mark.parametrize("prefixes", [(), ("api/",)])
def test_require_bearer_refuses_bad_prefixes_at_construction(
    auth: BearerAuth, prefixes: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError):
        RequireBearer(inner, auth=auth, prefixes=prefixes)


# --- options --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "kwargs"),
    [
        ("algorithms", {"jwks": JWKS, "algorithms": ["HS256"]}),
        ("algorithms", {"jwks": JWKS, "algorithms": ["none"]}),
        ("algorithms", {"jwks": JWKS, "algorithms": ["ES256", "HS512"]}),
        ("jwks", {"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
        ("jwks", {"jwks": {"keys": []}}),
        ("jwks", {"jwks": [JWKS]}),
        ("jwks", {"jwks": JWKS, "jwks_url": "https://login.example.com/jwks"}),
        ("issuer", {"jwks": JWKS, "issuer": ""}),
        ("audience", {"jwks": JWKS, "audience": ""}),
        ("require_low_s", {"jwks": JWKS, "require_low_s": "yes"}),
        ("leeway", {"jwks": JWKS, "leeway": 86400}),
    ],
)
def test_bad_options_are_refused_at_construction(option: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        BearerAuth(**{"issuer": ISSUER, "audience": AUDIENCE, **kwargs})
    assert caught.value.name == option


def test_the_key_ring_pins_its_own_algorithm(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "keys")
    with pytest.raises(ConfigError) as caught:
        BearerAuth(key_ring=ring, issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"])
    assert caught.value.name == "algorithms"


def test_algorithms_pin_what_a_static_set_may_use() -> None:
    auth = BearerAuth(jwks=JWKS, issuer=ISSUER, audience=AUDIENCE, algorithms=["ES256"])
    auth.verify(signed())
    with pytest.raises(ConfigError):  # the only key is ES256: nothing usable for RS256 alone
        BearerAuth(jwks=JWKS, issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"])


def test_an_injected_clock_judges_the_times(auth: BearerAuth) -> None:
    later = BearerAuth(
        jwks=JWKS, issuer=ISSUER, audience=AUDIENCE, clock=lambda: time.time() + 3600
    )
    token = signed()
    auth.verify(token)
    with pytest.raises(E.Expired):
        later.verify(token)


def test_high_s_accepted_only_when_asked() -> None:
    lenient = BearerAuth(jwks=JWKS, issuer=ISSUER, audience=AUDIENCE, require_low_s=False)
    token = forge.token({"alg": "ES256", "kid": KID}, claims(), key=KEY, high_s=True)
    sig = base64.urlsafe_b64decode(token.rpartition(".")[2] + "==")
    assert int.from_bytes(sig[32:], "big") > half_order("ES256")
    assert curve_order("ES256") > int.from_bytes(sig[32:], "big")
    assert lenient.verify(token).subject == "42"


def test_the_public_names_are_exported() -> None:
    import bastion

    assert {"BearerAuth", "Principal"} <= set(bastion.__all__)
    assert bastion.BearerAuth is BearerAuth and bastion.Principal is Principal
