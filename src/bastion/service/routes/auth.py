"""Accounts: register, login, refresh, logout (``/api/v1/auth``) and password reset.

The handlers are thin: :class:`bastion.auth.service.AuthService` holds the rules (uniform
answers and timing, rotation, reuse detection). What lives here is HTTP:

* the refresh token travels only in the ``refresh_token`` cookie
  (``HttpOnly; Secure; SameSite=Strict; Path=/api/v1/auth; Max-Age=604800``), never in JSON;
* every ``401`` carries ``WWW-Authenticate: Bearer`` (RFC 9110 §15.5.2), with
  ``error="invalid_token"`` when a refresh token was presented and refused (RFC 6750 §3.1);
* token responses carry ``Cache-Control: no-store`` (RFC 6749 §5.1);
* passwords, tokens and reset tokens are never logged or echoed (validation messages never
  contain the input; see :mod:`bastion.service.errors`).
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Cookie, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictStr

from bastion.auth import refresh as refresh_tokens
from bastion.auth.bearer import BearerAuth
from bastion.auth.errors import (
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidResetToken,
    WeakPassword,
)
from bastion.auth.keys import KeyRing
from bastion.auth.passwords import MAX_LENGTH, MIN_LENGTH, PasswordHasher
from bastion.auth.revocation import MemoryRevocations, RedisRevocations, Revocations
from bastion.auth.service import AuthService, Session
from bastion.auth.tokens import TokenIssuer
from bastion.config import Settings
from bastion.errors import HTTPError
from bastion.service import signing_keys
from bastion.service.accounts import SqlAccountStore
from bastion.service.deps import Auth
from bastion.service.errors import INVALID_BODY
from bastion.service.mailer import make_mailer
from bastion.service.routes import jwks, me
from bastion.service.schemas import ErrorBody

log = logging.getLogger("bastion.auth")

# A local part and a domain without spaces, controls or a second "@" (deliverability is the
# mail system's business), with surrounding spaces allowed, since the address is trimmed.
EMAIL_PATTERN = r"^ *[^@\u0000-\u0020\u007f-\u009f]{1,64}@[^@\u0000-\u0020\u007f-\u009f]{1,253} *$"
_CONTROL = re.compile("[\u0000-\u001f]")


def _no_controls(value: object) -> object:
    """NUL or another C0 control anywhere (tab and newline included): refused before any
    other check, so it never reaches a lookup, a log line or the database."""
    if isinstance(value, str) and _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _no_nul(value: object) -> object:
    """Passwords may hold any character but NUL (a C string terminator in many stacks)."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL")
    return value


NoControls = BeforeValidator(_no_controls)
NoNul = BeforeValidator(_no_nul)
# The same rules in the published JSON Schema (the validators above enforce them).
_NO_CONTROLS = {"pattern": r"^[^\u0000-\u001f]*$"}
_NO_NUL = {"pattern": r"^[^\u0000]*$"}

