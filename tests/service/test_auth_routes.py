"""The auth endpoints over HTTP (in-process): register, login, refresh, logout, password reset.

Asserts the contract's exact statuses, bodies and headers; the refresh cookie's attributes
are parsed, not pattern-matched; and the attacker's views of a known and an unknown email
are compared byte for byte.
"""

from __future__ import annotations

import json
import logging
import re
import stat
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support_auth import app_client, auth_app, create_account

PASSWORD = "correct horse battery staple"
REGISTER, LOGIN = "/api/v1/auth/register", "/api/v1/auth/login"
REFRESH, LOGOUT = "/api/v1/auth/refresh", "/api/v1/auth/logout"
RESET, CONFIRM = "/api/v1/password-reset", "/api/v1/password-reset/confirm"


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return auth_app(tmp_path)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as c:
        yield c


async def register(client: httpx.AsyncClient, email: str = "ada@example.com") -> None:
    response = await client.post(REGISTER, json={"email": email, "password": PASSWORD})
    assert response.status_code == 202, response.text


async def login(
    client: httpx.AsyncClient, email: str = "ada@example.com", password: str = PASSWORD
) -> httpx.Response:
    return await client.post(LOGIN, json={"email": email, "password": password})


def cookie_attributes(response: httpx.Response) -> dict[str, Any]:
    """The refresh cookie, parsed: value and attributes (lower-case names)."""
    (header,) = [v for v in response.headers.get_list("set-cookie") if "refresh_token" in v]
    jar: SimpleCookie = SimpleCookie()
    jar.load(header)
    morsel = jar["refresh_token"]
    flags = {part.strip().lower() for part in header.split(";")[1:] if "=" not in part}
    return {
        "value": morsel.value,
        "httponly": "httponly" in flags,
        "secure": "secure" in flags,
        "samesite": morsel["samesite"],
        "path": morsel["path"],
        "max-age": morsel["max-age"],
        "raw": header,
    }


def only_cookie(client: httpx.AsyncClient, token: str) -> dict[str, str]:
    """Present exactly this refresh token (as a stolen copy would be), nothing from the jar."""
    client.cookies.clear()
    return {"Cookie": f"refresh_token={token}"}


