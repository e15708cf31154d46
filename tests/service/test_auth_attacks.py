"""JWT attacks against a protected route (GET /api/v1/me), from the attacker's side.

Each technique is its own test. The attacker knows everything public — the JWKS, the
issuer, the audience, a genuine token of their own — and every forgery must end in the same
``401 {"error": "Invalid token"}`` with ``WWW-Authenticate: Bearer error="invalid_token"``,
never a 200 and never a 5xx. (Unit tests in tests/auth/test_tokens.py check which internal
check caught each one.)
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI

from bastion.auth.keys import SigningKey, public_jwk
from tests.auth import forge
from tests.support_auth import app_client, auth_app, create_account, token_for

ME = "/api/v1/me"


class Target:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient, user_id: uuid.UUID) -> None:
        self.app = app
        self.client = client
        self.user_id = user_id

    @property
    def key(self) -> SigningKey:
        key: SigningKey = self.app.state.key_ring.active
        return key

    def genuine(self) -> str:
        return token_for(self.app, self.user_id)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        return forge.claims(sub=str(self.user_id), **overrides)

    def header(self, **overrides: Any) -> dict[str, Any]:
        merged = {"alg": self.key.alg, "kid": self.key.kid, "typ": "JWT", **overrides}
        return {k: v for k, v in merged.items() if v is not None}

    def signed(self, payload: dict[str, Any], **header: Any) -> str:
        """Signed with the server's REAL key (only a claim/header check can refuse it)."""
        return forge.token(self.header(**header), payload, key=self.key.private_key)

    async def me(self, value: str, scheme: str = "Bearer") -> httpx.Response:
        return await self.client.get(ME, headers={"Authorization": f"{scheme} {value}"})

    async def refused(self, value: str) -> None:
        response = await self.me(value)
        assert response.status_code == 401, response.text
        assert response.json() == {"error": "Invalid token", "requestId": ""}
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[Target]:
    app = auth_app(tmp_path)
    async with app_client(app) as client:
        account = await create_account(app)
        yield Target(app, client, account.id)


async def test_the_genuine_token_is_accepted(target: Target) -> None:
    response = await target.me(target.genuine())
    assert response.status_code == 200
    assert response.json()["id"] == str(target.user_id)


# --- alg none (CVE-2015-9235, jsonwebtoken CVE-2022-23540) -------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_unsigned(target: Target, alg: str) -> None:
    await target.refused(forge.token(target.header(alg=alg), target.claims()))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_with_a_signature_segment(target: Target, alg: str) -> None:
    forged = forge.token(target.header(alg=alg), target.claims(), signature=b"sig")
    await target.refused(forged)


# --- HS256 keyed with the server's public key (RS/ES -> HS confusion, CVE-2016-10555) ---------


@pytest.mark.parametrize(
    "encoding", ["pem", "pem-crlf", "der", "jwk-json", "jwks-json", "openssh", "jwk-x-raw"]
)
async def test_hs256_signed_with_the_public_key(target: Target, encoding: str) -> None:
    # The attacker takes the key from the public JWKS, as anyone can.
    jwks = (await target.client.get("/.well-known/jwks.json")).json()
    assert jwks["keys"][0]["kid"] == target.key.kid
    secret = forge.public_key_encodings(target.key.public_key, target.key.kid, "ES256")[encoding]
    forged = forge.token(target.header(alg="HS256"), target.claims(), hmac_secret=secret)
    await target.refused(forged)


# --- another algorithm --------------------------------------------------------------------------


async def test_a_token_of_another_algorithm(target: Target) -> None:
    attacker = rsa.generate_private_key(65537, 2048)
    await target.refused(forge.token(target.header(alg="RS256"), target.claims(), key=attacker))


async def test_our_algorithm_signed_with_the_attackers_key(target: Target) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    await target.refused(forge.token(target.header(), target.claims(), key=attacker))


async def test_psychic_signature(target: Target) -> None:  # CVE-2022-21449
    await target.refused(forge.token(target.header(), target.claims(), signature=bytes(64)))


# --- claims ---------------------------------------------------------------------------------


async def test_expired(target: Target) -> None:
    now = int(time.time())
    await target.refused(target.signed(target.claims(iat=now - 3600, exp=now - 60)))


async def test_future_nbf(target: Target) -> None:
    await target.refused(target.signed(target.claims(nbf=int(time.time()) + 120)))


@pytest.mark.parametrize(
    "iss", ["https://evil.example", "https://localhost:844", "https://localhost:8443/x"]
)
async def test_wrong_issuer_including_prefix_and_suffix_of_ours(target: Target, iss: str) -> None:
    await target.refused(target.signed(target.claims(iss=iss)))


@pytest.mark.parametrize("aud", ["other-api", "bastion-ap", "bastion-api-admin", None])
async def test_wrong_or_missing_audience(target: Target, aud: str | None) -> None:
    await target.refused(target.signed(target.claims(aud=aud)))


