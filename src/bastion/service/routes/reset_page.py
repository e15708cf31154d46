"""``/password-reset``: the page a reset link opens, and the form that sets the new password.

The reset mail links to ``<issuer>/password-reset?token=…``. The JSON endpoint
``POST /api/v1/password-reset/confirm`` is for API clients; a browser gets this page:

``GET /password-reset?token=…``
    ``200`` and the form when the token is live; ``400`` and an "invalid or expired link"
    page (no form) when it is missing, malformed, used or expired.
``POST /password-reset``
    The form, ``application/x-www-form-urlencoded`` (``token``, ``password``, ``confirm``),
    read up to :data:`MAX_FORM_BYTES`. It runs the same
    :meth:`~bastion.auth.service.AuthService.confirm_reset` as the JSON endpoint (same token
    rules, the same 15–128 character and common-password policy, every refresh token of the
    user revoked): ``200`` "password changed"; ``400`` and the form again with readable
    messages for a refused password; ``400`` "invalid or expired link" for a bad token.
``GET /password-reset/style.css``
    The page's only stylesheet.

Why a form POST to the page's own path rather than to the JSON endpoint: an HTML form cannot
send JSON, and making it do so needs script. The page has none at all, so its policy is
``default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none';
frame-ancestors 'none'``: no inline script or style (so no nonce or hash to manage), an
external stylesheet from this origin, a form that can only post here, and no framing.

Why no CSRF token: the POST carries no ambient authority. No cookie is read or set, and the
credential is the single-use reset token in the body, which a forging site would have to
know already — and whoever knows it can change that password directly. Besides, a POST that
the browser labels cross-site (``Sec-Fetch-Site``, a foreign ``Origin``) is refused with
``403``, and ``frame-ancestors 'none'`` with ``X-Frame-Options: DENY`` stops clickjacking.

The token never reaches a log (the access log keeps query *names* only), nor another site
(``Referrer-Policy: no-referrer``, also as a ``<meta>``), nor a cache (``no-store``). The form
POST counts against the auth rate limit like the JSON confirm endpoint (failures only); the
``GET`` does not (see :mod:`bastion.ratelimit.rules`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from html import escape
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request, Response

from bastion.auth import reset
from bastion.auth.errors import InvalidResetToken, WeakPassword
from bastion.auth.passwords import MAX_LENGTH, MIN_LENGTH
from bastion.auth.service import AuthService
from bastion.oauth.page import STYLE, same_origin

__all__ = ["PAGE_PATH", "STYLESHEET_PATH", "install", "router"]

log = logging.getLogger("bastion.auth")

PAGE_PATH = "/password-reset"
STYLESHEET_PATH = "/password-reset/style.css"
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 8
FORM_TYPE = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

FORM_CSP = (
    "default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
NO_FORM_CSP = (
    "default-src 'none'; style-src 'self'; form-action 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
STYLESHEET = STYLE + "ul.error{margin:0;padding:.6rem .6rem .6rem 1.8rem}.hint{color:#4a5160}\n"

INVALID_LINK = "This reset link is invalid or has expired."
CROSS_SITE = "This form was sent from another site."
DIFFERENT = "The two passwords are different."
NUL_CHARACTER = "Password must not contain a NUL character"

router = APIRouter(tags=["password reset page"], include_in_schema=False)


@dataclass(frozen=True, slots=True)
class _Page:
    status: int
    html: str
    csp: str

    def response(self) -> Response:
        return Response(
            self.html.encode(),
            status_code=self.status,
            media_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": self.csp, **NO_STORE},
        )


def _document(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
        '<meta name=viewport content="width=device-width,initial-scale=1">\n'
        '<meta name=referrer content="no-referrer">\n'
        f"<title>{escape(title)}</title>\n"
        f'<link rel=stylesheet href="{STYLESHEET_PATH}">\n</head>\n'
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def form_page(token: str, *, errors: list[str] | tuple[str, ...] = (), status: int = 200) -> _Page:
    """The new-password form; *token* (already checked well formed) rides in a hidden field."""
    notice = ""
    if errors:
        items = "".join(f"<li>{escape(message)}</li>" for message in errors)
        notice = f"<ul class=error role=alert>{items}</ul>\n"
    body = (
        "<h1>Choose a new password</h1>\n"
        f"{notice}"
        f'<form method=post action="{PAGE_PATH}">\n'
        f'<input type=hidden name=token value="{escape(token)}">\n'
        "<label for=password>New password</label>\n"
        "<input id=password name=password type=password autocomplete=new-password required "
        f"minlength={MIN_LENGTH} maxlength={MAX_LENGTH} aria-describedby=rules>\n"
        "<label for=confirm>Repeat it</label>\n"
        "<input id=confirm name=confirm type=password autocomplete=new-password required "
        f"minlength={MIN_LENGTH} maxlength={MAX_LENGTH}>\n"
        f"<p id=rules class=hint>{MIN_LENGTH} to {MAX_LENGTH} characters; a long phrase is "
        "easier to remember than a short mix of symbols. Common passwords are refused.</p>\n"
        "<button type=submit>Change password</button>\n"
        "</form>"
    )
    return _Page(status, _document("Choose a new password", body), FORM_CSP)


def message_page(title: str, message: str, *, status: int, hint: str = "") -> _Page:
    """A page without a form: the link is unusable, the POST was refused, or it worked."""
    role = " class=error role=alert" if status >= 400 else ""
    extra = f"<p class=hint>{escape(hint)}</p>\n" if hint else ""
    body = f"<h1>{escape(title)}</h1>\n<p{role}>{escape(message)}</p>\n{extra}".rstrip("\n")
    return _Page(status, _document(title, body), NO_FORM_CSP)


def _invalid_link() -> _Page:
    return message_page(
        "Reset link not valid",
        INVALID_LINK,
        status=400,
        hint="Links work once, for 30 minutes. Ask for a new one from the sign-in screen.",
    )


class _BadForm(Exception):
    def __init__(self, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.description = description
        self.status = status


async def _read_form(request: Request) -> dict[str, str]:
    """The urlencoded body, each field exactly once; at most MAX_FORM_BYTES are read."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != FORM_TYPE or len(request.headers.getlist("content-type")) != 1:
        raise _BadForm(f"Content-Type must be {FORM_TYPE}.", 415)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _BadForm("The form is too large.", 413)
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise _BadForm("The form could not be read.") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:  # two tokens or two passwords: which one would be meant?
            raise _BadForm("The form could not be read.")
        fields[name] = value
    return fields


