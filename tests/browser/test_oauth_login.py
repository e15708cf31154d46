"""The OAuth login form in a real browser: headless Chromium against a real ``bastion serve``.

The flow a mobile app opens in the system browser: ``/oauth/authorize`` shows the form, the
user signs in, the browser lands on the app's redirect URI (here a loopback page server)
with ``code`` and ``state``; the app exchanges the code with its PKCE verifier and calls
the API. Chromium also enforces the page's CSP (the style hash, ``form-action`` across the
303 to the client, ``frame-ancestors``) and the cookies' attributes — so a CSP that broke
the page, or a cookie the browser refused, fails here. Attacks from a foreign page: login
CSRF (a cross-site form POST) and framing.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from bastion.oauth.pkce import s256_challenge
from tests.browser.pages import PageServer
from tests.conftest import Server, start_server
from tests.support_auth import GENEROUS_LIMITS, new_email, new_password

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CLIENT_ID = "mobile-app"


@pytest.fixture(scope="module")
def app_page(page_cert: tuple[Path, Path]) -> Iterator[PageServer]:
    """The client's redirect target (what the mobile app would intercept)."""
    server = PageServer("127.0.0.1", *page_cert)
    yield server
    server.close()


@pytest.fixture(scope="module")
def attacker_page(page_cert: tuple[Path, Path]) -> Iterator[PageServer]:
    server = PageServer("localhost", *page_cert)
    yield server
    server.close()


@pytest.fixture(scope="module")
def api(app_page: PageServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    clients = [{"client_id": CLIENT_ID, "redirect_uris": [app_page.origin + "/callback"]}]
    env = {**GENEROUS_LIMITS, "BASTION_OAUTH_CLIENTS": json.dumps(clients)}
    server = start_server(tmp_path_factory.mktemp("oauth-api"), env=env)
    yield server
    server.stop()


@pytest.fixture
def account(api: Server) -> tuple[str, str]:
    email, password = new_email(), new_password()
    with api.client() as client:
        response = client.post("/api/v1/auth/register", json={"email": email, "password": password})
        assert response.status_code == 202
    return email, password


class Flow:
    """One authorization request: its verifier, state and URL."""

    def __init__(self, api: Server, redirect_uri: str) -> None:
        self.verifier = secrets.token_urlsafe(32)
        self.state = secrets.token_urlsafe(12)
        self.redirect_uri = redirect_uri
        params = {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": redirect_uri,
            "code_challenge": s256_challenge(self.verifier),
            "code_challenge_method": "S256",
            "state": self.state,
        }
        self.url = f"{api.url}/oauth/authorize?{urlencode(params)}"

    def exchange(self, api: Server, code: str) -> httpx.Response:
        with api.client() as client:
            return client.post(
                "/oauth/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.redirect_uri,
                    "client_id": CLIENT_ID,
                    "code_verifier": self.verifier,
                },
            )


def console_log(tab: Any) -> list[str]:
    messages: list[str] = []
    tab.on("console", lambda message: messages.append(message.text))
    return messages


def test_sign_in_lands_on_the_app_with_code_and_state(
    browser: Any, api: Server, app_page: PageServer, account: tuple[str, str]
) -> None:
    email, password = account
    flow = Flow(api, app_page.origin + "/callback")
    context = browser.new_context()
    try:
        tab = context.new_page()
        console = console_log(tab)
        tab.goto(flow.url)
        assert tab.title() == "Sign in"
        # The inline style applied (its hash is in the page CSP): the card has a background.
        background = tab.eval_on_selector("main", "e => getComputedStyle(e).backgroundColor")
        assert background == "rgb(255, 255, 255)"
        tab.fill("#email", email)
        tab.fill("#password", password)
        with tab.expect_navigation(url=f"{flow.redirect_uri}?*"):
            tab.click("button[type=submit]")
        landed = urlsplit(tab.url)
        query = parse_qs(landed.query)
        assert f"{landed.scheme}://{landed.netloc}{landed.path}" == flow.redirect_uri
        assert set(query) == {"code", "state"}
        assert query["state"] == [flow.state]
        # No CSP violation on the way (style-src hash, form-action across the 303).
        assert not [m for m in console if "Content Security Policy" in m], console

        # The session cookie as the browser stored it.
        (session,) = [c for c in context.cookies(api.url) if c["name"] == "__Host-bastion_oauth"]
        assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Lax"
        assert session["path"] == "/"

        tokens = flow.exchange(api, query["code"][0])
        assert tokens.status_code == 200, tokens.text
        access = tokens.json()["access_token"]
        with api.client() as client:
            me = client.get("/api/v1/me", headers={"authorization": f"Bearer {access}"})
        assert me.status_code == 200 and me.json()["email"] == email

        # A second authorization needs no password: straight back to the app.
        second = Flow(api, flow.redirect_uri)
        tab.goto(second.url)
        assert tab.url.startswith(second.redirect_uri + "?")
        code = parse_qs(urlsplit(tab.url).query)["code"][0]
        assert second.exchange(api, code).status_code == 200
    finally:
        context.close()


def test_login_csrf_from_a_foreign_page(
    browser: Any,
    api: Server,
    app_page: PageServer,
    attacker_page: PageServer,
    account: tuple[str, str],
) -> None:
    """The attacker's page auto-submits a login form with the attacker's credentials (to log
    the victim's app into the attacker's account). It has no CSRF token the victim's browser
    would match, and the browser says the POST is cross-site: no session, no code."""
    email, password = account  # the attacker's own, valid credentials
    flow = Flow(api, app_page.origin + "/callback")
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto(attacker_page.origin + "/")
        fields = dict(parse_qs(urlsplit(flow.url).query))
        values = {name: value[0] for name, value in fields.items()}
        values.update(email=email, password=password, csrf_token="A" * 43)
        with tab.expect_navigation():
            tab.evaluate(
                """([action, values]) => {
                    const form = document.createElement('form');
                    form.method = 'POST';
                    form.action = action;
                    for (const [name, value] of Object.entries(values)) {
                        const input = document.createElement('input');
                        input.type = 'hidden'; input.name = name; input.value = value;
                        form.appendChild(input);
                    }
                    document.body.appendChild(form);
                    form.submit();
                }""",
                [f"{api.url}/oauth/authorize", values],
            )
        assert tab.url == f"{api.url}/oauth/authorize"  # not at the app: no code
        assert "This sign-in request came from another site." in tab.content()
        assert not [c for c in context.cookies(api.url) if c["name"] == "__Host-bastion_oauth"]
    finally:
        context.close()


def test_login_page_cannot_be_framed(
    browser: Any, api: Server, app_page: PageServer, attacker_page: PageServer
) -> None:
    """Clickjacking: a foreign page frames the password form; frame-ancestors 'none' (and
    X-Frame-Options: DENY) make Chromium refuse to render it."""
    flow = Flow(api, app_page.origin + "/callback")
    context = browser.new_context()
    try:
        tab = context.new_page()
        console = console_log(tab)
        tab.goto(attacker_page.origin + "/")
        # Resolves on the iframe's load event, which fires for a refused frame too (it then
        # holds Chromium's error page).
        tab.evaluate(
            """url => new Promise(resolve => {
                const f = document.createElement('iframe');
                f.onload = () => resolve(true);
                f.src = url;
                document.body.appendChild(f);
            })""",
            flow.url,
        )
        assert len(tab.frames) == 2
        frame = tab.frames[1]
        assert frame.query_selector("#password") is None
        assert any("frame-ancestors 'none'" in m for m in console), console
    finally:
        context.close()
