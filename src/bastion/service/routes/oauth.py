"""``/oauth/authorize`` and ``/oauth/token``: OAuth 2.0 authorization code + PKCE, public clients.

The rules live in :class:`bastion.oauth.server.AuthorizationServer` (and, for accounts and
tokens, in :class:`bastion.auth.service.AuthService`); this module is the HTTP around them:

``GET /oauth/authorize``
    Invalid client or redirect URI → an HTML error page (``400``), never a redirect
    (RFC 6749 §4.1.2.1). Other errors → ``302`` to the redirect URI with ``error`` and
    ``state``. With a live browser session → ``302`` to ``redirect_uri?code=…&state=…``.
    Otherwise → the login form (``200``), its own CSP, and the CSRF cookie.
``POST /oauth/authorize``
    The form (``application/x-www-form-urlencoded``). CSRF: a foreign ``Origin`` or a
    cross-site ``Sec-Fetch-Site`` → ``403`` error page; a missing or different token (cookie
    vs. field) → ``403`` and a fresh form; wrong credentials → the form again
    with ``400`` and one message for unknown email and wrong password (AuthService's uniform
    rules); success → the ``__Host-`` session cookie and ``303`` to the client with the code
    (RFC 9700 §4.12: never 307 after a POST of credentials).
``POST /oauth/token``
    ``application/x-www-form-urlencoded`` (RFC 6749 §4.1.3); ``200`` with ``access_token``,
    ``token_type``, ``expires_in`` and the rotating ``refresh_token`` in the JSON body (a mobile
    app has no cookie jar); errors are RFC 6749 §5.2 JSON ``{"error", "error_description"}``
    (plus the contract's ``requestId``). Every answer has ``Cache-Control: no-store`` and
    ``Pragma: no-cache`` (RFC 6749 §5.1).

Bodies are read up to :data:`MAX_FORM_BYTES` while streaming (the stack's body layer covers
``/api/`` only). Neither endpoint is in the OpenAPI document: they speak forms and HTML, not
the JSON API.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from bastion.asgi import request_id
from bastion.auth.errors import InvalidCredentials
from bastion.oauth import page, sessions
from bastion.oauth.clients import ClientRegistry
from bastion.oauth.errors import INVALID_REQUEST, OAuthError
from bastion.oauth.server import (
    AuthorizationRequest,
    AuthorizationServer,
    PageError,
    RedirectError,
    group,
)
from bastion.service.oauth_store import SqlCodeStore, SqlSessionStore

log = logging.getLogger("bastion.oauth")

MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 32
MAX_EMAIL, MAX_PASSWORD = 254, 1024  # as POST /api/v1/auth/login
FORM_TYPE = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
CROSS_SITE = "This sign-in request came from another site."
EXPIRED = "This sign-in form expired. Please sign in again."
# The request parameters the login form carries besides the authorization request.
_LOGIN_FIELDS = frozenset({"email", "password", page.CSRF_FIELD})

router = APIRouter(prefix="/oauth", tags=["oauth"], include_in_schema=False)


class _BadForm(Exception):
    """The body is not a usable form (type, size, encoding, too many fields)."""

    def __init__(self, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.description = description
        self.status = status


async def _read_form(request: Request) -> list[tuple[str, str]]:
    """The urlencoded body as (name, value) pairs; at most MAX_FORM_BYTES are read."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != FORM_TYPE or len(request.headers.getlist("content-type")) != 1:
        raise _BadForm(f"Content-Type must be {FORM_TYPE}", 415)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _BadForm("Request body too large", 413)
    try:
        return parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise _BadForm("Malformed form body") from None


def _html(result: page.Page, *, cookies: tuple[str, ...] = ()) -> Response:
    response = Response(
        result.html,
        status_code=result.status,
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": result.csp, **NO_STORE},
    )
    for cookie in cookies:
        response.headers.append("set-cookie", cookie)
    return response


def _redirect(location: str, status: int, *, cookies: tuple[str, ...] = ()) -> Response:
    response = RedirectResponse(location, status_code=status, headers=NO_STORE)
    for cookie in cookies:
        response.headers.append("set-cookie", cookie)
    return response


def _server(request: Request) -> AuthorizationServer:
    server: AuthorizationServer = request.app.state.oauth
    return server


def _login_form(
    request: Request,
    auth_request: AuthorizationRequest,
    *,
    error: str | None = None,
    email: str = "",
    status: int = 200,
    fresh_token: bool = False,
) -> Response:
    """The form with a CSRF token: the browser's current one, or a new one (and its cookie)."""
    token = request.cookies.get(page.CSRF_COOKIE)
    if fresh_token or token is None or not page.valid_csrf_token(token):
        token = page.new_csrf_token()
    result = page.login_page(
        auth_request, csrf_token=token, error=error, email=email, status=status
    )
    return _html(result, cookies=(page.csrf_cookie_header(token),))


