"""OAuth code + PKCE through a real ``bastion serve`` (TLS, every layer, worker processes).

The mobile app's whole journey with a plain HTTP client (the browser version is in
tests/browser/test_oauth_login.py); code replay racing across two worker processes; the
login page's headers on the wire; no CORS on the authorization endpoint.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bastion.oauth.pkce import s256_challenge
from tests.conftest import Server
from tests.support_auth import GENEROUS_LIMITS, new_email, new_password

pytestmark = pytest.mark.integration

CLIENT_ID = "mobile-app"
REDIRECT_URI = "com.example.mobile:/oauth/callback"
ALLOWED_ORIGIN = "https://spa.example.test"
ServeFactory = Callable[..., Server]


def oauth_env(**extra: str) -> dict[str, str]:
    clients = [{"client_id": CLIENT_ID, "redirect_uris": [REDIRECT_URI]}]
    return {**GENEROUS_LIMITS, "BASTION_OAUTH_CLIENTS": json.dumps(clients), **extra}


def register(client: httpx.Client) -> tuple[str, str]:
    email, password = new_email(), new_password()
    response = client.post("/api/v1/auth/register", json={"email": email, "password": password})
    assert response.status_code == 202
    return email, password


def authorize_code(
    server: Server, client: httpx.Client, email: str, password: str
) -> tuple[str, str]:
    """Open the form, sign in, return (code, verifier)."""
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "code_challenge": s256_challenge(verifier),
        "code_challenge_method": "S256",
        "state": "s-" + secrets.token_hex(4),
    }
    form = client.get("/oauth/authorize", params=params)
    assert form.status_code == 200, form.text
    fields = dict(re.findall(r'<input type=hidden name="([^"]+)" value="([^"]*)">', form.text))
    signed_in = client.post(
        "/oauth/authorize",
        data={**fields, "email": email, "password": password},
        headers={"origin": server.url},
    )
    assert signed_in.status_code == 303, signed_in.text
    location = signed_in.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [params["state"]]
    return query["code"][0], verifier


def token_form(code: str, verifier: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID,
        "code_verifier": verifier,
    }


def test_mobile_app_journey(serve: ServeFactory) -> None:
    server = serve(env=oauth_env(BASTION_CORS_ORIGINS=ALLOWED_ORIGIN))
    with server.client() as client:
        email, password = register(client)
        code, verifier = authorize_code(server, client, email, password)
        tokens = client.post("/oauth/token", data=token_form(code, verifier))
        assert tokens.status_code == 200, tokens.text
        assert tokens.headers["cache-control"] == "no-store"
        body = tokens.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 900
        me = client.get("/api/v1/me", headers={"authorization": f"Bearer {body['access_token']}"})
        assert me.status_code == 200 and me.json()["email"] == email

        # The refresh grant rotates; the old token is then reuse.
        refreshed = client.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": body["refresh_token"],
                "client_id": CLIENT_ID,
            },
        )
        assert refreshed.status_code == 200
        reuse = client.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": body["refresh_token"],
                "client_id": CLIENT_ID,
            },
        )
        assert reuse.status_code == 400
        assert reuse.json() == {
            "error": "invalid_grant",
            "error_description": "Invalid refresh token",
            "requestId": reuse.headers["x-request-id"],
        }

        # The page on the wire: its own CSP, never framed, never CORS.
        page = client.get(
            "/oauth/authorize",
            params={"client_id": CLIENT_ID, "redirect_uri": "https://evil.example/"},
            headers={"origin": ALLOWED_ORIGIN},
        )
        assert page.status_code == 400 and "location" not in page.headers
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        assert not [h for h in page.headers if h.lower().startswith("access-control-")]


def test_code_replay_across_worker_processes(serve: ServeFactory) -> None:
    """Ten exchanges of one code race over two worker processes sharing one database: at
    most one gets tokens, and no refresh token handed out survives."""
    server = serve(env=oauth_env(), args=["--workers", "2"])
    with server.client() as client:
        email, password = register(client)
        code, verifier = authorize_code(server, client, email, password)

    async def race() -> list[httpx.Response]:
        limits = httpx.Limits(max_keepalive_connections=0)  # fresh connections: both workers
        async with server.async_client(limits=limits) as aclient:
            return await asyncio.gather(
                *(aclient.post("/oauth/token", data=token_form(code, verifier)) for _ in range(10))
            )

    responses = asyncio.run(race())
    ok = [r for r in responses if r.status_code == 200]
    assert len(ok) <= 1
    assert all(r.json()["error"] == "invalid_grant" for r in responses if r.status_code != 200)
    with server.client() as client:
        for response in ok:
            again = client.post(
                "/oauth/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": response.json()["refresh_token"],
                    "client_id": CLIENT_ID,
                },
            )
            assert again.status_code == 400


def test_logout_ends_the_oauth_login_session(serve: ServeFactory) -> None:
    """Issue 13: the 8-hour login session used to keep issuing codes silently after logout."""
    server = serve(env=oauth_env())
    with server.client() as client:
        email, password = register(client)
        authorize_code(server, client, email, password)  # signs in: the session cookie is set
        params = {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "code_challenge": s256_challenge(secrets.token_urlsafe(48)),
            "code_challenge_method": "S256",
            "state": "silent",
        }
        silent = client.get("/oauth/authorize", params=params)
        assert silent.status_code == 302 and "code=" in silent.headers["location"]
        api = client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert api.status_code == 200
        assert client.post("/api/v1/auth/logout").status_code == 204  # the jar's cookie
        after = client.get("/oauth/authorize", params=params)
        assert after.status_code == 200 and "location" not in after.headers  # the form again
        assert "Sign in" in after.text