def _auth(request: Request) -> AuthService:
    auth: AuthService = request.app.state.auth
    return auth


async def _live(auth: AuthService, token: str) -> bool:
    """True when *token* is a live reset token (looked up by digest; nothing is used up)."""
    if not reset.well_formed(token):
        return False
    return await auth.store.reset_account(reset.digest(token), auth.clock()) is not None


@router.get(PAGE_PATH)
async def reset_form(request: Request) -> Response:
    """The page the mailed link opens."""
    tokens = request.query_params.getlist("token")
    if len(tokens) != 1 or not await _live(_auth(request), tokens[0]):
        log.info("reset page: link refused (missing, malformed, used or expired token)")
        return _invalid_link().response()
    return form_page(tokens[0]).response()


@router.post(PAGE_PATH)
async def reset_submit(request: Request) -> Response:
    """The form's POST: the same confirmation as ``POST /api/v1/password-reset/confirm``."""
    if not same_origin(
        request.headers.get("origin"),
        request.headers.get("sec-fetch-site"),
        scheme=request.url.scheme,
        host=request.headers.get("host", ""),
    ):
        log.info("reset page: cross-site POST refused")
        return message_page("Password not changed", CROSS_SITE, status=403).response()
    try:
        fields = await _read_form(request)
    except _BadForm as exc:
        return message_page("Password not changed", exc.description, status=exc.status).response()
    token, password = fields.get("token", ""), fields.get("password", "")
    auth = _auth(request)
    if not await _live(auth, token):  # an expired link first: no point fixing the password
        log.info("reset page: form refused (missing, malformed, used or expired token)")
        return _invalid_link().response()
    if "\x00" in password:  # the contract refuses NUL in a password, on every endpoint
        return form_page(token, errors=[NUL_CHARACTER], status=400).response()
    if password != fields.get("confirm", ""):
        return form_page(token, errors=[DIFFERENT], status=400).response()
    try:
        await auth.confirm_reset(token, password)
    except InvalidResetToken as exc:
        log.info("reset page: token refused (%s)", exc.detail)
        return _invalid_link().response()
    except WeakPassword as exc:
        return form_page(token, errors=exc.problems, status=400).response()
    return message_page(
        "Password changed",
        "Your password has been changed.",
        status=200,
        hint="Every session of this account was signed out: sign in again with the new one.",
    ).response()


@router.get(STYLESHEET_PATH)
async def stylesheet() -> Response:
    return Response(STYLESHEET.encode(), media_type="text/css; charset=utf-8")


def install(app: FastAPI) -> None:
    """Add the page; needs ``app.state.auth`` (install the auth routes first)."""
    app.include_router(router)
