"""Bearer tokens in ASGI/Starlette apps: read the ``Authorization`` header, get a Principal.

Framework-free: :func:`authenticate` works on a raw ASGI scope, and
:class:`RequireBearer` is a pure ASGI middleware that guards path prefixes and puts the
principal into ``scope["bastion.principal"]``. (FastAPI routes use the dependency in
``bastion.service.deps``, which calls :func:`authenticate`.)

Only the ``Authorization`` header is read: a token in the query string (RFC 6750 §2.3) is
never accepted, since URLs end up in logs, histories and ``Referer`` headers.
"""

from __future__ import annotations

import re
from typing import Protocol

from bastion.asgi import ASGIApp, Receive, Scope, Send, get_headers, send_error
from bastion.auth.principal import Principal
from bastion.errors import AuthError, ConfigError, HTTPError

PRINCIPAL_KEY = "bastion.principal"

# RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token; the scheme is case-insensitive
# (RFC 9110 §11.1). b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_BEARER = re.compile(rb"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*) *")

MISSING_MESSAGE = "Authentication required"
INVALID_MESSAGE = "Invalid token"
# RFC 6750 §3 / RFC 9110 §15.5.2: every 401 says how to authenticate; error="invalid_token"
# only when a token was presented and refused (§3.1: no error code when none was sent).
CHALLENGE = (b"www-authenticate", b"Bearer")
INVALID_CHALLENGE = (b"www-authenticate", b'Bearer error="invalid_token"')


class AccessVerifier(Protocol):
    """Anything that turns an access token into a Principal or raises AuthError."""

    def verify_access(self, token: str) -> Principal: ...


class MissingToken(HTTPError):
    """No bearer credentials were presented."""

    def __init__(self) -> None:
        super().__init__(401, MISSING_MESSAGE, headers=[CHALLENGE])


class RefusedToken(HTTPError):
    """A bearer token was presented and refused (the reason stays internal)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(401, INVALID_MESSAGE, headers=[INVALID_CHALLENGE], detail=detail)


def bearer_token(scope: Scope) -> str | None:
    """The bearer token of the request, ``None`` when there is no ``Authorization`` header.

    Raises :class:`RefusedToken` for a malformed or repeated header, or another scheme
    (a client that sent credentials must learn they were refused, not that none were sent).
    """
    values = get_headers(scope, b"authorization")
    if not values:
        return None
    if len(values) > 1:
        raise RefusedToken("several Authorization headers")
    match = _BEARER.fullmatch(values[0])
    if match is None:
        raise RefusedToken("not a Bearer credential")
    return match.group(1).decode("ascii")


def authenticate(scope: Scope, verifier: AccessVerifier) -> Principal:
    """The request's principal; raises :class:`MissingToken` or :class:`RefusedToken`."""
    token = bearer_token(scope)
    if token is None:
        raise MissingToken()
    try:
        return verifier.verify_access(token)
    except AuthError as exc:
        raise RefusedToken(exc.detail) from None


class RequireBearer:
    """Pure ASGI middleware: requests under *prefixes* need a valid access token.

    The principal is stored in ``scope["bastion.principal"]`` for the app below.
    """

    def __init__(
        self, app: ASGIApp, *, verifier: AccessVerifier, prefixes: tuple[str, ...] = ("/",)
    ) -> None:
        if not prefixes or any(not p.startswith("/") for p in prefixes):
            raise ConfigError("prefixes", "give one or more paths starting with '/'")
        self.app = app
        self.verifier = verifier
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        try:
            scope[PRINCIPAL_KEY] = authenticate(scope, self.verifier)
        except HTTPError as exc:
            await send_error(scope, send, exc.status, exc.public_message, headers=exc.headers)
            return
        await self.app(scope, receive, send)