def _first(params: Mapping[str, list[str]], name: str) -> str:
    values = params.get(name, [])
    return values[0] if len(values) == 1 else ""


@router.get("/authorize")
async def authorize(request: Request) -> Response:
    """Start the authorization code flow (RFC 6749 §4.1.1)."""
    server = _server(request)
    try:
        auth_request = server.validate(group(request.query_params.multi_items()))
    except PageError as exc:
        log.info("authorize refused on page: %s", exc.detail)
        return _html(page.error_page(exc.description))
    except RedirectError as exc:
        return _redirect(exc.location, 302)
    user_id = await server.session_user(request.cookies.get(sessions.COOKIE_NAME))
    if user_id is not None:
        return _redirect(await server.issue_code(auth_request, user_id), 302)
    return _login_form(request, auth_request)


@router.post("/authorize")
async def authorize_login(request: Request) -> Response:
    """The login form's POST: CSRF, credentials, browser session, then the code (303)."""
    server = _server(request)
    try:
        params = group(await _read_form(request))
    except _BadForm as exc:
        return _html(page.error_page(exc.description, status=exc.status))
    request_params = {k: v for k, v in params.items() if k not in _LOGIN_FIELDS}
    try:
        auth_request = server.validate(request_params)
    except PageError as exc:
        return _html(page.error_page(exc.description))
    except RedirectError as exc:
        return _redirect(exc.location, 303)

    if not page.same_origin(
        request.headers.get("origin"),
        request.headers.get("sec-fetch-site"),
        scheme=request.url.scheme,
        host=request.headers.get("host", ""),
    ):
        # The browser says another site sent this POST (login CSRF). No form and no new
        # cookie for it: the victim's own tab keeps its token.
        log.info("login form refused: cross-site POST")
        return _html(page.error_page(CROSS_SITE, status=403))
    if not page.csrf_matches(
        request.cookies.get(page.CSRF_COOKIE), _first(params, page.CSRF_FIELD) or None
    ):
        log.info("login form refused: CSRF token missing or different")
        return _login_form(request, auth_request, error=EXPIRED, status=403, fresh_token=True)

    email, password = _first(params, "email"), _first(params, "password")
    if len(email) > MAX_EMAIL or len(password) > MAX_PASSWORD:
        # Longer than any account could have (the JSON login's bounds): no hashing for it.
        return _login_form(
            request, auth_request, error=InvalidCredentials.public_message, status=400
        )
    if not email or not password:
        return _login_form(
            request, auth_request, error="Enter your email and password.", email=email, status=400
        )
    try:
        session_id, user_id = await server.login(email, password)
    except InvalidCredentials as exc:
        log.info("login form refused: %s", exc.detail)  # never the email or the password
        return _login_form(
            request,
            auth_request,
            error=InvalidCredentials.public_message,
            email=email,
            status=400,
        )
    location = await server.issue_code(auth_request, user_id)
    return _redirect(
        location, 303, cookies=(sessions.set_cookie_header(session_id, server.session_ttl),)
    )


def _oauth_error(request: Request, error: OAuthError) -> JSONResponse:
    body = {**error.body(), "requestId": request_id(request.scope)}
    return JSONResponse(body, status_code=error.status, headers=NO_STORE)


@router.post("/token")
async def token(request: Request) -> JSONResponse:
    """Exchange a code (with its PKCE verifier) or a refresh token for tokens."""
    try:
        params = group(await _read_form(request))
    except _BadForm as exc:
        return _oauth_error(
            request, OAuthError(INVALID_REQUEST, exc.description, status=exc.status)
        )
    try:
        result = await _server(request).token(params)
    except OAuthError as exc:
        log.info("token request refused: %s (%s)", exc.error, exc.detail)
        return _oauth_error(request, exc)
    return JSONResponse(result.body(), headers=NO_STORE)


def install(app: FastAPI) -> None:
    """Add the OAuth routes; needs ``app.state.auth`` (the AuthService) installed first.

    ``app.state.oauth`` becomes the :class:`AuthorizationServer` (tests may swap its clock).
    """
    settings = app.state.settings
    database = app.state.database
    app.state.oauth = AuthorizationServer(
        ClientRegistry(settings.oauth_clients),
        SqlCodeStore(database),
        SqlSessionStore(database),
        app.state.auth,
    )
    app.include_router(router)


__all__ = ["install", "router"]
