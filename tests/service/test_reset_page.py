"""``/password-reset``: the page the reset mail links to, through every layer of the stack.

In-process (the real service wrapped by ``secure()``), exact statuses and headers: the page's
own CSP survives the headers layer, the form sets the password with the JSON endpoint's rules,
and the attacks — a cross-site POST, a forged or reused token, markup in the token, a flood of
guesses, a token in the log — get nothing. Chromium runs the page in tests/browser.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bastion.auth.passwords import TEST, PasswordHasher
from bastion.config import Settings
from bastion.ratelimit.factory import store_from_settings
from bastion.service.main import create_app, prepare
from bastion.service.routes.reset_page import FORM_CSP, NO_FORM_CSP
from bastion.stack import secure

PAGE = "/password-reset"
EMAIL, PASSWORD = "ada@example.com", "correct horse battery staple"
NEW_PASSWORD = "an entirely new passphrase"
FORM = {"content-type": "application/x-www-form-urlencoded"}
BASE = "https://testserver"


class Service:
    """The secured app, an httpx client on it, and the bare FastAPI app for its state."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app, self.client = app, client

    def outbox(self) -> list[dict[str, str]]:
        path = self.app.state.settings.data_dir / "outbox.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    async def reset_token(self, email: str = EMAIL) -> str:
        before = (
            len(self.outbox())
            if (self.app.state.settings.data_dir / "outbox.jsonl").exists()
            else 0
        )
        response = await self.client.post("/api/v1/password-reset", json={"email": email})
        assert response.status_code == 202
        mails = self.outbox()
        assert len(mails) == before + 1
        match = re.search(r"/password-reset\?token=([A-Za-z0-9_-]+)$", mails[-1]["text"], re.M)
        assert match is not None
        return match.group(1)

    async def login(self, password: str) -> int:
        response = await self.client.post(
            "/api/v1/auth/login", json={"email": EMAIL, "password": password}
        )
        return response.status_code


async def make_service(tmp_path: Path, **settings: Any) -> AsyncIterator[Service]:
    config = Settings(data_dir=tmp_path, **settings)
    store = store_from_settings(config)
    app = create_app(config, ratelimit_store=store, password_hasher=PasswordHasher(TEST))
    await prepare(config)
    transport = httpx.ASGITransport(app=secure(app, settings=config, ratelimit_store=store))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE) as client,
    ):
        registered = await client.post(
            "/api/v1/auth/register", json={"email": EMAIL, "password": PASSWORD}
        )
        assert registered.status_code == 202
        yield Service(app, client)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    async for value in make_service(tmp_path, auth_limit="1000/15m"):
        yield value


def hidden_token(html: str) -> str:
    match = re.search(r'<input type=hidden name=token value="([^"]*)">', html)
    assert match is not None, html
    return match.group(1)


def assert_page_headers(response: httpx.Response, csp: str) -> None:
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers.get_list("content-security-policy") == [csp]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    # no inline script or style anywhere: the CSP would block it, and it must not be needed
    body = response.text.lower()
    assert "<script" not in body and "<style" not in body and " style=" not in body
    assert re.search(r"\son[a-z]+=", body) is None  # no inline event handler either