def comparable(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = sorted((k, v) for k, v in response.headers.multi_items() if k != "date")
    return response.status_code, response.content, headers


# --- register --------------------------------------------------------------------------------


async def test_register_answers_202_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post(REGISTER, json={"email": "ada@example.com", "password": PASSWORD})
    assert response.status_code == 202
    assert response.json() == {"status": "accepted"}


async def test_register_answers_identically_for_a_taken_email(client: httpx.AsyncClient) -> None:
    new = await client.post(REGISTER, json={"email": "ada@example.com", "password": PASSWORD})
    taken = await client.post(
        REGISTER, json={"email": "ADA@Example.com", "password": "a different passphrase"}
    )
    assert comparable(new) == comparable(taken)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("too short", "String should have at least 15 characters"),
        ("x" * 129, "String should have at most 128 characters"),
        ("123456789987654321", "Password is too common"),
        ("aaaaaaaaaaaaaaaaaaaa", "Password must not be a short sequence repeated"),
        ("ada.lovelace rocks forever", "Password must not contain your email address"),
    ],
)
async def test_register_refuses_weak_passwords_without_echoing_them(
    client: httpx.AsyncClient, password: str, message: str
) -> None:
    response = await client.post(
        REGISTER, json={"email": "ada.lovelace@example.com", "password": password}
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Invalid request body"
    assert message in body["details"]["password"]
    assert password not in response.text


@pytest.mark.parametrize(
    "body",
    [
        {"email": "ada@example.com"},
        {"email": "not-an-email", "password": PASSWORD},
        {"email": "two@@example.com", "password": PASSWORD},
        {"email": "ada @example.com", "password": PASSWORD},
        {"email": "ada@example.com", "password": 123456789012345678},
        {"email": ["ada@example.com"], "password": PASSWORD},
        {"email": "ada@example.com", "password": PASSWORD, "role": "admin"},  # mass assignment
    ],
)
async def test_register_refuses_invalid_bodies(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await client.post(REGISTER, json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "Invalid request body"


async def test_an_invalid_email_is_named_without_echoing_the_internal_pattern(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(REGISTER, json={"email": "two@@example.com", "password": PASSWORD})
    assert response.status_code == 400
    assert response.json()["details"] == {"email": ["Invalid format"]}


async def test_the_email_is_trimmed_and_ascii_folded_before_use(client: httpx.AsyncClient) -> None:
    # Issue 3, narrowed by issue 13: surrounding spaces and ASCII case do not make a second
    # account (a newline is a control character: refused, see test_identity_serve.py).
    await register(client, " Ada@Example.COM  ")
    assert (await login(client, "ada@example.com")).status_code == 200
    again = await client.post(REGISTER, json={"email": "ADA@example.com", "password": PASSWORD})
    assert again.status_code == 202  # identical answer; no second account
    assert (await login(client, "  ada@EXAMPLE.com")).status_code == 200


async def test_a_role_cannot_be_smuggled_in_at_registration(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await client.post(
        REGISTER, json={"email": "ada@example.com", "password": PASSWORD, "role": "admin"}
    )
    assert await app.state.auth.store.find_by_email("ada@example.com") is None


async def test_registration_needs_no_verification_login_works_at_once(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    assert (await login(client)).status_code == 200


# --- login -----------------------------------------------------------------------------------


async def test_login_returns_an_access_token_and_the_refresh_cookie_only(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    response = await login(client, email=" Ada@EXAMPLE.com ")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert response.headers["cache-control"] == "no-store"
    cookie = cookie_attributes(response)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie["value"])
    assert cookie["value"] not in response.text  # never in a JSON body
    assert cookie["httponly"] and cookie["secure"]
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/api/v1/auth"
    assert cookie["max-age"] == "604800"
    assert "domain" not in cookie["raw"].lower()  # host-only


async def test_unknown_email_and_wrong_password_are_indistinguishable(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    unknown = await login(client, email="nobody@example.com")
    wrong = await login(client, password=PASSWORD + "!")
    assert unknown.status_code == 401
    assert unknown.json() == {"error": "Invalid email or password", "requestId": ""}
    assert unknown.headers["www-authenticate"] == "Bearer"
    assert "set-cookie" not in unknown.headers
    assert comparable(unknown) == comparable(wrong)


async def test_login_is_exact_about_the_password(client: httpx.AsyncClient) -> None:
    await register(client)
    for attempt in (PASSWORD.upper(), PASSWORD + " ", " " + PASSWORD, PASSWORD[:-1]):
        assert (await login(client, password=attempt)).status_code == 401


# --- refresh and logout ----------------------------------------------------------------------


async def test_refresh_rotates_the_cookie_and_returns_a_new_access_token(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    first = cookie_attributes(await login(client))
    response = await client.post(REFRESH)
    assert response.status_code == 200
    assert set(response.json()) == {"access_token", "token_type", "expires_in"}
    second = cookie_attributes(response)
    assert second["value"] != first["value"]
    assert second["value"] not in response.text
    assert (second["httponly"], second["secure"], second["samesite"], second["path"]) == (
        True,
        True,
        "Strict",
        "/api/v1/auth",
    )
    me = await client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {response.json()['access_token']}"}
    )
    assert me.status_code == 200


async def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    stolen = cookie_attributes(await login(client))["value"]
    rotated = await client.post(REFRESH)  # the legitimate client rotates
    successor = cookie_attributes(rotated)["value"]
    # the thief replays the old token
    replay = await client.post(REFRESH, headers=only_cookie(client, stolen))
    assert replay.status_code == 401
    assert replay.json() == {"error": "Invalid refresh token", "requestId": ""}
    assert replay.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert cookie_attributes(replay)["max-age"] == "0"
    # ... and the legitimate successor died with it
    client.cookies.clear()
    after = await client.post(REFRESH, headers=only_cookie(client, successor))
    assert after.status_code == 401


async def test_refresh_without_a_cookie_is_401_with_a_plain_challenge(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(REFRESH)
    assert response.status_code == 401
    assert response.json()["error"] == "Invalid refresh token"
    assert response.headers["www-authenticate"] == "Bearer"
    # nothing to clear: a cross-site POST (cookie withheld by SameSite) must not log out
    assert "set-cookie" not in response.headers


async def test_a_refresh_token_in_the_body_or_query_is_not_accepted(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    token = cookie_attributes(await login(client))["value"]
    client.cookies.clear()
    by_query = await client.post(f"{REFRESH}?refresh_token={token}")
    by_body = await client.post(REFRESH, json={"refresh_token": token})
    assert by_query.status_code == by_body.status_code == 401


async def test_logout_revokes_and_clears_the_cookie(client: httpx.AsyncClient) -> None:
    await register(client)
    token = cookie_attributes(await login(client))["value"]
    response = await client.post(LOGOUT)
    assert response.status_code == 204
    assert response.content == b""
    cleared = cookie_attributes(response)
    assert cleared["value"] == "" and cleared["max-age"] == "0"
    assert cleared["path"] == "/api/v1/auth" and cleared["httponly"] and cleared["secure"]
    again = await client.post(REFRESH, headers=only_cookie(client, token))
    assert again.status_code == 401


async def test_logout_without_a_cookie_is_204_and_sets_no_cookie(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(LOGOUT)
    assert response.status_code == 204
    # a forced-logout CSRF (cross-site form POST, cookie withheld) must change nothing
    assert "set-cookie" not in response.headers


# --- password reset --------------------------------------------------------------------------


def outbox(app: FastAPI) -> list[dict[str, str]]:
    path = app.state.settings.data_dir / "outbox.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def reset_token(app: FastAPI) -> str:
    match = re.search(r"\?token=([A-Za-z0-9_-]+)$", outbox(app)[-1]["text"], re.M)
    assert match is not None
    return match.group(1)


async def test_password_reset_answers_alike_for_known_and_unknown_emails(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    known = await client.post(RESET, json={"email": "ada@example.com"})
    unknown = await client.post(RESET, json={"email": "nobody@example.com"})
    assert known.status_code == 202 and known.json() == {"status": "accepted"}
    assert comparable(known) == comparable(unknown)
    mails = outbox(app)
    assert [m["to"] for m in mails] == ["ada@example.com"]
    assert set(mails[0]) == {"to", "subject", "text"}
    path = app.state.settings.data_dir / "outbox.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_password_reset_confirm_sets_the_password_and_revokes_sessions(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    old_refresh = cookie_attributes(await login(client))["value"]
    await client.post(RESET, json={"email": "ada@example.com"})
    token = reset_token(app)
    new_password = "an entirely new passphrase"
    confirmed = await client.post(CONFIRM, json={"token": token, "password": new_password})
    assert confirmed.status_code == 204 and confirmed.content == b""
    assert (await login(client, password=PASSWORD)).status_code == 401
    assert (await login(client, password=new_password)).status_code == 200
    client.cookies.clear()
    revoked = await client.post(REFRESH, headers=only_cookie(client, old_refresh))
    assert revoked.status_code == 401
    reused = await client.post(CONFIRM, json={"token": token, "password": "and another one here"})
    assert reused.status_code == 400
    assert reused.json() == {"error": "Invalid or expired token", "requestId": ""}


@pytest.mark.parametrize("token", ["forged", "A" * 43, "x" * 256, "../../etc/passwd"])
async def test_a_forged_reset_token_is_refused(client: httpx.AsyncClient, token: str) -> None:
    response = await client.post(CONFIRM, json={"token": token, "password": PASSWORD})
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid or expired token", "requestId": ""}


async def test_the_policy_applies_to_the_new_password(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    await client.post(RESET, json={"email": "ada@example.com"})
    response = await client.post(
        CONFIRM, json={"token": reset_token(app), "password": "123456789987654321"}
    )
    assert response.status_code == 400
    assert response.json()["details"] == {"password": ["Password is too common"]}


# --- secrets never reach the logs ------------------------------------------------------------


async def test_no_password_or_token_reaches_the_logs(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await register(client)
    logged_in = await login(client)
    access = logged_in.json()["access_token"]
    refresh = cookie_attributes(logged_in)["value"]
    await client.post(REFRESH)
    await client.post(REFRESH, headers=only_cookie(client, refresh))  # reuse: logged refusal
    await login(client, password="wrong password attempt")
    await client.post(RESET, json={"email": "ada@example.com"})
    token = reset_token(app)
    await client.post(CONFIRM, json={"token": token, "password": "an entirely new passphrase"})
    text = caplog.text
    for secret in (PASSWORD, "wrong password attempt", access, refresh, token):
        assert secret not in text
    assert "RefreshTokenReused" in text  # the refusal is logged, by class name


async def test_account_helper_gives_a_working_login(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await create_account(app, email="grace@example.com", password=PASSWORD)
    response = await login(client, email="grace@example.com")
    assert response.status_code == 200
    assert account.email == "grace@example.com"
