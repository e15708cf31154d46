"""Cost of the OAuth authorization server: PKCE, the login page, and whole exchanges.

Run: ``.venv/bin/python bench/bench_oauth.py``. Prints microseconds per operation (best of
several runs). The exchange rows go through the real AuthorizationServer, AuthService and SQL
stores on SQLite in a temporary directory (argon2 is not involved: the account exists and
the code is issued for it directly), so they show the database round trips a code costs:
insert, conditional consume, refresh-token insert, family record, and one ES256 signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bastion.auth.passwords import TEST, PasswordHasher
from bastion.auth.service import Account
from bastion.config import OAuthClient, Settings
from bastion.oauth import page, pkce
from bastion.oauth.clients import Client
from bastion.oauth.errors import OAuthError
from bastion.oauth.server import AuthorizationRequest, AuthorizationServer, group
from bastion.service.main import create_app, prepare
from bench.timing import best_of, best_of_async, print_micros

VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
REDIRECT = "https://app.example.test/callback"


async def exchanges(directory: Path) -> list[tuple[str, float]]:
    options: dict[str, Any] = {
        "data_dir": directory,
        "oauth_clients": (OAuthClient(client_id="bench", redirect_uris=(REDIRECT,)),),
    }
    settings = Settings(**options)
    app = create_app(settings, password_hasher=PasswordHasher(TEST))
    await prepare(settings)
    rows: list[tuple[str, float]] = []
    async with app.router.lifespan_context(app):
        server: AuthorizationServer = app.state.oauth
        account = Account(uuid.uuid4(), "bench@example.test", PasswordHasher(TEST).hash("x" * 20))
        await app.state.auth.store.create(account)
        request = server.validate(
            group(
                {
                    "response_type": "code",
                    "client_id": "bench",
                    "redirect_uri": REDIRECT,
                    "code_challenge": CHALLENGE,
                    "code_challenge_method": "S256",
                    "state": "s",
                }.items()
            )
        )

        async def issue() -> str:
            location = await server.issue_code(request, account.id)
            return parse_qs(urlsplit(location).query)["code"][0]

        async def issue_and_exchange() -> None:
            code = await issue()
            await server.token(
                {
                    "grant_type": ["authorization_code"],
                    "code": [code],
                    "redirect_uri": [REDIRECT],
                    "client_id": ["bench"],
                    "code_verifier": [VERIFIER],
                }
            )

        async def replay() -> None:
            with contextlib.suppress(OAuthError):  # invalid_grant, as it must be
                await server.token(
                    {
                        "grant_type": ["authorization_code"],
                        "code": [used],
                        "redirect_uri": [REDIRECT],
                        "client_id": ["bench"],
                        "code_verifier": [VERIFIER],
                    }
                )

        used = await issue()
        await issue_and_exchange()
        rows.append(("issue a code (SQLite)", await best_of_async(issue, 200, repeats=3)))
        rows.append(
            (
                "issue + exchange a code (SQLite)",
                await best_of_async(issue_and_exchange, 100, repeats=3),
            )
        )
        rows.append(("refused replay of a used code", await best_of_async(replay, 200, repeats=3)))
    return rows


def main() -> None:
    request = AuthorizationRequest(Client("bench", (REDIRECT,)), REDIRECT, CHALLENGE, "state")
    rows = [
        ("pkce.verify (RFC 7636 App. B)", best_of(lambda: pkce.verify(VERIFIER, CHALLENGE), 20000)),
        ("pkce.check_challenge", best_of(lambda: pkce.check_challenge(CHALLENGE, "S256"), 20000)),
        (
            "login page render (HTML + CSP)",
            best_of(lambda: page.login_page(request, csrf_token="t" * 43), 5000),
        ),
    ]
    with tempfile.TemporaryDirectory() as directory:
        rows += asyncio.run(exchanges(Path(directory)))
    print_micros(rows)


if __name__ == "__main__":
    main()
