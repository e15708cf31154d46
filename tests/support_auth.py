"""Real accounts and real access tokens for tests (helpers for every test package).

In-process (fast, no HTTP):
    app = auth_app(tmp_path)                       # create_app + cheap argon2 profile
    async with app_client(app) as client: ...      # schema + keys ready, httpx on the app
    account = await create_account(app)            # a real users row (Account)
    headers = bearer_for(app, account.id)          # {"Authorization": "Bearer <real JWT>"}

Through HTTP (in-process client or a real `bastion serve` client):
    headers = register_and_login(client)           # sync httpx.Client
    headers = await aregister_and_login(client)    # httpx.AsyncClient
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from bastion.auth.passwords import TEST, PasswordHasher
from bastion.auth.service import Account, AuthService
from bastion.auth.tokens import TokenIssuer
from bastion.config import Settings
from bastion.service.main import create_app, prepare

# High limits for `bastion serve` tests that are not about rate limiting.
GENEROUS_LIMITS = {
    "BASTION_API_LIMIT": "1000000/15m",
    "BASTION_API_SLOWDOWN_AFTER": "1000000",
    "BASTION_AUTH_LIMIT": "1000000/15m",
}


def new_email() -> str:
    return f"user-{secrets.token_hex(6)}@example.test"


def new_password() -> str:
    """A password the policy accepts (long, not common, not containing the email)."""
    return f"correct horse battery staple {secrets.token_hex(4)}"


def auth_app(tmp_path: Path, **settings: Any) -> FastAPI:
    """The real service app on a SQLite file in *tmp_path*, hashing with the TEST profile."""
    config = Settings(data_dir=tmp_path, **settings)
    return create_app(config, password_hasher=PasswordHasher(TEST))


@asynccontextmanager
async def app_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Keys and schema prepared, the app's lifespan running, an httpx client on it."""
    await prepare(app.state.settings)
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="https://testserver")
    async with app.router.lifespan_context(app), client:
        yield client


async def create_account(
    app: FastAPI, email: str | None = None, password: str | None = None, role: str = "user"
) -> Account:
    """Insert a real account (with an argon2 hash of *password*) and return it."""
    auth: AuthService = app.state.auth
    account = Account(
        uuid.uuid4(),
        email or new_email(),
        auth.hasher.hash(password or new_password()),
        role,
    )
    created = await auth.store.create(account)
    assert created, "email already taken"
    return account


def token_for(app: FastAPI, user_id: uuid.UUID, role: str = "user") -> str:
    """A real access token signed with the app's own key ring."""
    issuer: TokenIssuer = app.state.token_issuer
    return issuer.issue(user_id, role).token


def bearer_for(app: FastAPI, user_id: uuid.UUID, role: str = "user") -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(app, user_id, role)}"}


def register_and_login(
    client: httpx.Client, email: str | None = None, password: str | None = None
) -> dict[str, str]:
    """Register and log in over HTTP; the ``Authorization`` header of the new account."""
    email, password = email or new_email(), password or new_password()
    body = {"email": email, "password": password}
    registered = client.post("/api/v1/auth/register", json=body)
    assert registered.status_code == 202, registered.text
    login = client.post("/api/v1/auth/login", json=body)
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def aregister_and_login(
    client: httpx.AsyncClient, email: str | None = None, password: str | None = None
) -> dict[str, str]:
    """:func:`register_and_login` for an async client."""
    email, password = email or new_email(), password or new_password()
    body = {"email": email, "password": password}
    registered = await client.post("/api/v1/auth/register", json=body)
    assert registered.status_code == 202, registered.text
    login = await client.post("/api/v1/auth/login", json=body)
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}
