"""FastAPI dependencies shared by the service's routes: database session and principal."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.auth.bearer import RefusedToken
from bastion.auth.principal import Principal
from bastion.auth.service import AuthService
from bastion.auth.tokens import ACCESS


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One AsyncSession per request from ``app.state.database`` (closed afterwards)."""
    async with request.app.state.database.session() as session:
        yield session


# --- the principal (lib-tokens) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    """The service's view of a verified access token: the claims bastion's issuer puts in.

    The library's :class:`Principal` takes any ``sub``; the service's tokens name a user by
    UUID, carry ``role``, ``jti`` (``token_id``, so a route can log *which* token acted
    without logging the token), ``iat`` (``issued_at``, for revocation checks) and
    ``type: "access"``.
    """

    user_id: uuid.UUID
    role: str
    token_id: str
    issued_at: float
    principal: Principal


def caller_of(principal: Principal) -> Caller:
    """The :class:`Caller` of a verified token; :class:`RefusedToken` (401) when the token is
    not one of the service's access tokens (RFC 8725 §3.12: other kinds never pass as one)."""
    claims = principal.claims
    if claims.get("type") != ACCESS:
        raise RefusedToken("type is not 'access'")
    role, jti, iat = claims.get("role"), claims.get("jti"), claims.get("iat")
    if type(role) is not str or type(jti) is not str or not jti:
        raise RefusedToken("role and jti must be strings")
    if type(iat) is not int and type(iat) is not float:  # the verifier checked its value
        raise RefusedToken("iat is required")
    try:
        user_id = uuid.UUID(principal.subject)
    except ValueError:
        raise RefusedToken("sub is not a UUID") from None
    return Caller(user_id, role, jti, iat, principal)


async def require_principal(request: Request) -> Caller:
    """The caller of a protected route, from a verified ``Authorization: Bearer`` token.

    Verified by the app's :class:`~bastion.auth.bearer.BearerAuth` over the service's key
    ring (``app.state.bearer_auth``). Failures raise a 401 (``HTTPError``) with
    ``WWW-Authenticate: Bearer`` (plus ``error="invalid_token"`` when a token was presented)
    and the contract's error body.
    """
    state = request.app.state
    caller = caller_of(await state.bearer_auth.authenticate(request.scope))
    # Revoked (logout, reset, reuse) at or after its second: an in-process dict lookup.
    # (An app assembled without the auth routes, as some tests do, has no revocations.)
    revocations = getattr(state, "revocations", None)
    if revocations is not None and caller.issued_at <= revocations.not_before(caller.user_id):
        raise RefusedToken("revoked")
    return caller


def get_auth(request: Request) -> AuthService:
    """The app's :class:`AuthService` (built by ``create_app``)."""
    service: AuthService = request.app.state.auth
    return service


DbSession = Annotated[AsyncSession, Depends(get_session)]
CurrentPrincipal = Annotated[Caller, Depends(require_principal)]
Auth = Annotated[AuthService, Depends(get_auth)]

__all__ = [
    "Auth",
    "Caller",
    "CurrentPrincipal",
    "DbSession",
    "caller_of",
    "get_auth",
    "get_session",
    "require_principal",
]
