"""/oauth/authorize and /oauth/token over HTTP, in-process, through every bastion layer.

From the attacker's side: open redirects, login CSRF (no token, wrong token, foreign Origin,
cross-site fetch metadata), framing, CORS on the authorization endpoint, JSON bodies on the
form endpoints; and the exact headers of each answer.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.oauth import page as oauth_page
from tests.oauth.flow import (
    BASE_URL,
    CLIENT_ID,
    REDIRECT_URI,
    App,
    Pkce,
    authorize_params,
    build_app,
    client_for,
    hidden_fields,
    new_pkce,
    oauth_settings,
    query_of,
    running,
)
from tests.support_auth import create_account, new_password

ALLOWED_ORIGIN = "https://spa.example.test"
FORM = {"content-type": "application/x-www-form-urlencoded"}
SAME_ORIGIN = {**FORM, "origin": BASE_URL, "sec-fetch-site": "same-origin"}
SESSION_COOKIE_RE = (
    r"^__Host-bastion_oauth=[A-Za-z0-9_-]{43}; Secure; HttpOnly; SameSite=Lax; Path=/; "
    r"Max-Age=28800$"
)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    async with running(build_app(oauth_settings(tmp_path, cors_origins=(ALLOWED_ORIGIN,)))) as a:
        yield a


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c


async def account(app: App) -> tuple[str, str]:
    password = new_password()
    created = await create_account(app.app, password=password)
    return created.email, password


async def open_form(
    client: httpx.AsyncClient, pkce: Pkce, **overrides: str | None
) -> dict[str, str]:
    response = await client.get("/oauth/authorize", params=authorize_params(pkce, **overrides))
    assert response.status_code == 200, response.text
    return hidden_fields(response.text)


async def sign_in(
    client: httpx.AsyncClient, fields: dict[str, str], email: str, password: str, **headers: str
) -> httpx.Response:
    return await client.post(
        "/oauth/authorize",
        data={**fields, "email": email, "password": password},
        headers={**SAME_ORIGIN, **headers},
    )


async def exchange(client: httpx.AsyncClient, pkce: Pkce, code: str) -> httpx.Response:
    return await client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
            "code_verifier": pkce.verifier,
        },
    )


def no_cors(response: httpx.Response) -> bool:
    return not any(name.lower().startswith("access-control-") for name in response.headers)


# --- the login page ------------------------------------------------------------------------


async def test_form_page_headers(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/oauth/authorize", params=authorize_params(new_pkce()), headers={"origin": ALLOWED_ORIGIN}
    )
    assert response.status_code == 200
    headers = response.headers
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers.get_list("content-security-policy") == [
        f"default-src 'none'; style-src {oauth_page.STYLE_SOURCE}; "
        "form-action 'self' https://app.example.test; base-uri 'none'; frame-ancestors 'none'"
    ]
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"
    assert headers["pragma"] == "no-cache"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert no_cors(response)  # RFC 9700 §2.6, even for a configured origin
    (cookie,) = headers.get_list("set-cookie")
    token = hidden_fields(response.text)["csrf_token"]
    assert cookie == oauth_page.csrf_cookie_header(token)


async def test_authorize_preflight_is_not_answered_as_cors(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/oauth/authorize",
        headers={"origin": ALLOWED_ORIGIN, "access-control-request-method": "POST"},
    )
    assert response.status_code == 405
    assert no_cors(response)


async def test_form_reuses_the_browsers_csrf_token(client: httpx.AsyncClient) -> None:
    pkce = new_pkce()
    first = await open_form(client, pkce)
    second = await open_form(client, pkce)
    assert first["csrf_token"] == second["csrf_token"]  # two tabs keep working


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": "unknown"},
        {"redirect_uri": "https://evil.example/callback"},
        {"redirect_uri": REDIRECT_URI + ".evil.example"},
        {"redirect_uri": REDIRECT_URI + "/../../evil"},
        {"redirect_uri": REDIRECT_URI + "?next=https://evil.example"},
        {"redirect_uri": "//evil.example/callback"},
        {"redirect_uri": "javascript:alert(1)"},
        {"redirect_uri": None},
        {"client_id": "unknown", "code_challenge_method": "plain"},
    ],
    ids=[
        "unknown-client",
        "foreign-host",
        "host-suffix",
        "dot-segments",
        "next-param",
        "scheme-relative",
        "javascript",
        "missing",
        "bad-client-and-pkce",
    ],
)
async def test_no_open_redirect(
    client: httpx.AsyncClient, overrides: dict[str, str | None]
) -> None:
    response = await client.get(
        "/oauth/authorize", params=authorize_params(new_pkce(), **overrides)
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == (
        f"default-src 'none'; style-src {oauth_page.STYLE_SOURCE}; form-action 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    )
    assert "evil" not in response.text


async def test_pkce_errors_redirect_to_the_client(client: httpx.AsyncClient) -> None:
    for method in ("plain", None):
        response = await client.get(
            "/oauth/authorize",
            params=authorize_params(new_pkce(), code_challenge_method=method),
        )
        assert response.status_code == 302
        location = response.headers["location"]
        assert location.startswith(REDIRECT_URI + "?")
        assert query_of(location)["error"] == ["invalid_request"]
        assert query_of(location)["state"] == ["af0ifjsldkj"]


# --- signing in ----------------------------------------------------------------------------


async def test_full_flow_and_silent_second_authorize(app: App, client: httpx.AsyncClient) -> None:
    email, password = await account(app)
    pkce = new_pkce()
    fields = await open_form(client, pkce)
    response = await sign_in(client, fields, email, password)
    assert response.status_code == 303  # RFC 9700 §4.12: never 307 after credentials
    location = response.headers["location"]
    query = query_of(location)
    assert location.startswith(REDIRECT_URI + "?")
    assert set(query) == {"code", "state"} and query["state"] == ["af0ifjsldkj"]
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 1
    assert re.fullmatch(SESSION_COOKIE_RE, cookies[0])

    tokens = await exchange(client, pkce, query["code"][0])
    assert tokens.status_code == 200, tokens.text
    assert tokens.headers["cache-control"] == "no-store"
    assert tokens.headers["pragma"] == "no-cache"
    body = tokens.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    me = await client.get("/api/v1/me", headers={"authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.json()["email"] == email

    # The browser session: a second authorize needs no password.
    pkce2 = new_pkce()
    again = await client.get("/oauth/authorize", params=authorize_params(pkce2, state="second"))
    assert again.status_code == 302
    second = query_of(again.headers["location"])
    assert second["state"] == ["second"]
    assert (await exchange(client, pkce2, second["code"][0])).status_code == 200


async def test_missing_state_stays_missing(app: App, client: httpx.AsyncClient) -> None:
    email, password = await account(app)
    pkce = new_pkce()
    fields = await open_form(client, pkce, state=None)
    assert "state" not in fields
    response = await sign_in(client, fields, email, password)
    assert response.status_code == 303
    assert set(query_of(response.headers["location"])) == {"code"}


async def test_wrong_password_and_unknown_email_look_the_same(
    app: App, client: httpx.AsyncClient
) -> None:
    email, password = await account(app)
    fields = await open_form(client, new_pkce())
    wrong = await sign_in(client, fields, email, password + "!")
    unknown = await sign_in(client, fields, "nobody@example.test", password)
    for response in (wrong, unknown):
        assert response.status_code == 400
        assert "location" not in response.headers
        assert "Invalid email or password" in response.text
        assert not any("bastion_oauth" in c for c in response.headers.get_list("set-cookie"))
    assert wrong.text.replace(email, "E") == unknown.text.replace("nobody@example.test", "E")


async def test_password_is_never_echoed(app: App, client: httpx.AsyncClient) -> None:
    email, password = await account(app)
    fields = await open_form(client, new_pkce())
    response = await sign_in(client, fields, email, password + "!")
    assert password not in response.text


# --- CSRF on the login form ------------------------------------------------------------------


async def test_login_csrf_without_the_cookie(app: App, client: httpx.AsyncClient) -> None:
    """The attacker's page posts its own credentials (login CSRF): the victim's browser has
    no CSRF cookie for this form, or a different token."""
    email, password = await account(app)
    fields = await open_form(client, new_pkce())
    client.cookies.clear()
    response = await sign_in(client, fields, email, password)
    assert response.status_code == 403
    assert "location" not in response.headers
    assert "This sign-in form expired. Please sign in again." in response.text
    assert all("bastion_oauth" not in c for c in response.headers.get_list("set-cookie"))


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null", "sec-fetch-site": "cross-site"},
        {"origin": "http://testserver"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ],
    ids=["foreign-origin", "null-cross-site", "downgraded-origin", "cross-site", "same-site"],
)
async def test_login_csrf_from_another_site(
    app: App, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    email, password = await account(app)
    fields = await open_form(client, new_pkce())
    response = await sign_in(client, fields, email, password, **headers)
    assert response.status_code == 403
    assert "location" not in response.headers
    assert "This sign-in request came from another site." in response.text
    assert "set-cookie" not in response.headers  # the victim's own form keeps its token


async def test_null_origin_from_our_own_page_signs_in(app: App, client: httpx.AsyncClient) -> None:
    """Chromium sends ``Origin: null`` for a POST from a page under ``Referrer-Policy:
    no-referrer`` (ours): with same-origin fetch metadata and the token it is accepted."""
    email, password = await account(app)
    fields = await open_form(client, new_pkce())
    response = await sign_in(client, fields, email, password, origin="null")
    assert response.status_code == 303


@pytest.mark.parametrize("token", ["", "x", "A" * 43], ids=["empty", "short", "other"])
async def test_login_csrf_wrong_token(app: App, client: httpx.AsyncClient, token: str) -> None:
    email, password = await account(app)
    fields = await open_form(client, new_pkce())
    response = await sign_in(client, {**fields, "csrf_token": token}, email, password)
    assert response.status_code == 403
    # A fresh token for the retry, replacing the browser's.
    new_token = hidden_fields(response.text)["csrf_token"]
    assert new_token != fields["csrf_token"]
    assert response.headers["set-cookie"] == oauth_page.csrf_cookie_header(new_token)


async def test_login_form_refuses_json(app: App, client: httpx.AsyncClient) -> None:
    email, password = await account(app)
    fields = await open_form(client, new_pkce())
    response = await client.post(
        "/oauth/authorize",
        json={**fields, "email": email, "password": password},
        headers={"origin": BASE_URL},
    )
    assert response.status_code == 415
    assert "location" not in response.headers


async def test_login_form_with_tampered_redirect_is_refused(
    app: App, client: httpx.AsyncClient
) -> None:
    email, password = await account(app)
    fields = await open_form(client, new_pkce())
    fields["redirect_uri"] = "https://evil.example/callback"
    response = await sign_in(client, fields, email, password)
    assert response.status_code == 400
    assert "location" not in response.headers


# --- token endpoint ------------------------------------------------------------------------


async def test_token_errors_are_rfc6749_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": "A" * 43,
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
            "code_verifier": new_pkce().verifier,
        },
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid authorization code",
        "requestId": response.headers["x-request-id"],
    }


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {"grant_type": "refresh_token"}}, 415),
        ({"content": b"grant_type=refresh_token", "headers": {"content-type": "text/plain"}}, 415),
        ({"content": b"a=" + b"x" * 20000, "headers": FORM}, 413),
        ({"content": b"grant_type=\xff", "headers": FORM}, 400),
        ({"content": b"&".join(b"p%d=1" % i for i in range(40)), "headers": FORM}, 400),
    ],
    ids=["json", "text-plain", "too-large", "not-utf8", "too-many-fields"],
)
async def test_token_endpoint_takes_only_small_forms(
    client: httpx.AsyncClient, kwargs: dict[str, Any], status: int
) -> None:
    response = await client.post("/oauth/token", **kwargs)
    assert response.status_code == status
    assert response.json()["error"] == "invalid_request"


async def test_unsupported_grant_type(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/oauth/token",
        data={"grant_type": "password", "client_id": CLIENT_ID, "username": "a", "password": "b"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


async def test_refresh_grant_returns_the_rotated_token_in_the_body(
    app: App, client: httpx.AsyncClient
) -> None:
    email, password = await account(app)
    pkce = new_pkce()
    fields = await open_form(client, pkce)
    code = query_of((await sign_in(client, fields, email, password)).headers["location"])["code"][0]
    first = (await exchange(client, pkce, code)).json()
    refreshed = await client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": CLIENT_ID,
        },
    )
    assert refreshed.status_code == 200
    body = refreshed.json()
    assert body["refresh_token"] != first["refresh_token"]
    assert "set-cookie" not in refreshed.headers  # a mobile app has no cookie jar
    reuse = await client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": CLIENT_ID,
        },
    )
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"


async def test_code_replay_over_http(app: App, client: httpx.AsyncClient) -> None:
    email, password = await account(app)
    pkce = new_pkce()
    fields = await open_form(client, pkce)
    code = query_of((await sign_in(client, fields, email, password)).headers["location"])["code"][0]
    first = await exchange(client, pkce, code)
    assert first.status_code == 200
    second = await exchange(client, pkce, code)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    refreshed = await client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first.json()["refresh_token"],
            "client_id": CLIENT_ID,
        },
    )
    assert refreshed.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/oauth/token", "POST"),
        ("PUT", "/oauth/authorize", "GET, HEAD, POST"),
        ("DELETE", "/oauth/token", "POST"),
    ],
)
async def test_other_methods_are_405(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow


# --- the strict auth budget ------------------------------------------------------------------


async def test_oauth_failures_share_the_login_budget(tmp_path: Path) -> None:
    """3 failures spread over /api/v1/auth/login, the OAuth form and /oauth/token spend one
    budget of 3; then the form POST is 429 even with the right password (no oracle), while
    GET /oauth/authorize still shows the form."""
    settings = oauth_settings(tmp_path, auth_limit="3/15m")
    async with running(build_app(settings)) as target, client_for(target) as client:
        email, password = await account(target)
        pkce = new_pkce()
        fields = await open_form(client, pkce)
        # A successful sign-in and exchange are not failures: they cost nothing.
        signed_in = await sign_in(client, fields, email, password)
        code = query_of(signed_in.headers["location"])["code"][0]
        assert (await exchange(client, pkce, code)).status_code == 200
        client.cookies.delete("__Host-bastion_oauth")

        login = await client.post("/api/v1/auth/login", json={"email": email, "password": "x"})
        assert login.status_code == 401
        assert (await sign_in(client, fields, email, password + "!")).status_code == 400
        assert (await exchange(client, pkce, code)).status_code == 400  # a replay
        limited = await sign_in(client, fields, email, password)
        assert limited.status_code == 429
        assert limited.json()["error"] == "Too many authentication attempts"
        assert "location" not in limited.headers
        token = await exchange(client, new_pkce(), "A" * 43)
        assert token.status_code == 429
        assert (
            await client.get("/oauth/authorize", params=authorize_params(pkce))
        ).status_code == 200


async def test_oversized_credentials_are_refused_like_wrong_ones(
    app: App, client: httpx.AsyncClient
) -> None:
    email, password = await account(app)
    fields = await open_form(client, new_pkce())
    for bad_email, bad_password in ((email, "p" * 1025), ("e" * 255, password)):
        response = await sign_in(client, fields, bad_email, bad_password)
        assert response.status_code == 400
        assert "Invalid email or password" in response.text
        assert "location" not in response.headers
