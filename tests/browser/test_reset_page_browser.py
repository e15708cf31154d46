"""The password-reset page in headless Chromium against a real ``bastion serve``.

The user's path: the link from the mail (the outbox), the form, a refused password with a
readable reason, a good one, then a login with it. Chromium enforces the page's CSP (the
external stylesheet under ``style-src 'self'``, ``form-action 'self'``, no inline anything):
a policy that broke the page, or a violation report in the console, fails here. Attacks from
a foreign page: a cross-site form POST with a token, and framing the form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser.pages import PageServer
from tests.conftest import Server, start_server
from tests.support import wait_until
from tests.support_auth import GENEROUS_LIMITS, new_email, new_password

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("reset-page"), env=GENEROUS_LIMITS)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def attacker_page(page_cert: tuple[Path, Path]) -> Iterator[PageServer]:
    server = PageServer("localhost", *page_cert)
    yield server
    server.close()


def mailed_link(api: Server, email: str) -> str:
    """Ask for a reset and return the link of the mail, pointed at this test's server."""
    outbox = api.data_dir / "outbox.jsonl"
    with api.client() as client:
        response = client.post("/api/v1/password-reset", json={"email": email})
        assert response.status_code == 202

    def mail() -> str | None:
        if not outbox.exists():
            return None
        for line in reversed(outbox.read_text().splitlines()):
            record = json.loads(line)
            if record["to"] == email:
                return str(record["text"])
        return None

    text = wait_until(mail, what="the reset mail")
    match = re.search(r"^(https://\S+/password-reset\?token=[A-Za-z0-9_-]+)$", str(text), re.M)
    assert match is not None, text
    link = urlsplit(match.group(1))
    assert link.path == "/password-reset"
    return f"{api.url}{link.path}?{link.query}"  # the issuer is https://localhost:8443


def account(api: Server) -> tuple[str, str]:
    email, password = new_email(), new_password()
    with api.client() as client:
        response = client.post("/api/v1/auth/register", json={"email": email, "password": password})
        assert response.status_code == 202
    return email, password


def login_status(api: Server, email: str, password: str) -> int:
    with api.client() as client:
        return client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        ).status_code


def console_log(tab: Any) -> list[str]:
    messages: list[str] = []
    tab.on("console", lambda message: messages.append(message.text))
    return messages


def test_reset_from_the_mailed_link(browser: Any, api: Server) -> None:
    email, old_password = account(api)
    link = mailed_link(api, email)
    context = browser.new_context()
    try:
        tab = context.new_page()
        console = console_log(tab)
        stylesheet: list[int] = []
        tab.on(
            "response",
            lambda r: stylesheet.append(r.status) if r.url.endswith("/style.css") else None,
        )
        tab.goto(link)
        assert tab.title() == "Choose a new password"
        # The external stylesheet loaded under style-src 'self' and applied.
        background = tab.eval_on_selector("main", "e => getComputedStyle(e).backgroundColor")
        assert background == "rgb(255, 255, 255)" and stylesheet == [200]

        # A common password: refused by the server, with a readable reason, form kept.
        tab.fill("#password", "passwordpassword")
        tab.fill("#confirm", "passwordpassword")
        with tab.expect_navigation():
            tab.click("button[type=submit]")
        assert tab.inner_text("ul.error") == "Password is too common"
        assert tab.url == f"{api.url}/password-reset"  # the token is not in the URL any more

        new = new_password()
        tab.fill("#password", new)
        tab.fill("#confirm", new)
        with tab.expect_navigation():
            tab.click("button[type=submit]")
        assert tab.title() == "Password changed"
        assert "Your password has been changed." in tab.inner_text("main")
        assert not [m for m in console if "Content Security Policy" in m], console
        assert not context.cookies(api.url)  # the page sets no cookie at all
    finally:
        context.close()
    assert login_status(api, email, new) == 200
    assert login_status(api, email, old_password) == 401


def test_short_password_is_stopped_by_the_browser_too(browser: Any, api: Server) -> None:
    """minlength=15 on the field: Chromium does not submit, the user sees why at once."""
    email, _password = account(api)
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto(mailed_link(api, email))
        tab.fill("#password", "too short")
        tab.fill("#confirm", "too short")
        tab.click("button[type=submit]")
        valid = tab.eval_on_selector("#password", "e => e.validity.tooShort")
        assert valid is True and tab.title() == "Choose a new password"
    finally:
        context.close()


def test_cross_site_post_with_a_token_is_refused(
    browser: Any, api: Server, attacker_page: PageServer
) -> None:
    """A foreign page auto-submits the form (with a live token it somehow has): Chromium labels
    the POST cross-site and the server refuses it; the password stays."""
    email, password = account(api)
    token = urlsplit(mailed_link(api, email)).query.removeprefix("token=")
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto(attacker_page.origin + "/")
        values = {
            "token": token,
            "password": "chosen by the attacker!",
            "confirm": "chosen by the attacker!",
        }
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
                [f"{api.url}/password-reset", values],
            )
        assert "This form was sent from another site." in tab.content()
    finally:
        context.close()
    assert login_status(api, email, password) == 200


def test_reset_page_cannot_be_framed(browser: Any, api: Server, attacker_page: PageServer) -> None:
    email, _password = account(api)
    link = mailed_link(api, email)
    context = browser.new_context()
    try:
        tab = context.new_page()
        console = console_log(tab)
        tab.goto(attacker_page.origin + "/")
        tab.evaluate(
            """url => new Promise(resolve => {
                const f = document.createElement('iframe');
                f.onload = () => resolve(true);
                f.src = url;
                document.body.appendChild(f);
            })""",
            link,
        )
        assert len(tab.frames) == 2
        assert tab.frames[1].query_selector("#password") is None
        assert any("frame-ancestors 'none'" in m for m in console), console
    finally:
        context.close()
