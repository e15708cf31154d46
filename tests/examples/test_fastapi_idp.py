"""examples/fastapi_idp.py under plain uvicorn, over real HTTP, with tokens from a local issuer.

The issuer (:class:`tests.support_issuer.LocalIssuer`) serves its discovery document and JWKS
on loopback and counts every hit, so the tests see what the app asked of it: one discovery and
one JWKS fetch for any number of good tokens, still one for hundreds of forged ``kid`` values
sent from hundreds of addresses (the rate limiter cannot help there: each address has its own
budget), nothing while it is down, and never a JWKS for a discovery document naming another
issuer. Every refusal is checked to the byte: status, ``WWW-Authenticate``, body, request id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.auth.keys import public_jwk
from tests import uvicorn_process
from tests.auth import forge
from tests.support_issuer import AUDIENCE, LocalIssuer

pytestmark = pytest.mark.integration

TARGET = "examples.fastapi_idp:app"
STRICT_CSP = "default-src 'none'; frame-ancestors 'none'"


@pytest.fixture(scope="module")
def idp() -> Iterator[LocalIssuer]:
    issuer = LocalIssuer()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="module")
def server(idp: LocalIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with serve(idp, tmp_path_factory.mktemp("idp-example")) as process:
        yield process


def serve(idp: LocalIssuer, tmp_path: Path) -> Any:
    env = {"OIDC_ISSUER": idp.url, "OIDC_AUDIENCE": AUDIENCE}
    return uvicorn_process.running(TARGET, tmp_path, env=env, ready_path="/")


_next_address = [1]


def client(server: Any) -> httpx.Client:
    """A client from its own loopback address (127.0.1.x): its own rate-limit budget."""
    _next_address[0] += 1
    address = f"127.0.{_next_address[0] // 250 + 1}.{_next_address[0] % 250 + 1}"
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.url, transport=transport, timeout=10)


def get_me(server: Any, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    with client(server) as http:
        return http.get("/api/me", headers=headers)


def assert_refused(
    response: httpx.Response, challenge: str = 'Bearer error="invalid_token"'
) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == challenge
    assert response.headers["content-type"] == "application/json"
    request_id = response.headers["x-request-id"]
    error = "Invalid token" if "invalid_token" in challenge else "Authentication required"
    assert response.json() == {"error": error, "requestId": request_id}
    assert response.headers["content-security-policy"] == STRICT_CSP
    assert response.headers["cache-control"] == "no-store"


# --- the genuine article -------------------------------------------------------------------------


def test_a_valid_token_gives_its_subject_and_scopes(server: Any, idp: LocalIssuer) -> None:
    response = get_me(server, idp.token(sub="42", scope="orders:read orders:write"))
    assert response.status_code == 200
    assert response.json() == {"subject": "42", "scopes": ["orders:read", "orders:write"]}
    assert response.headers["content-security-policy"] == STRICT_CSP


def test_many_good_tokens_cost_one_discovery_and_one_jwks_fetch(
    server: Any, idp: LocalIssuer
) -> None:
    assert get_me(server, idp.token()).status_code == 200
    before = dict(idp.hits)
    for i in range(10):
        assert get_me(server, idp.token(sub=f"user-{i}")).status_code == 200
    assert idp.hits == before
    assert idp.hits["discovery"] == 1


def test_no_token_is_a_plain_challenge(server: Any) -> None:
    assert_refused(get_me(server, None), challenge="Bearer")


# --- every refusal -------------------------------------------------------------------------------

ATTACKER = ec.generate_private_key(ec.SECP256R1())


def attacks(idp: LocalIssuer, attacker_jwks_url: str) -> dict[str, str]:
    _, private = idp.keys[idp.kid]
    public = private.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk = json.dumps({**public_jwk(public), "kid": idp.kid}).encode()
    good = idp.token()
    head, payload, sig = good.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    odd = alphabet[alphabet.index(sig[-1]) ^ 1]  # same bytes, a spare bit set (86 characters)
    now = int(time.time())
    claims = idp.claims()
    return {
        "alg none": forge.token({"alg": "none", "kid": idp.kid}, claims),
        "alg NONE, empty signature": forge.token({"alg": "NONE", "typ": "JWT"}, claims),
        "HS256 keyed with the public PEM": forge.token(
            {"alg": "HS256", "kid": idp.kid}, claims, hmac_secret=pem
        ),
        "HS256 keyed with the public JWK": forge.token(
            {"alg": "HS256", "kid": idp.kid}, claims, hmac_secret=jwk
        ),
        "jku to the attacker's keys": forge.token(
            {"alg": "ES256", "kid": "attacker", "jku": attacker_jwks_url}, claims, key=ATTACKER
        ),
        "embedded jwk (CVE-2018-0114)": forge.token(
            {"alg": "ES256", "jwk": public_jwk(ATTACKER.public_key())}, claims, key=ATTACKER
        ),
        "x5u": idp.token(header={"x5u": attacker_jwks_url}),
        "unknown crit": idp.token(header={"crit": ["exp"], "exp": now}),
        "our kid, attacker's signature": forge.token(
            {"alg": "ES256", "kid": idp.kid}, claims, key=ATTACKER
        ),
        "wrong iss": idp.token(iss=idp.url + "/"),
        "look-alike iss": idp.token(iss=idp.url.replace("127.0.0.1", "127.0.0.1.evil.example")),
        "wrong aud": idp.token(aud="payments-api"),
        "expired": idp.token(iat=now - 3600, exp=now - 60),
        "nbf in the future": idp.token(nbf=now + 300),
        "no exp": idp.token(exp=None),
        "missing sub": idp.token(sub=None),
        "high-S twin": idp.token(high_s=True),
        "spare bits in the signature": f"{head}.{payload}.{sig[:-1]}{odd}",
        "padding": good + "=",
        "tampered payload": f"{head}.{forge.segment({**claims, 'scope': 'admin'})}.{sig}",
        "JWE-shaped": good + ".AAAA.AAAA",
    }


def test_every_refusal_is_a_401_with_the_exact_headers_and_body(
    server: Any, idp: LocalIssuer
) -> None:
    attacker = LocalIssuer()  # the attacker's own key server, which must never be asked
    try:
        for name, token in attacks(idp, f"{attacker.url}/keys").items():
            response = get_me(server, token)
            try:
                assert_refused(response)
            except AssertionError as exc:
                raise AssertionError(f"{name}: {exc}") from None
        assert not attacker.hits
    finally:
        attacker.stop()


def test_a_token_missing_a_scope_is_a_403(server: Any, idp: LocalIssuer) -> None:
    with client(server) as http:
        allowed = http.delete(
            "/api/orders/7", headers={"Authorization": f"Bearer {idp.token(scope='orders:write')}"}
        )
        denied = http.delete(
            "/api/orders/7", headers={"Authorization": f"Bearer {idp.token(scope='orders:read')}"}
        )
    assert allowed.status_code == 204
    assert denied.status_code == 403
    assert denied.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="orders:write"'
    )
    assert denied.json() == {
        "error": "Insufficient scope",
        "requestId": denied.headers["x-request-id"],
    }


# --- the issuer's side ---------------------------------------------------------------------------


def test_a_kid_flood_from_many_addresses_costs_the_issuer_at_most_one_fetch_per_30_s(
    tmp_path: Path,
) -> None:
    idp = LocalIssuer()
    try:
        with serve(idp, tmp_path) as server:
            assert get_me(server, idp.token()).status_code == 200
            assert idp.hits == {"discovery": 1, "jwks": 1}
            forged = [idp.token(header={"kid": f"forged-{i}"}) for i in range(300)]
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(lambda t: get_me(server, t).status_code, forged))
            elapsed = time.monotonic() - started
            assert statuses == [401] * 300
            # The throttle counts from the first fetch: none within 30 s of it.
            assert idp.hits["jwks"] <= 1 + int(elapsed // 30)
            assert idp.hits["discovery"] == 1
            assert get_me(server, idp.token()).status_code == 200
    finally:
        idp.stop()


def test_the_issuer_going_down_keeps_known_keys_working(tmp_path: Path) -> None:
    idp = LocalIssuer()
    try:
        with serve(idp, tmp_path) as server:
            assert get_me(server, idp.token()).status_code == 200
            idp.stop()
            new_kid = idp.rotate()
            assert get_me(server, idp.token(sub="known")).json()["subject"] == "known"
            assert_refused(get_me(server, idp.token(kid=new_kid)))  # unknown until it is back
            idp.start()
            assert get_me(server, idp.token()).status_code == 200
            assert idp.hits == {"discovery": 1, "jwks": 1}  # throttled: not asked again yet
    finally:
        idp.stop()


def test_a_discovery_document_for_another_issuer_is_not_trusted(tmp_path: Path) -> None:
    idp = LocalIssuer()
    idp.discovery_issuer = idp.url + "-other"
    try:
        with serve(idp, tmp_path) as server:
            assert_refused(get_me(server, idp.token()))
            assert idp.hits == {"discovery": 1}  # its jwks_uri was never followed
            assert "names issuer" in server.log()
    finally:
        idp.stop()


def test_a_plain_http_issuer_on_another_host_stops_the_app_at_start(tmp_path: Path) -> None:
    env = {"OIDC_ISSUER": "http://idp.example.com/", "OIDC_AUDIENCE": AUDIENCE}
    with (
        pytest.raises(pytest.fail.Exception) as caught,
        uvicorn_process.running(TARGET, tmp_path, env=env, ready_path="/"),
    ):
        pass
    assert "issuer: must use https://" in str(caught.value)
