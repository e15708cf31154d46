"""The refresh cookie as Chromium treats it: invisible to script, never sent for another site.

*Sites*, not origins: ``SameSite`` compares the site — scheme plus registrable domain, or for
an IP address the address itself — and ignores ports (RFC 6265bis §5.2, schemeful
same-site). With the API at ``https://127.0.0.1:<api>``:

* ``https://127.0.0.1:<p1>`` is another *origin* but the *same site*: the app's own front end,
  which logs in and refreshes through CORS;
* ``https://localhost:<p2>`` is another *site* (``localhost`` is not ``127.0.0.1``): the
  attacker's page. It is even listed in ``BASTION_CORS_ORIGINS`` here, so CORS is not what
  stops it — the cookie's ``SameSite=Strict`` is.

Pages are served over HTTPS: an ``http://`` page would be cross-site by scheme alone.

This Chromium also blocks third-party cookies, so a cross-site ``fetch`` carries no cookie at
all, ``SameSite=None`` ones included: that alone cannot show ``SameSite=Strict`` at work.
Top-level navigations are exempt from third-party-cookie blocking, so the decisive checks
navigate the attacker's tab to the API: a form ``POST`` (what a CSRF page does) and a link
(``GET``, where a ``Lax`` cookie would still be sent). Control cookies with ``SameSite=None``
and ``Lax`` on the same path show what the browser does send, and DevTools reports why it
withheld the refresh cookie.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.pages import FETCH_JS, NetworkLog, PageServer
from tests.conftest import Server, start_server

pytestmark = [pytest.mark.browser, pytest.mark.integration]

EMAIL = "browser-user@example.com"
PASSWORD = "correct horse battery staple 42"
COOKIE_PATH = "/api/v1/auth"
STRICT_REASONS = {"SameSiteStrict", "SchemefulSameSiteStrict"}
SUBMIT_FORM_JS = """
(url) => {
  const form = document.createElement("form");
  form.method = "POST";
  form.action = url;
  document.body.append(form);
  form.submit();
}
"""


class Sites:
    def __init__(self, cert: Path, key: Path) -> None:
        self.same_site = PageServer("127.0.0.1", cert, key)
        self.cross_site = PageServer("localhost", cert, key)

    def close(self) -> None:
        self.same_site.close()
        self.cross_site.close()


# One server per module (each test logs in afresh in its own browser context).
@pytest.fixture(scope="module")
def sites(page_cert: tuple[Path, Path]) -> Iterator[Sites]:
    sites = Sites(*page_cert)
    yield sites
    sites.close()


@pytest.fixture(scope="module")
def api(sites: Sites, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "BASTION_CORS_ORIGINS": f"{sites.same_site.origin},{sites.cross_site.origin}",
        # Room for the refused cross-site attempts below: the failed-auth budget is not
        # what these tests are about.
        "BASTION_AUTH_LIMIT": "100/15m",
    }
    server = start_server(tmp_path_factory.mktemp("cookie-api"), env=env)
    with server.client() as client:
        response = client.post("/api/v1/auth/register", json={"email": EMAIL, "password": PASSWORD})
        assert response.status_code == 202, response.text
    yield server
    server.stop()


def fetch(tab: Any, url: str, **init: Any) -> dict[str, Any]:
    result: dict[str, Any] = tab.evaluate(FETCH_JS, [url, {"credentials": "include", **init}])
    return result


def log_in(context: Any, api: Server, sites: Sites) -> dict[str, Any]:
    """Log in from the app's own (same-site) page, as its front end would."""
    tab = context.new_page()
    tab.goto(sites.same_site.origin + "/")
    result = fetch(
        tab,
        f"{api.url}/api/v1/auth/login",
        method="POST",
        headers={"Content-Type": "application/json"},
        body=json.dumps({"email": EMAIL, "password": PASSWORD}),
    )
    assert result.get("status") == 200, result
    body: dict[str, Any] = json.loads(result["body"])
    return body


def refresh_cookie(context: Any, api: Server) -> dict[str, Any]:
    cookies = [c for c in context.cookies(api.url + COOKIE_PATH) if c["name"] == "refresh_token"]
    assert len(cookies) == 1, context.cookies()
    cookie: dict[str, Any] = cookies[0]
    return cookie


def add_control_cookies(context: Any, **same_site: str) -> None:
    """Readable cookies on the refresh cookie's host and path, one per SameSite value."""
    context.add_cookies(
        [
            {
                "name": name,
                "value": "1",
                "domain": "127.0.0.1",
                "path": COOKIE_PATH,
                "secure": True,
                "httpOnly": False,
                "sameSite": value,
            }
            for name, value in same_site.items()
        ]
    )


