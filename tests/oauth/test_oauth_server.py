"""AuthorizationServer on the real AuthService and SQL stores (SQLite and PostgreSQL).

Attacker's side: PKCE downgrade, wrong verifier, code replay (sequential and concurrent),
a code taken to another client or redirect URI, expired codes (injected clock), open
redirects through the authorization request.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bastion.auth.errors import InvalidCredentials
from bastion.auth.service import AuthService
from bastion.oauth import codes
from bastion.oauth.errors import OAuthError
from bastion.oauth.server import (
    AuthorizationRequest,
    AuthorizationServer,
    PageError,
    RedirectError,
    group,
)
from bastion.service.deps import caller_of
from tests.oauth.flow import (
    CLIENT_ID,
    OTHER_CLIENT_ID,
    REDIRECT_URI,
    App,
    Pkce,
    authorize_params,
    build_app,
    new_pkce,
    oauth_settings,
    query_of,
    running,
)
from tests.service.auth_db import postgres_database, sqlite_url
from tests.support_auth import create_account, new_password


@pytest.fixture(params=["sqlite", "postgresql"])
async def oauth_app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[App]:
    if request.param == "sqlite":
        async with running(
            build_app(oauth_settings(tmp_path, database_url=sqlite_url(tmp_path)))
        ) as app:
            yield app
    else:
        async with (
            postgres_database() as url,
            running(build_app(oauth_settings(tmp_path, database_url=url))) as app,
        ):
            yield app


def server_of(app: App) -> AuthorizationServer:
    server: AuthorizationServer = app.app.state.oauth
    return server


def params(**values: str | list[str]) -> dict[str, list[str]]:
    return {k: (v if isinstance(v, list) else [v]) for k, v in values.items()}


def validate(
    server: AuthorizationServer, pkce: Pkce, **overrides: str | None
) -> AuthorizationRequest:
    return server.validate(group(authorize_params(pkce, **overrides).items()))


async def issue(app: App, pkce: Pkce, user_id: uuid.UUID | None = None) -> tuple[str, uuid.UUID]:
    """A fresh code for a (new) account: (code, user id)."""
    server = server_of(app)
    if user_id is None:
        user_id = (await create_account(app.app)).id
    request = server.validate(group(authorize_params(pkce).items()))
    location = await server.issue_code(request, user_id)
    (code,) = query_of(location)["code"]
    return code, user_id


def exchange(pkce: Pkce, code: str, **overrides: str | None) -> dict[str, list[str]]:
    values: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID,
        "code_verifier": pkce.verifier,
    }
    values.update(overrides)
    return {k: [v] for k, v in values.items() if v is not None}


async def refused(server: AuthorizationServer, request: dict[str, list[str]]) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        await server.token(request)
    return caught.value


async def refresh_works(server: AuthorizationServer, token: str) -> bool:
    try:
        await server.token(
            params(grant_type="refresh_token", refresh_token=token, client_id=CLIENT_ID)
        )
    except OAuthError:
        return False
    return True


# --- authorization request ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "description"),
    [
        ({"client_id": None}, "client_id is missing"),
        ({"client_id": ""}, "client_id is missing"),
        ({"client_id": "unknown"}, "Unknown client"),
        ({"client_id": CLIENT_ID.upper()}, "Unknown client"),
        ({"redirect_uri": None}, "redirect_uri is missing"),
        ({"redirect_uri": REDIRECT_URI + "/"}, "redirect_uri is not registered for this client"),
        (
            {"redirect_uri": REDIRECT_URI + "/../evil"},
            "redirect_uri is not registered for this client",
        ),
        ({"redirect_uri": REDIRECT_URI[:-1]}, "redirect_uri is not registered for this client"),
        (
            {"redirect_uri": REDIRECT_URI.replace("https", "http")},
            "redirect_uri is not registered for this client",
        ),
        (
            {"redirect_uri": "https://evil.example/callback"},
            "redirect_uri is not registered for this client",
        ),
        (
            {"redirect_uri": REDIRECT_URI + "?next=https://evil.example"},
            "redirect_uri is not registered for this client",
        ),
        (
            {"redirect_uri": "com.example.other:/oauth"},  # another client's URI
            "redirect_uri is not registered for this client",
        ),
    ],
    ids=[
        "no-client",
        "empty-client",
        "unknown-client",
        "client-case",
        "no-redirect",
        "redirect-suffix-slash",
        "redirect-extra-path",
        "redirect-prefix",
        "redirect-scheme",
        "redirect-other-host",
        "redirect-open-redirect-query",
        "redirect-of-other-client",
    ],
)
def test_client_and_redirect_errors_stay_on_the_page(
    tmp_path: Path, overrides: dict[str, str | None], description: str
) -> None:
    """RFC 6749 §4.1.2.1: never redirect to an unvalidated URI (open redirector)."""
    server = server_of(build_app(oauth_settings(tmp_path)))
    with pytest.raises(PageError) as caught:
        validate(server, new_pkce(), **overrides)
    assert caught.value.description == description
    assert not isinstance(caught.value, RedirectError)


@pytest.mark.parametrize("name", ["client_id", "redirect_uri"])
def test_repeated_client_or_redirect_stays_on_the_page(tmp_path: Path, name: str) -> None:
    server = server_of(build_app(oauth_settings(tmp_path)))
    request = group(authorize_params(new_pkce()).items())
    request[name] = [request[name][0], "https://evil.example/cb"]
    with pytest.raises(PageError, match="sent more than once"):
        server.validate(request)


@pytest.mark.parametrize(
    ("overrides", "error", "description"),
    [
        (
            {"code_challenge_method": "plain"},
            "invalid_request",
            "transform algorithm not supported: only S256",
        ),
        (
            {"code_challenge_method": None},
            "invalid_request",
            "code_challenge_method required: only S256 is supported",
        ),
        ({"code_challenge": None}, "invalid_request", "code_challenge required (PKCE, RFC 7636)"),
        (
            {"code_challenge": None, "code_challenge_method": None},
            "invalid_request",
            "code_challenge required (PKCE, RFC 7636)",
        ),
        ({"response_type": "token"}, "unsupported_response_type", "only response_type=code"),
        ({"response_type": None}, "invalid_request", "response_type is missing"),
    ],
    ids=["plain", "no-method", "no-challenge", "no-pkce", "implicit", "no-response-type"],
)
def test_request_errors_go_back_to_the_client_with_state(
    tmp_path: Path, overrides: dict[str, str | None], error: str, description: str
) -> None:
    server = server_of(build_app(oauth_settings(tmp_path)))
    with pytest.raises(RedirectError) as caught:
        validate(server, new_pkce(), **overrides)
    location = caught.value.location
    assert location.startswith(REDIRECT_URI + "?")
    assert query_of(location) == {
        "error": [error],
        "error_description": [description],
        "state": ["af0ifjsldkj"],
    }


def test_plain_with_verifier_as_challenge_is_refused(tmp_path: Path) -> None:
    """A downgrade attempt sends plain with a 43-character 'challenge' (the verifier)."""
    server = server_of(build_app(oauth_settings(tmp_path)))
    pkce = new_pkce()
    with pytest.raises(RedirectError) as caught:
        validate(server, pkce, code_challenge=pkce.verifier, code_challenge_method="plain")
    assert caught.value.error == "invalid_request"


def test_repeated_parameters_are_invalid_request(tmp_path: Path) -> None:
    server = server_of(build_app(oauth_settings(tmp_path)))
    pkce = new_pkce()
    request = group(authorize_params(pkce).items())
    request["code_challenge_method"] = ["S256", "plain"]
    with pytest.raises(RedirectError) as caught:
        server.validate(request)
    assert caught.value.error == "invalid_request"
    assert query_of(caught.value.location)["state"] == ["af0ifjsldkj"]
    request = group(authorize_params(pkce).items())
    request["state"] = ["a", "b"]
    with pytest.raises(RedirectError) as caught:
        server.validate(request)
    assert "state" not in query_of(caught.value.location)  # which one would we echo?


def test_state_passes_through_unchanged_or_stays_absent(tmp_path: Path) -> None:
    server = server_of(build_app(oauth_settings(tmp_path)))
    odd = "a b&c=d/é?#%20+"
    request = validate(server, new_pkce(), state=odd)
    assert request.state == odd
    request = validate(server, new_pkce(), state=None)
    assert request.state is None
    with pytest.raises(RedirectError) as caught:
        validate(server, new_pkce(), state=None, code_challenge_method="plain")
    assert "state" not in query_of(caught.value.location)


# --- code exchange ---------------------------------------------------------------------------


async def test_code_exchange_gives_working_tokens(oauth_app: App) -> None:
    server, pkce = server_of(oauth_app), new_pkce()
    code, user_id = await issue(oauth_app, pkce)
    assert codes.well_formed(code)
    result = await server.token(exchange(pkce, code))
    body = result.body()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    principal = caller_of(oauth_app.app.state.bearer_auth.verify(body["access_token"]))
    assert principal.user_id == user_id
    assert await refresh_works(server, body["refresh_token"])


async def test_only_the_code_digest_is_stored(oauth_app: App) -> None:
    from sqlalchemy import select

    from bastion.service.oauth_store import AuthorizationCode

    code, _ = await issue(oauth_app, new_pkce())
    async with oauth_app.app.state.database.session() as session:
        stored = list(await session.scalars(select(AuthorizationCode.code_hash)))
    assert stored == [codes.digest(code)]
    assert code not in stored


async def test_wrong_verifier_is_invalid_grant_and_burns_the_code(oauth_app: App) -> None:
    server, pkce = server_of(oauth_app), new_pkce()
    code, _ = await issue(oauth_app, pkce)
    error = await refused(server, exchange(pkce, code, code_verifier=new_pkce().verifier))
    assert (error.error, error.description, error.status) == (
        "invalid_grant",
        "Invalid authorization code",
        400,
    )
    # Single use means single use: the right verifier afterwards gets nothing either.
    assert (await refused(server, exchange(pkce, code))).error == "invalid_grant"


async def test_challenge_as_verifier_is_refused(oauth_app: App) -> None:
    """A client (or attacker) acting as if the method were plain."""
    server, pkce = server_of(oauth_app), new_pkce()
    code, _ = await issue(oauth_app, pkce)
    error = await refused(server, exchange(pkce, code, code_verifier=pkce.challenge))
    assert error.error == "invalid_grant"


@pytest.mark.parametrize(
    ("verifier", "error", "description"),
    [
        (None, "invalid_request", "code_verifier is missing (PKCE, RFC 7636 §4.5)"),
        ("short", "invalid_request", "code_verifier must be 43-128 unreserved characters"),
        ("a" * 129, "invalid_request", "code_verifier must be 43-128 unreserved characters"),
        ("a" * 42 + "/", "invalid_request", "code_verifier must be 43-128 unreserved characters"),
    ],
    ids=["missing", "short", "long", "reserved-char"],
)
async def test_missing_or_malformed_verifier_leaves_the_code_usable(
    oauth_app: App, verifier: str | None, error: str, description: str
) -> None:
    server, pkce = server_of(oauth_app), new_pkce()
    code, _ = await issue(oauth_app, pkce)
    refusal = await refused(server, exchange(pkce, code, code_verifier=verifier))
    assert (refusal.error, refusal.description) == (error, description)
    assert (await server.token(exchange(pkce, code))).access_token


async def test_code_for_another_client_is_refused(oauth_app: App) -> None:
    """RFC 6749 §4.1.3: the code was issued to mobile-app; other-app presents it."""
    server, pkce = server_of(oauth_app), new_pkce()
    code, _ = await issue(oauth_app, pkce)
    error = await refused(server, exchange(pkce, code, client_id=OTHER_CLIENT_ID))
    assert error.error == "invalid_grant"


@pytest.mark.parametrize(
    "redirect_uri",
    [
        REDIRECT_URI + "/",
        REDIRECT_URI + "x",
        REDIRECT_URI[:-1],
        REDIRECT_URI + "/extra",
        REDIRECT_URI.replace("https:", "http:"),
        "com.example.other:/oauth",
    ],
    ids=["slash", "suffix", "prefix", "extra-path", "scheme", "other-client-uri"],
)
async def test_redirect_uri_must_equal_the_authorization_requests(
    oauth_app: App, redirect_uri: str
) -> None:
    server, pkce = server_of(oauth_app), new_pkce()
    code, _ = await issue(oauth_app, pkce)
    error = await refused(server, exchange(pkce, code, redirect_uri=redirect_uri))
    assert error.error == "invalid_grant"


async def test_expired_code_is_refused(oauth_app: App) -> None:
    server, pkce = server_of(oauth_app), new_pkce()
    now = [1_900_000_000.0]
    server.clock = lambda: now[0]
    code, _ = await issue(oauth_app, pkce)
    now[0] += 60  # lifetime is 60 s: at 60 s it is over
    assert (await refused(server, exchange(pkce, code))).error == "invalid_grant"
    code, _ = await issue(oauth_app, pkce)
    now[0] += 59
    assert (await server.token(exchange(pkce, code))).access_token


async def test_replayed_code_revokes_the_first_exchanges_tokens(oauth_app: App) -> None:
    """RFC 6749 §4.1.2, RFC 9700 §4.2.1, ASVS 10.4.2 (pitfall #22: single use is the app's job)."""
    server, pkce = server_of(oauth_app), new_pkce()
    code, _ = await issue(oauth_app, pkce)
    first = await server.token(exchange(pkce, code))
    error = await refused(server, exchange(pkce, code))
    assert (error.error, error.description) == ("invalid_grant", "Invalid authorization code")
    assert not await refresh_works(server, first.refresh_token)


async def test_replay_after_rotation_revokes_the_rotated_token(oauth_app: App) -> None:
    """The first exchange's refresh token was already rotated: its successor dies too."""
    server, pkce = server_of(oauth_app), new_pkce()
    code, _ = await issue(oauth_app, pkce)
    first = await server.token(exchange(pkce, code))
    rotated = await server.token(
        params(grant_type="refresh_token", refresh_token=first.refresh_token, client_id=CLIENT_ID)
    )
    await refused(server, exchange(pkce, code))
    assert not await refresh_works(server, rotated.refresh_token)


async def test_concurrent_exchanges_of_one_code(oauth_app: App) -> None:
    """Eight exchanges race with one code: at most one gets tokens, and none of the refresh
    tokens handed out survives (the others are replays, which revoke the first's family)."""
    server, pkce = server_of(oauth_app), new_pkce()
    code, _ = await issue(oauth_app, pkce)
    outcomes = await asyncio.gather(
        *(server.token(exchange(pkce, code)) for _ in range(8)), return_exceptions=True
    )
    successes = [o for o in outcomes if not isinstance(o, BaseException)]
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(successes) <= 1
    assert all(isinstance(f, OAuthError) and f.error == "invalid_grant" for f in failures)
    for success in successes:
        assert not await refresh_works(server, success.refresh_token)


async def test_unknown_and_malformed_codes(oauth_app: App) -> None:
    server, pkce = server_of(oauth_app), new_pkce()
    for code in (codes.new_code(), "x", "A" * 44, "' OR 1=1 --" + "a" * 32):
        assert (await refused(server, exchange(pkce, code))).error == "invalid_grant"


@pytest.mark.parametrize(
    ("request_params", "error", "description"),
    [
        ({"client_id": CLIENT_ID}, "invalid_request", "grant_type is missing"),
        (
            {"grant_type": "password", "client_id": CLIENT_ID},
            "unsupported_grant_type",
            "grant_type must be authorization_code or refresh_token",
        ),
        (
            {"grant_type": "client_credentials", "client_id": CLIENT_ID},
            "unsupported_grant_type",
            "grant_type must be authorization_code or refresh_token",
        ),
        ({"grant_type": "authorization_code"}, "invalid_request", "client_id is missing"),
        (
            {"grant_type": "authorization_code", "client_id": "nope"},
            "invalid_client",
            "Unknown client",
        ),
        (
            {"grant_type": "refresh_token", "client_id": CLIENT_ID},
            "invalid_request",
            "refresh_token is missing",
        ),
        (
            {"grant_type": "authorization_code", "client_id": CLIENT_ID},
            "invalid_request",
            "code is missing",
        ),
    ],
    ids=[
        "no-grant",
        "password-grant",
        "client-credentials",
        "no-client",
        "unknown-client",
        "no-refresh-token",
        "no-code",
    ],
)
async def test_token_request_errors(
    tmp_path: Path, request_params: dict[str, str], error: str, description: str
) -> None:
    server = server_of(build_app(oauth_settings(tmp_path)))
    refusal = await refused(server, params(**request_params))
    assert (refusal.error, refusal.description, refusal.status) == (error, description, 400)


async def test_repeated_token_parameter_is_invalid_request(tmp_path: Path) -> None:
    server = server_of(build_app(oauth_settings(tmp_path)))
    refusal = await refused(
        server, {"grant_type": ["authorization_code"], "client_id": [CLIENT_ID, OTHER_CLIENT_ID]}
    )
    assert (refusal.error, refusal.description) == (
        "invalid_request",
        "client_id sent more than once",
    )


async def test_refresh_grant_rotates_and_detects_reuse(oauth_app: App) -> None:
    server, pkce = server_of(oauth_app), new_pkce()
    code, _ = await issue(oauth_app, pkce)
    first = await server.token(exchange(pkce, code))
    second = await server.token(
        params(grant_type="refresh_token", refresh_token=first.refresh_token, client_id=CLIENT_ID)
    )
    assert second.refresh_token != first.refresh_token
    # The rotated-out token again: reuse → invalid_grant and the whole family is revoked.
    error = await refused(
        server,
        params(grant_type="refresh_token", refresh_token=first.refresh_token, client_id=CLIENT_ID),
    )
    assert (error.error, error.description) == ("invalid_grant", "Invalid refresh token")
    assert not await refresh_works(server, second.refresh_token)


# --- browser sessions ------------------------------------------------------------------------


async def test_browser_session_login_and_password_change(oauth_app: App) -> None:
    server = server_of(oauth_app)
    auth: AuthService = oauth_app.app.state.auth
    password = new_password()
    account = await create_account(oauth_app.app, password=password)
    with pytest.raises(InvalidCredentials):
        await server.login(account.email, password + "x")
    with pytest.raises(InvalidCredentials):
        await server.login("nobody-" + account.email, password)
    session_id, user_id = await server.login(account.email.upper(), password)
    assert user_id == account.id
    assert await server.session_user(session_id) == account.id
    assert await server.session_user(None) is None
    assert await server.session_user(session_id[:-1]) is None
    # A password change (or reset) ends the browser session (ASVS 7.4.3).
    await auth.store.set_password_hash(account.id, auth.hasher.hash(new_password()))
    assert await server.session_user(session_id) is None


async def test_browser_session_expires(oauth_app: App) -> None:
    server = server_of(oauth_app)
    now = [1_900_000_000.0]
    server.clock = lambda: now[0]
    password = new_password()
    account = await create_account(oauth_app.app, password=password)
    session_id, _ = await server.login(account.email, password)
    now[0] += server.session_ttl - 1
    assert await server.session_user(session_id) == account.id
    now[0] += 1
    assert await server.session_user(session_id) is None
