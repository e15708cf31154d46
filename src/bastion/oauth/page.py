"""The login form of ``/oauth/authorize`` and its error page: self-contained HTML, strict CSP.

No script, no external asset: one inline ``<style>`` allowed by its hash. Each page says
exactly what it may do in its own ``Content-Security-Policy``::

    default-src 'none'; style-src 'sha256-…'; form-action 'self' <redirect origin>;
    base-uri 'none'; frame-ancestors 'none'

``form-action`` names the client's redirect origin too: browsers (Chromium) apply it to the
redirects that follow a form POST, and a successful login ends in ``303`` to the client.
``frame-ancestors 'none'`` (and the stack's ``X-Frame-Options: DENY``) stop clickjacking of
the password form.

CSRF on the form POST (login CSRF would log the victim's app into the attacker's account):

* a per-browser token in a ``__Host-`` cookie (``Secure; HttpOnly; SameSite=Strict;
  Path=/``: no sibling subdomain can plant it) that the form repeats in a hidden field; the
  POST must carry both, equal (constant-time compare);
* and, when the browser sends them, ``Sec-Fetch-Site`` must be ``same-origin`` and a
  non-null ``Origin`` must be this server's own origin.

Every value written into the HTML is escaped (``html.escape`` with quotes): ``state`` and
``email`` come from the request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from html import escape

from bastion.oauth.clients import form_action_source
from bastion.oauth.server import AuthorizationRequest

__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "Page",
    "csrf_cookie_header",
    "csrf_matches",
    "error_page",
    "login_page",
    "new_csrf_token",
    "same_origin",
]

CSRF_COOKIE = "__Host-bastion_csrf"
CSRF_FIELD = "csrf_token"
CSRF_TTL = 3600
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")

STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;background:#f4f5f7;color:#1d2330;margin:0}"
    "main{max-width:22rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;"
    "box-shadow:0 1px 4px rgba(0,0,0,.12)}"
    "h1{font-size:1.3rem;margin:0 0 1rem}"
    "label{display:block;margin:.8rem 0 .2rem;font-weight:600}"
    "input{box-sizing:border-box;width:100%;padding:.5rem;font:inherit;border:1px solid #9aa1ad;"
    "border-radius:4px}"
    "button{margin-top:1.2rem;width:100%;padding:.6rem;font:inherit;font-weight:600;"
    "border:0;border-radius:4px;background:#1f5fbf;color:#fff}"
    ".error{background:#fdecea;color:#8a1c12;padding:.6rem;border-radius:4px}"
    ".client{color:#4a5160;font-size:.9rem}"
)
_STYLE_DIGEST = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
STYLE_SOURCE = f"'sha256-{_STYLE_DIGEST}'"  # CSP3 hash-source of the one <style> element


@dataclass(frozen=True, slots=True)
class Page:
    """An HTML page and the CSP it must be served with."""

    status: int
    html: bytes
    csp: str


def _document(title: str, body: str) -> bytes:
    return (
        "<!doctype html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
        '<meta name=viewport content="width=device-width,initial-scale=1">\n'
        '<meta name=referrer content="no-referrer">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    ).encode()


def login_page(
    request: AuthorizationRequest,
    *,
    csrf_token: str,
    error: str | None = None,
    email: str = "",
    status: int = 200,
) -> Page:
    """The sign-in form; its hidden fields carry the authorization request through the POST."""
    hidden = "\n".join(
        f'<input type=hidden name="{escape(name)}" value="{escape(value)}">'
        for name, value in {**request.form_fields(), CSRF_FIELD: csrf_token}.items()
    )
    notice = f"<p class=error role=alert>{escape(error)}</p>\n" if error else ""
    body = (
        "<h1>Sign in</h1>\n"
        f"<p class=client>to continue to <strong>{escape(request.client.client_id)}</strong></p>\n"
        f"{notice}"
        '<form method=post action="/oauth/authorize">\n'
        f"{hidden}\n"
        "<label for=email>Email</label>\n"
        f"<input id=email name=email type=text inputmode=email autocomplete=username "
        f'required maxlength=254 value="{escape(email)}">\n'
        "<label for=password>Password</label>\n"
        "<input id=password name=password type=password autocomplete=current-password "
        "required maxlength=1024>\n"
        "<button type=submit>Sign in</button>\n"
        "</form>"
    )
    csp = (
        f"default-src 'none'; style-src {STYLE_SOURCE}; "
        f"form-action 'self' {form_action_source(request.redirect_uri)}; "
        "base-uri 'none'; frame-ancestors 'none'"
    )
    return Page(status, _document("Sign in", body), csp)


def error_page(description: str, *, status: int = 400) -> Page:
    """A request that cannot go back to a client (unknown client, unregistered redirect URI)."""
    body = (
        "<h1>This sign-in request cannot be completed</h1>\n"
        f"<p class=error role=alert>{escape(description)}</p>\n"
        "<p>Return to the application and start again.</p>"
    )
    csp = (
        f"default-src 'none'; style-src {STYLE_SOURCE}; form-action 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    )
    return Page(status, _document("Sign-in error", body), csp)


# --- CSRF ----------------------------------------------------------------------------------


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def valid_csrf_token(token: str | None) -> bool:
    return token is not None and _TOKEN_SHAPE.fullmatch(token) is not None


def csrf_cookie_header(token: str) -> str:
    return f"{CSRF_COOKIE}={token}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={CSRF_TTL}"


def csrf_matches(cookie: str | None, field: str | None) -> bool:
    """True when the form field repeats the cookie's token (both well formed)."""
    if cookie is None or field is None:
        return False
    if not valid_csrf_token(cookie) or not valid_csrf_token(field):
        return False
    return hmac.compare_digest(cookie.encode(), field.encode())


def same_origin(origin: str | None, fetch_site: str | None, *, scheme: str, host: str) -> bool:
    """False when the browser says the POST came from elsewhere (Origin / Sec-Fetch-Site).

    Both headers are optional (older browsers, non-browser clients): their absence is left
    to the CSRF token; their presence must agree with this server. ``Origin: null`` says
    nothing either way: under the stack's ``Referrer-Policy: no-referrer`` Chromium sends
    exactly that for a POST from our own page (Fetch, "serializing a request origin"), and a
    cross-site POST is still told apart by ``Sec-Fetch-Site`` and the token.
    """
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    if origin is None or origin == "null":
        return True
    default_port = {"https": ":443", "http": ":80"}.get(scheme, "")
    if default_port and host.endswith(default_port):
        host = host.removesuffix(default_port)  # browsers omit the default port in Origin
    return hmac.compare_digest(origin.encode(), f"{scheme}://{host}".encode())