async def test_the_mailed_link_opens_the_form(service: Service) -> None:
    token = await service.reset_token()
    response = await service.client.get(PAGE, params={"token": token})
    assert response.status_code == 200
    assert_page_headers(response, FORM_CSP)
    assert FORM_CSP == (
        "default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )
    assert hidden_token(response.text) == token
    assert '<form method=post action="/password-reset">' in response.text
    assert '<link rel=stylesheet href="/password-reset/style.css">' in response.text
    assert "minlength=15 maxlength=128" in response.text
    head = await service.client.head(PAGE, params={"token": token})
    assert head.status_code == 200 and head.content == b""


async def test_the_form_sets_the_password_once(service: Service) -> None:
    token = await service.reset_token()
    form = {"token": token, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    done = await service.client.post(PAGE, data=form)
    assert done.status_code == 200, done.text
    assert_page_headers(done, NO_FORM_CSP)
    assert "Your password has been changed." in done.text and "<form" not in done.text
    assert await service.login(PASSWORD) == 401
    assert await service.login(NEW_PASSWORD) == 200
    # single use: the same form again, and the link itself, are refused
    again = await service.client.post(PAGE, data={**form, "password": "yet another long one"})
    assert again.status_code == 400 and "invalid or has expired" in again.text
    link = await service.client.get(PAGE, params={"token": token})
    assert link.status_code == 400 and "<form" not in link.text
    assert await service.login(NEW_PASSWORD) == 200


async def test_refresh_tokens_are_revoked_by_the_form(service: Service) -> None:
    login = await service.client.post(
        "/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}
    )
    refresh_cookie = login.cookies["refresh_token"]
    token = await service.reset_token()
    form = {"token": token, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    assert (await service.client.post(PAGE, data=form)).status_code == 200
    service.client.cookies.clear()
    refused = await service.client.post(
        "/api/v1/auth/refresh", headers={"cookie": f"refresh_token={refresh_cookie}"}
    )
    assert refused.status_code == 401


@pytest.mark.parametrize(
    ("password", "confirm", "message"),
    [
        ("short password", "short password", "Password must be at least 15 characters"),
        ("x" * 129, "x" * 129, "Password must be at most 128 characters"),
        ("passwordpassword", "passwordpassword", "Password is too common"),
        (NEW_PASSWORD, NEW_PASSWORD + "!", "The two passwords are different."),
        ("nul \x00 in this password", "nul \x00 in this password", "must not contain a NUL"),
    ],
)
async def test_a_refused_password_shows_why_and_keeps_the_token(
    service: Service, password: str, confirm: str, message: str
) -> None:
    token = await service.reset_token()
    form = {"token": token, "password": password, "confirm": confirm}
    refused = await service.client.post(PAGE, data=form)
    assert refused.status_code == 400
    assert_page_headers(refused, FORM_CSP)
    assert re.search(r"<ul class=error role=alert><li>[^<]*" + re.escape(message), refused.text)
    assert hidden_token(refused.text) == token  # the user can try again with the same link
    assert password not in refused.text  # never echoed
    assert await service.login(PASSWORD) == 200
    ok = {"token": token, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    assert (await service.client.post(PAGE, data=ok)).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?token=",
        "?token=forged",
        "?token=" + "A" * 43,  # well formed, unknown
        '?token="><script>alert(1)</script>',
        "?token=a&token=b",
    ],
)
async def test_a_bad_link_gets_no_form(service: Service, query: str) -> None:
    response = await service.client.get(PAGE + query)
    assert response.status_code == 400
    assert_page_headers(response, NO_FORM_CSP)
    assert "This reset link is invalid or has expired." in response.text
    assert "<form" not in response.text and "alert(1)" not in response.text


async def test_a_forged_token_in_the_form_changes_nothing(service: Service) -> None:
    for token in ["A" * 43, "../../etc/passwd", "", '"><b>']:
        form = {"token": token, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
        response = await service.client.post(PAGE, data=form)
        assert response.status_code == 400
        assert "This reset link is invalid or has expired." in response.text
    assert await service.login(PASSWORD) == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "https://evil.example"},
        {"origin": "http://testserver"},  # same host, another scheme: another origin
    ],
)
async def test_a_cross_site_post_is_refused(service: Service, headers: dict[str, str]) -> None:
    token = await service.reset_token()
    form = {"token": token, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    response = await service.client.post(PAGE, data=form, headers=headers)
    assert response.status_code == 403
    assert "This form was sent from another site." in response.text
    assert await service.login(PASSWORD) == 200
    # the token was not used up: the real page still works
    same_site = {"sec-fetch-site": "same-origin", "origin": BASE}
    assert (await service.client.post(PAGE, data=form, headers=same_site)).status_code == 200


async def test_malformed_bodies(service: Service) -> None:
    token = await service.reset_token()
    as_json = await service.client.post(
        PAGE, json={"token": token, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    )
    assert as_json.status_code == 415
    huge = await service.client.post(PAGE, content=b"a=" + b"b" * 20_000, headers=FORM)
    assert huge.status_code == 413
    doubled = f"token={token}&password=one+long+password&password=two+long+password&confirm=x"
    twice = await service.client.post(PAGE, content=doubled.encode(), headers=FORM)
    assert twice.status_code == 400 and "could not be read" in twice.text
    latin1 = await service.client.post(PAGE, content=b"token=\xff", headers=FORM)
    assert latin1.status_code == 400
    assert await service.login(PASSWORD) == 200


async def test_stylesheet(service: Service) -> None:
    response = await service.client.get("/password-reset/style.css")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/css; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "main{" in response.text


async def test_methods(service: Service) -> None:
    response = await service.client.put(PAGE, content=b"")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, POST"


async def test_the_token_never_reaches_a_log(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    token = await service.reset_token()
    with caplog.at_level(logging.DEBUG):
        await service.client.get(PAGE, params={"token": token})
        await service.client.post(
            PAGE, data={"token": token, "password": "passwordpassword", "confirm": "x"}
        )
        await service.client.post(
            PAGE, data={"token": token, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
        )
        await service.client.get(PAGE, params={"token": token})
    # every server-side logger (the test's own httpx client logs the URL it requested)
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(record.getMessage() for record in server_side)
    assert '"path":"/password-reset","query":["token"]' in logged
    assert token not in logged and NEW_PASSWORD not in logged


async def test_failed_form_posts_share_the_auth_budget(tmp_path: Path) -> None:
    """Guessing through the page gets no second budget: 5 failures across the JSON confirm
    endpoint and the form, then 429 on both; rendering the page is never counted."""
    async for service in make_service(tmp_path, auth_limit="5/15m"):
        forged = {"token": "A" * 43, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
        for _ in range(3):
            assert (await service.client.post(PAGE, data=forged)).status_code == 400
        for _ in range(2):
            json_confirm = await service.client.post(
                "/api/v1/password-reset/confirm", json={"token": "A" * 43, "password": NEW_PASSWORD}
            )
            assert json_confirm.status_code == 400
        limited = await service.client.post(PAGE, data=forged)
        assert limited.status_code == 429
        assert limited.json()["error"] == "Too many authentication attempts"
        assert "retry-after" in limited.headers
        for _ in range(10):  # the page and its stylesheet still render
            page = await service.client.get(PAGE, params={"token": "A" * 43})
            assert page.status_code == 400 and "ratelimit" not in page.headers
        assert (await service.client.get("/password-reset/style.css")).status_code == 200
