"""FastAPI dependencies shared by the service's routes: database session and principal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.auth.bearer import authenticate
from bastion.auth.principal import Principal
from bastion.auth.service import AuthService
from bastion.service.db import Database


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One AsyncSession per request from ``app.state.database`` (closed afterwards)."""
    async with request.app.state.database.session() as session:
        yield session


async def require_principal(request: Request) -> Principal:
    """The caller of a protected route, from a verified ``Authorization: Bearer`` token.

    Failures raise a 401 (``HTTPError``) with ``WWW-Authenticate: Bearer`` (plus
    ``error="invalid_token"`` when a token was presented) and the contract's error body.
    ``async`` although it awaits nothing: verification is CPU-only and fast, and FastAPI
    would run a plain ``def`` dependency in a thread pool.
    """
    return authenticate(request.scope, request.app.state.token_verifier)


def get_auth(request: Request) -> AuthService:
    """The app's :class:`AuthService` (built by ``create_app``)."""
    service: AuthService = request.app.state.auth
    return service


async def get_database(request: Request) -> Database:
    """The app's :class:`Database`, for its direct request path (``async``: a plain ``def``
    dependency would cost a thread-pool hop per request)."""
    database: Database = request.app.state.database
    return database


DbSession = Annotated[AsyncSession, Depends(get_session)]
Db = Annotated[Database, Depends(get_database)]
CurrentPrincipal = Annotated[Principal, Depends(require_principal)]
Auth = Annotated[AuthService, Depends(get_auth)]

__all__ = [
    "Auth",
    "CurrentPrincipal",
    "Db",
    "DbSession",
    "get_auth",
    "get_database",
    "get_session",
    "require_principal",
]
