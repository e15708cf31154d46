"""The login page: escaping, its CSP (hash of its one style), CSRF helpers."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from bastion.oauth import page
from bastion.oauth.clients import Client
from bastion.oauth.server import AuthorizationRequest

CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def request(
    state: str | None = "xyz", redirect_uri: str = "https://app.example/cb"
) -> AuthorizationRequest:
    return AuthorizationRequest(Client("mobile", (redirect_uri,)), redirect_uri, CHALLENGE, state)


def test_csp_hash_is_the_hash_of_the_inline_style() -> None:
    html = page.login_page(request(), csrf_token="t" * 43).html.decode()
    (style,) = re.findall(r"<style>(.*?)</style>", html, re.S)
    expected = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{expected}'" == page.STYLE_SOURCE


def test_login_page_csp_exact() -> None:
    result = page.login_page(request(), csrf_token="t" * 43)
    assert result.status == 200
    assert result.csp == (
        f"default-src 'none'; style-src {page.STYLE_SOURCE}; "
        "form-action 'self' https://app.example; base-uri 'none'; frame-ancestors 'none'"
    )


def test_form_action_for_a_private_use_scheme() -> None:
    result = page.login_page(request(redirect_uri="com.example.app:/cb"), csrf_token="t" * 43)
    assert "form-action 'self' com.example.app:;" in result.csp


def test_error_page_allows_no_form() -> None:
    result = page.error_page("Unknown client")
    assert result.status == 400
    assert result.csp == (
        f"default-src 'none'; style-src {page.STYLE_SOURCE}; form-action 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    )
    assert "Unknown client" in result.html.decode()


def test_no_script_and_no_external_asset() -> None:
    html = page.login_page(request(), csrf_token="t" * 43, error="x").html.decode().lower()
    assert "<script" not in html
    assert "src=" not in html
    assert "href=" not in html
    assert "http://" not in html and "//" not in html.replace("https://app.example/cb", "")


@pytest.mark.parametrize(
    "hostile",
    ['"><script>alert(1)</script>', "' onfocus='alert(1)", "</style><img src=x>", "&lt;"],
)
def test_request_values_are_escaped(hostile: str) -> None:
    """Reflected XSS through state or email (the CSP would block it too: belt and braces)."""
    html = page.login_page(request(state=hostile), csrf_token="t" * 43, email=hostile).html
    text = html.decode()
    assert hostile not in text
    escaped = hostile.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = escaped.replace('"', "&quot;").replace("'", "&#x27;")
    assert text.count(escaped) == 2  # the hidden state field and the email value


def test_hidden_fields_carry_the_request_and_the_csrf_token() -> None:
    html = page.login_page(request(), csrf_token="T" * 43).html.decode()
    fields = dict(re.findall(r'<input type=hidden name="([^"]+)" value="([^"]*)">', html))
    assert fields == {
        "response_type": "code",
        "client_id": "mobile",
        "redirect_uri": "https://app.example/cb",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        "state": "xyz",
        "csrf_token": "T" * 43,
    }
    assert '<form method=post action="/oauth/authorize">' in html
    assert "autocomplete=current-password" in html  # password managers welcome (NIST 800-63B)


def test_missing_state_is_not_invented() -> None:
    html = page.login_page(request(state=None), csrf_token="t" * 43).html.decode()
    assert 'name="state"' not in html


def test_csrf_cookie_is_host_prefixed_and_strict() -> None:
    token = page.new_csrf_token()
    assert page.valid_csrf_token(token)
    assert page.csrf_cookie_header(token) == (
        f"__Host-bastion_csrf={token}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=3600"
    )


def test_csrf_matches_only_equal_well_formed_tokens() -> None:
    token = page.new_csrf_token()
    assert page.csrf_matches(token, token)
    assert not page.csrf_matches(token, page.new_csrf_token())
    assert not page.csrf_matches(None, token)
    assert not page.csrf_matches(token, None)
    assert not page.csrf_matches("", "")
    assert not page.csrf_matches("a", "a")  # equal but not one of ours


@pytest.mark.parametrize(
    ("origin", "fetch_site", "host", "ok"),
    [
        ("https://id.example", "same-origin", "id.example", True),
        ("https://id.example", None, "id.example:443", True),
        (None, None, "id.example", True),  # older browsers: the token decides
        ("https://evil.example", None, "id.example", False),
        ("https://evil.example", "cross-site", "id.example", False),
        (None, "cross-site", "id.example", False),
        (None, "same-site", "id.example", False),  # a sibling subdomain
        # Origin: null is what Chromium sends from our own page under no-referrer; fetch
        # metadata and the token decide then.
        ("null", "same-origin", "id.example", True),
        ("null", "cross-site", "id.example", False),
        ("http://id.example", None, "id.example", False),  # scheme downgrade
        ("https://id.example:8443", None, "id.example", False),
    ],
)
def test_same_origin(origin: str | None, fetch_site: str | None, host: str, ok: bool) -> None:
    assert page.same_origin(origin, fetch_site, scheme="https", host=host) is ok