def test_refresh_cookie_is_strict_httponly_and_invisible_to_script(
    api: Server, sites: Sites, browser: Any
) -> None:
    context = browser.new_context()
    body = log_in(context, api, sites)

    # The token reaches script only as the access token; the refresh token stays a cookie.
    assert set(body) == {"access_token", "token_type", "expires_in"}
    cookie = refresh_cookie(context, api)
    assert cookie["httpOnly"] is True
    assert cookie["secure"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == COOKIE_PATH

    # A page whose URL the cookie applies to (same host — cookies ignore ports — and a path
    # under /api/v1/auth) sees the readable control cookie but not the refresh token.
    add_control_cookies(context, readable="Strict")
    tab = context.new_page()
    tab.goto(f"{sites.same_site.origin}{COOKIE_PATH}/page")
    visible = tab.evaluate("document.cookie")
    assert "readable=1" in visible
    assert "refresh_token" not in visible
    assert cookie["value"] not in visible


def test_cross_site_page_cannot_make_the_browser_send_the_refresh_cookie(
    api: Server, sites: Sites, browser: Any
) -> None:
    context = browser.new_context()
    log_in(context, api, sites)
    add_control_cookies(context, control_none="None", control_lax="Lax")
    refresh_url = f"{api.url}{COOKIE_PATH}/refresh"

    # Control: from the app's own page the browser sends the cookie and the refresh works.
    own = context.new_page()
    own_log = NetworkLog(context, own)
    own.goto(sites.same_site.origin + "/")
    result = fetch(own, refresh_url, method="POST")
    assert result.get("status") == 200, result
    assert "refresh_token" in own_log.find("POST", refresh_url).sent_cookies()

    attacker = context.new_page()
    log = NetworkLog(context, attacker)
    attacker.goto(sites.cross_site.origin + "/")

    # 1. A credentialed fetch (CORS allows this origin, so the page reads the answer): 401.
    result = fetch(attacker, refresh_url, method="POST")
    assert result.get("status") == 401, result
    assert json.loads(result["body"])["error"] == "Invalid refresh token"
    sent = log.find("POST", refresh_url)
    assert "refresh_token" not in sent.sent_cookies()
    assert STRICT_REASONS & set(sent.blocked_cookies["refresh_token"])

    # 2. A link (top-level GET; no third-party blocking for navigations): the Lax control
    #    goes along, the Strict refresh cookie does not.
    with attacker.expect_navigation():
        attacker.evaluate("(url) => { location.href = url; }", refresh_url)
    sent = log.find("GET", refresh_url)
    assert sent.sent_cookies().get("control_lax") == "1"
    assert "refresh_token" not in sent.sent_cookies()
    assert STRICT_REASONS & set(sent.blocked_cookies["refresh_token"])

    # 3. A top-level form POST, the classic CSRF: only the SameSite=None control is sent.
    attacker.goto(sites.cross_site.origin + "/")
    with attacker.expect_navigation() as navigation:
        attacker.evaluate(SUBMIT_FORM_JS, refresh_url)
    assert navigation.value.status == 401
    sent = log.find("POST", refresh_url, index=1)
    assert sent.sent_cookies().get("control_none") == "1"
    assert "refresh_token" not in sent.sent_cookies()
    assert STRICT_REASONS & set(sent.blocked_cookies["refresh_token"])


@pytest.mark.parametrize("endpoint", ["refresh", "logout"])
def test_cross_site_form_post_cannot_log_the_user_out(
    endpoint: str, api: Server, sites: Sites, browser: Any
) -> None:
    """Forced logout (logout CSRF): SameSite=Strict keeps the cookie off the attacker's POST,
    but a ``Set-Cookie: refresh_token=; Max-Age=0`` in the answer to that top-level
    navigation is applied by the browser. The API must clear only a cookie it was sent."""
    context = browser.new_context()
    log_in(context, api, sites)
    token = refresh_cookie(context, api)["value"]

    attacker = context.new_page()
    attacker.goto(sites.cross_site.origin + "/")
    target = f"{api.url}{COOKIE_PATH}/{endpoint}"
    # Wait for the response, not a navigation: a 204 (logout) ends the navigation without
    # a new document (ERR_ABORTED), though its Set-Cookie would still be applied.
    with attacker.expect_response(target) as answer:
        attacker.evaluate(SUBMIT_FORM_JS, target)
    assert answer.value.status in {401, 204}
    assert answer.value.header_value("set-cookie") is None

    assert refresh_cookie(context, api)["value"] == token, "another site logged the user out"
    own = context.new_page()
    own.goto(sites.same_site.origin + "/")
    result = fetch(own, f"{api.url}{COOKIE_PATH}/refresh", method="POST")
    assert result.get("status") == 200, result


def test_logged_in_page_reads_its_rate_limit_budget(
    api: Server, sites: Sites, browser: Any
) -> None:
    """The front end's authenticated call succeeds through CORS and can read the budget."""
    context = browser.new_context()
    access_token = log_in(context, api, sites)["access_token"]
    tab = context.new_page()
    log = NetworkLog(context, tab)
    tab.goto(sites.same_site.origin + "/")
    url = f"{api.url}/api/v1/me"

    result = fetch(tab, url, headers={"Authorization": f"Bearer {access_token}"})

    assert result.get("status") == 200, result
    assert json.loads(result["body"])["email"] == EMAIL
    network = log.find("GET", url)
    assert result["headers"]["x-ratelimit-remaining"] == network.headers["x-ratelimit-remaining"]
    assert int(result["headers"]["x-ratelimit-remaining"]) < int(
        result["headers"]["x-ratelimit-limit"]
    )
