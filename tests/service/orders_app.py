"""The smallest app that serves the orders routes, for in-process route tests.

It is the service's real error handlers, routes and lifecycle middleware on a SQLite file,
with one stand-in: the access-token verifier. :class:`Tokens` maps opaque random strings to
principals, so a test can be Alice or Bob by choosing a token, while the real bearer-header
parsing and 401 handling (``bastion.service.deps``) still run. Real JWTs are used by the
integration tests against ``bastion serve``.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from bastion.asgi import Scope
from bastion.auth import Principal
from bastion.auth.bearer import MissingToken, RefusedToken, bearer_token
from bastion.config import Settings
from bastion.service import errors
from bastion.service.db import Database
from bastion.service.models import User
from bastion.service.routes import orders as order_routes


def access_principal(user_id: uuid.UUID, role: str = "user") -> Principal:
    """A principal with the claims the service's own access tokens carry."""
    claims = {
        "sub": str(user_id),
        "role": role,
        "jti": secrets.token_hex(8),
        "type": "access",
        "iat": int(time.time()),
    }
    return Principal(str(user_id), frozenset(), claims)


class Tokens:
    """A stand-in BearerAuth: token -> Principal; anything else is refused like a bad JWT."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.principals: dict[str, Principal] = {}

    async def issue(self, role: str = "user") -> str:
        """A token for a new user, whose account row exists (orders reference it)."""
        user_id = uuid.uuid4()
        async with self.database.session() as session:
            session.add(User(id=user_id, email=f"{user_id}@example.test", password_hash="-"))
            await session.commit()
        token = secrets.token_urlsafe(24)
        self.principals[token] = access_principal(user_id, role)
        return token

    async def authenticate(self, scope: Scope) -> Principal:
        token = bearer_token(scope)  # the real header parsing
        if token is None:
            raise MissingToken()
        principal = self.principals.get(token)
        if principal is None:
            raise RefusedToken("unknown test token")
        return principal


def build_app(tmp_path: Path, **settings: Any) -> tuple[FastAPI, Tokens]:
    config = Settings(data_dir=tmp_path, expose_docs=True, **settings)
    app = FastAPI(openapi_url="/openapi.json", docs_url=None, redoc_url=None)
    app.state.settings = config
    app.state.database = Database(f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}")
    tokens = Tokens(app.state.database)
    app.state.bearer_auth = tokens
    errors.install(app)
    order_routes.install(app)
    return app, tokens


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Schema created, an httpx client on the app, the database closed afterwards."""
    database: Database = app.state.database
    await database.create_schema()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            yield client
    finally:
        await database.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def order_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "productId": "0b8e7a52-6f1c-4d8e-9a3b-2f6c1d0e9a77",
        "quantity": 2,
        "address": {"street": "1 Rue de Rivoli", "city": "Paris", "country": "fr"},
    }
    for key, value in changes.items():
        if key in {"street", "city", "country"}:
            body["address"][key] = value
        else:
            body[key] = value
    return body
