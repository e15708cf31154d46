"""Helpers for the OAuth tests: a configured client, PKCE pairs, the app in-process."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI

from bastion.asgi import ASGIApp
from bastion.auth.passwords import TEST, PasswordHasher
from bastion.config import OAuthClient, Settings
from bastion.oauth.pkce import s256_challenge
from bastion.ratelimit.factory import store_from_settings
from bastion.service.main import create_app, prepare
from bastion.stack import secure

CLIENT_ID = "mobile-app"
REDIRECT_URI = "https://app.example.test/callback"
OTHER_CLIENT_ID = "other-app"
OTHER_REDIRECT_URI = "com.example.other:/oauth"
CLIENTS = (
    OAuthClient(client_id=CLIENT_ID, redirect_uris=(REDIRECT_URI,)),
    OAuthClient(client_id=OTHER_CLIENT_ID, redirect_uris=(OTHER_REDIRECT_URI,)),
)
GENEROUS = {"api_limit": "1000000/15m", "api_slowdown_after": 1000000, "auth_limit": "1000000/15m"}
BASE_URL = "https://testserver"


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str


def new_pkce() -> Pkce:
    verifier = secrets.token_urlsafe(32)
    return Pkce(verifier, s256_challenge(verifier))


def authorize_params(pkce: Pkce, **overrides: str | None) -> dict[str, str]:
    """A valid authorization request; ``name=None`` drops a parameter."""
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "state": "af0ifjsldkj",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def query_of(location: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location).query, keep_blank_values=True)


def hidden_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type=hidden name="([^"]+)" value="([^"]*)">', html))


def oauth_settings(tmp_path: Path, **overrides: Any) -> Settings:
    options: dict[str, Any] = {"data_dir": tmp_path, "oauth_clients": CLIENTS, **GENEROUS}
    options.update(overrides)
    return Settings(**options)


@dataclass
class App:
    app: FastAPI  # the bare service (app.state.oauth, app.state.auth)
    asgi: ASGIApp  # wrapped in every layer


def build_app(settings: Settings) -> App:
    store = store_from_settings(settings)
    app = create_app(settings, ratelimit_store=store, password_hasher=PasswordHasher(TEST))
    return App(app, secure(app, settings=settings, ratelimit_store=store))


@asynccontextmanager
async def running(target: App) -> AsyncIterator[App]:
    await prepare(target.app.state.settings)
    async with target.app.router.lifespan_context(target.app):
        yield target


def client_for(target: App, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client on the full stack (cookies kept, redirects not followed)."""
    transport = httpx.ASGITransport(app=target.asgi, client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL, **kwargs)