async def test_missing_exp(target: Target) -> None:
    await target.refused(target.signed(target.claims(exp=None)))


@pytest.mark.parametrize("kind", ["refresh", "reset", None])
async def test_wrong_token_type(target: Target, kind: str | None) -> None:
    await target.refused(target.signed(target.claims(type=kind)))


async def test_tampered_payload(target: Target) -> None:
    head, body, sig = target.genuine().split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    payload["role"] = "admin"
    await target.refused(f"{head}.{forge.segment(payload)}.{sig}")


async def test_tampered_subject_to_impersonate_another_user(target: Target) -> None:
    victim = await create_account(target.app)
    head, body, sig = target.genuine().split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    payload["sub"] = str(victim.id)
    await target.refused(f"{head}.{forge.segment(payload)}.{sig}")


@pytest.mark.parametrize("cut", ["empty", "missing"])
async def test_stripped_signature(target: Target, cut: str) -> None:
    head, body, _ = target.genuine().split(".")
    await target.refused(f"{head}.{body}." if cut == "empty" else f"{head}.{body}")


# --- kid ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kid",
    [
        "no-such-key",
        "../../../../../../dev/null",
        "../../keys/ring.json",
        "' OR 1=1 --",
        "1; DROP TABLE users; --",
        "|/bin/true",
    ],
)
async def test_unknown_or_malicious_kid(target: Target, kid: str) -> None:
    await target.refused(target.signed(target.claims(), kid=kid))
    # and nothing was harmed: the genuine token still works (users table intact)
    assert (await target.me(target.genuine())).status_code == 200


# --- headers that bring their own key ---------------------------------------------------------


async def test_jku_pointing_at_the_attacker(target: Target) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    forged = forge.token(
        target.header(jku="https://attacker.example/jwks.json", kid="attacker"),
        target.claims(),
        key=attacker,
    )
    await target.refused(forged)


async def test_x5u_pointing_at_the_attacker(target: Target) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    forged = forge.token(
        target.header(x5u="https://attacker.example/cert.pem"), target.claims(), key=attacker
    )
    await target.refused(forged)


async def test_embedded_jwk_of_the_attacker(target: Target) -> None:  # CVE-2018-0114
    attacker = ec.generate_private_key(ec.SECP256R1())
    forged = forge.token(
        target.header(jwk=public_jwk(attacker.public_key())), target.claims(), key=attacker
    )
    await target.refused(forged)


@pytest.mark.parametrize("name", ["jku", "x5u", "jwk", "x5c"])
async def test_key_headers_refused_even_when_signed_by_us(target: Target, name: str) -> None:
    value: Any = {"kty": "EC"} if name == "jwk" else ["x"] if name == "x5c" else "https://a.b/"
    await target.refused(target.signed(target.claims(), **{name: value}))


async def test_unknown_crit(target: Target) -> None:
    await target.refused(target.signed(target.claims(), crit=["x-custom"], **{"x-custom": 1}))


# --- transport -------------------------------------------------------------------------------


async def test_token_in_the_query_string_is_not_accepted(target: Target) -> None:
    for name in ("access_token", "token", "jwt"):
        response = await target.client.get(f"{ME}?{name}={target.genuine()}")
        assert response.status_code == 401
        # no token was presented, as far as the server is concerned
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"] == "Authentication required"


async def test_token_in_a_cookie_or_body_is_not_accepted(target: Target) -> None:
    target.client.cookies.clear()
    response = await target.client.get(ME, headers={"Cookie": f"access_token={target.genuine()}"})
    assert response.status_code == 401


async def test_a_100_kb_token_is_a_4xx_not_a_5xx(target: Target) -> None:
    huge = target.signed(target.claims(pad="A" * 100_000))
    response = await target.me(huge)
    assert 400 <= response.status_code < 500
    await target.refused(huge)


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer  ", "bEaReR   "])
async def test_scheme_case_and_repeated_spaces_are_accepted(target: Target, scheme: str) -> None:
    # RFC 6750 §2.1 / RFC 9110 §11.1: case-insensitive scheme, one or more spaces
    response = await target.me(target.genuine(), scheme=scheme)
    assert response.status_code == 200


@pytest.mark.parametrize("scheme", ["Basic", "Token", "JWT", "Bearer:"])
async def test_other_schemes_are_refused(target: Target, scheme: str) -> None:
    response = await target.me(target.genuine(), scheme=scheme)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_a_token_of_a_deleted_account_is_refused(target: Target) -> None:
    from sqlalchemy import delete

    from bastion.service.models import User

    value = target.genuine()
    async with target.app.state.database.session() as session:
        await session.execute(delete(User).where(User.id == target.user_id))
        await session.commit()
    await target.refused(value)