Email = Annotated[
    StrictStr,
    Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN, examples=["ada@example.com"]),
    AfterValidator(lambda value: value.strip(" ")),
    NoControls,
]
NewPassword = Annotated[
    StrictStr,
    Field(
        min_length=MIN_LENGTH,
        max_length=MAX_LENGTH,
        description="15-128 characters, any characters but NUL; common passwords and "
        "passwords containing the email's local part are refused (NIST SP 800-63B-4)",
        json_schema_extra=_NO_NUL,
    ),
    NoNul,
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Registration(_Body):
    email: Email
    password: NewPassword


class Credentials(_Body):
    # Any string: a malformed email is simply an unknown one (same 401, same time).
    email: Annotated[
        StrictStr, Field(min_length=1, max_length=254, json_schema_extra=_NO_CONTROLS), NoControls
    ]
    password: Annotated[
        StrictStr, Field(min_length=1, max_length=1024, json_schema_extra=_NO_NUL), NoNul
    ]


class ResetRequest(_Body):
    email: Email


class ResetConfirmation(_Body):
    token: Annotated[
        StrictStr, Field(min_length=1, max_length=256, json_schema_extra=_NO_CONTROLS), NoControls
    ]
    password: NewPassword


class Accepted(BaseModel):
    status: str = Field("accepted", examples=["accepted"])


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = Field("Bearer", examples=["Bearer"])
    expires_in: int = Field(examples=[900])


Responses = dict[int | str, dict[str, Any]]
CHALLENGE = {"WWW-Authenticate": "Bearer"}
INVALID_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
NO_STORE = {"Cache-Control": "no-store"}


def _error(description: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"model": ErrorBody, "description": description}
    if headers:
        entry["headers"] = {
            name: {"description": value, "required": True, "schema": {"type": "string"}}
            for name, value in headers.items()
        }
    return entry


_LIMITED: Responses = {
    429: _error("Too many authentication attempts", {"Retry-After": "seconds to wait"}),
    500: _error("An internal error occurred"),
}
_BODY_ERRORS: Responses = {
    400: _error("Invalid request body (see details)"),
    413: _error("Request body larger than 64 KiB"),
    415: _error("Content-Type is not application/json"),
}
_COOKIE_401: Responses = {
    401: _error("Missing, unknown, expired or revoked refresh token", CHALLENGE),
}

router = APIRouter(prefix="/api/v1", tags=["auth"])


def _weak(exc: WeakPassword) -> HTTPError:
    return HTTPError(400, INVALID_BODY, details={"password": exc.problems}, detail="weak password")


def _session_response(session: Session) -> JSONResponse:
    body = {
        "access_token": session.access.token,
        "token_type": "Bearer",
        "expires_in": session.access.expires_in,
    }
    response = JSONResponse(body, headers=NO_STORE)
    response.headers.append(
        "set-cookie",
        refresh_tokens.set_cookie_header(session.refresh_token, session.refresh_max_age),
    )
    return response


def _refused_refresh(token_presented: bool) -> HTTPError:
    challenge = INVALID_CHALLENGE if token_presented else CHALLENGE
    headers = [(b"www-authenticate", challenge["WWW-Authenticate"].encode())]
    if token_presented:
        # Drop the dead cookie too, so the browser stops sending it. Only a cookie we were
        # sent: a cross-site form POST arrives without it (SameSite=Strict), and a clearing
        # Set-Cookie in the answer to that top-level navigation would still be applied —
        # any site could log the user out (a forced-logout CSRF; see
        # test_logout_without_a_cookie_is_204_and_sets_no_cookie).
        headers.append((b"set-cookie", refresh_tokens.clear_cookie_header().encode()))
    return HTTPError(401, InvalidRefreshToken.public_message, headers=headers)


_COOKIE_PREFIX = refresh_tokens.COOKIE_NAME.encode() + b"="


def _refuse_cookie_pairs(request: Request) -> None:
    """Refuse a request carrying more than one ``refresh_token`` cookie (``401``, nothing
    rotated, nothing cleared).

    A sibling subdomain can plant a second ``refresh_token`` (``Domain=`` the parent, a
    longer ``Path``); the browser sends both and a parser keeps one of them, so the victim
    would silently rotate into the attacker's account. Clearing ours would leave only the
    planted one: the answer clears nothing.
    """
    count = 0
    for name, value in request.scope["headers"]:
        if name == b"cookie":
            count += sum(1 for pair in value.split(b";") if pair.strip().startswith(_COOKIE_PREFIX))
    if count > 1:
        raise HTTPError(
            401,
            InvalidRefreshToken.public_message,
            headers=[(b"www-authenticate", INVALID_CHALLENGE["WWW-Authenticate"].encode())],
            detail="more than one refresh_token cookie",
        )


RefreshCookie = Annotated[
    str | None,
    Cookie(
        alias=refresh_tokens.COOKIE_NAME,
        include_in_schema=False,  # a browser cookie, set by login; not a client parameter
    ),
]


@router.post(
    "/auth/register",
    status_code=202,
    summary="Create an account (the same answer whether or not the email has one)",
    response_model=Accepted,
    responses={**_BODY_ERRORS, **_LIMITED},
)
async def register(body: Registration, auth: Auth) -> dict[str, str]:
    try:
        await auth.register(body.email, body.password)
    except WeakPassword as exc:
        raise _weak(exc) from None
    return {"status": "accepted"}


@router.post(
    "/auth/login",
    summary="Exchange email and password for an access token and a refresh cookie",
    response_model=TokenResponse,
    responses={
        **_BODY_ERRORS,
        401: _error("Invalid email or password", {"WWW-Authenticate": "Bearer"}),
        **_LIMITED,
    },
)
async def login(body: Credentials, auth: Auth) -> JSONResponse:
    try:
        session = await auth.login(body.email, body.password)
    except InvalidCredentials as exc:
        raise HTTPError(
            401,
            InvalidCredentials.public_message,
            headers=[(b"www-authenticate", b"Bearer")],
            detail=exc.detail,
        ) from None
    return _session_response(session)


@router.post(
    "/auth/refresh",
    summary="Rotate the refresh cookie and get a new access token",
    response_model=TokenResponse,
    responses={**_COOKIE_401, **_LIMITED},
)
async def refresh(
    request: Request, auth: Auth, refresh_token: RefreshCookie = None
) -> JSONResponse:
    _refuse_cookie_pairs(request)
    try:
        session = await auth.refresh(refresh_token)
    except InvalidRefreshToken as exc:
        log.info("refresh refused: %s", exc.__class__.__name__)  # never the token itself
        raise _refused_refresh(refresh_token is not None) from None
    return _session_response(session)


@router.post(
    "/auth/logout",
    status_code=204,
    summary="Revoke the refresh cookie and clear it",
    response_class=Response,
    responses=_LIMITED,
)
async def logout(request: Request, auth: Auth, refresh_token: RefreshCookie = None) -> Response:
    _refuse_cookie_pairs(request)
    user_id = await auth.logout(refresh_token)  # its access tokens are refused from now on
    oauth = getattr(request.app.state, "oauth", None)
    if user_id is not None and oauth is not None:  # the OAuth login sessions end too
        await oauth.end_sessions(user_id)
    response = Response(status_code=204)
    if refresh_token is not None:  # clear only a cookie we were sent (see _refused_refresh)
        response.headers.append("set-cookie", refresh_tokens.clear_cookie_header())
    return response


async def _send_reset(auth: AuthService, email: str) -> None:
    try:
        await auth.request_reset(email)
    except Exception as exc:  # after the response: nobody to answer, so log one line
        log.error("password-reset mail not sent: %s", exc.__class__.__name__)


@router.post(
    "/password-reset",
    status_code=202,
    summary="Mail a single-use reset link (the same answer for unknown emails)",
    response_model=Accepted,
    responses={**_BODY_ERRORS, **_LIMITED},
)
async def password_reset(
    body: ResetRequest, auth: Auth, background: BackgroundTasks
) -> dict[str, str]:
    # The account lookup and the mail happen after the answer: same status, body and
    # time for every address, so the answer does not tell which addresses have an account
    # (OWASP Forgot Password cheat sheet: consistent message, uniform time,
    # https://cheatsheetseries.owasp.org/cheatsheets/Forgot_Password_Cheat_Sheet.html).
    background.add_task(_send_reset, auth, body.email)
    return {"status": "accepted"}


@router.post(
    "/password-reset/confirm",
    status_code=204,
    summary="Set a new password with a reset token; revokes every refresh token",
    response_class=Response,
    responses={
        **_BODY_ERRORS,
        **_LIMITED,
    },
)
async def password_reset_confirm(body: ResetConfirmation, auth: Auth) -> Response:
    try:
        await auth.confirm_reset(body.token, body.password)
    except InvalidResetToken as exc:
        raise HTTPError(400, InvalidResetToken.public_message, detail=exc.detail) from None
    except WeakPassword as exc:
        raise _weak(exc) from None
    return Response(status_code=204)


__all__ = ["router"]


# --- wiring --------------------------------------------------------------------------------


def key_ring(settings: Settings) -> KeyRing:
    """The deployment's key ring (data directory or database: :mod:`..signing_keys`)."""
    return signing_keys.key_ring(settings, watch=True)


def revocations(settings: Settings) -> Revocations:
    """Access-token revocations shared like the rate limits: Redis when configured."""
    ttl = settings.access_token_ttl
    if settings.redis_url:
        return RedisRevocations(settings.redis_url, ttl=ttl)
    return MemoryRevocations(ttl=ttl)


def prepare_keys(settings: Settings) -> None:
    """Import an on-disk ring into the database on the first start against it, and generate
    the signing key if there is none (run once by the parent before workers)."""
    signing_keys.prepare(settings).close()


def install(app: FastAPI, *, password_hasher: PasswordHasher | None = None) -> None:
    """Open the key ring, build the verifier and AuthService, add the auth routes to *app*.

    ``app.state`` gains ``key_ring``, ``token_issuer``, ``bearer_auth`` (the service verifies
    its tokens through the library's BearerAuth over its key ring; used by
    :func:`bastion.service.deps.require_principal`) and ``auth``. *password_hasher* defaults
    to the OWASP argon2id profile; tests may pass a cheaper one.
    """
    settings: Settings = app.state.settings
    ring = key_ring(settings)
    ring.ensure()  # normally done by prepare(); idempotent, under the directory lock
    issuer = TokenIssuer(
        ring,
        issuer=settings.issuer,
        audience=settings.audience,
        ttl=settings.access_token_ttl,
    )
    app.state.key_ring = ring
    app.state.token_issuer = issuer
    app.state.bearer_auth = BearerAuth(
        key_ring=ring,
        issuer=settings.issuer,
        audience=settings.audience,
        required_claims=("iat", "jti", "role", "type"),  # what the service's tokens carry
        typ=("JWT",),
    )
    app.state.revocations = revocations(settings)
    app.state.auth = AuthService(
        SqlAccountStore(app.state.database),
        issuer,
        mailer=make_mailer(settings),
        reset_base_url=settings.issuer,
        hasher=password_hasher,
        refresh_ttl=settings.refresh_token_ttl,
        revocations=app.state.revocations,
    )
    app.include_router(router)
    me.install(app)
    app.include_router(jwks.router)
