"""The authorization server's rules, framework-free: authorize requests, codes, the token grants.

:class:`AuthorizationServer` talks to four things it does not own: the registered clients,
a :class:`~bastion.oauth.codes.CodeStore`, a :class:`~bastion.oauth.sessions.SessionStore`
and the accounts (:class:`bastion.auth.service.AuthService`, which already holds the
login rules, the access-token issuer and refresh-token rotation with reuse detection). The
HTTP side (form parsing, HTML, cookies) lives in the service's route module.

Authorization request (RFC 6749 §4.1.1, §4.1.2.1):

1. ``client_id`` and ``redirect_uri`` are checked first. While either is missing, unknown,
   repeated or not an exact registered match, the error is shown to the user and never
   redirected (:class:`PageError`): a redirect to an unvalidated URI is an open redirector.
2. After that, errors go back to the client at its redirect URI (:class:`RedirectError`)
   with ``error``, ``error_description`` and ``state`` (when one was sent, unchanged).
3. ``response_type`` must be ``code`` (``unsupported_response_type`` otherwise); PKCE must be
   ``S256`` (``invalid_request`` for ``plain`` or no method; :mod:`bastion.oauth.pkce`).
   Parameters sent twice are ``invalid_request`` (RFC 6749 §3.1); empty ones count as absent.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from bastion.auth.errors import InvalidRefreshToken
from bastion.errors import ConfigError
from bastion.oauth import codes, pkce, sessions
from bastion.oauth.clients import Client, ClientRegistry
from bastion.oauth.errors import (
    INVALID_CLIENT,
    INVALID_GRANT,
    INVALID_REQUEST,
    UNSUPPORTED_GRANT_TYPE,
    UNSUPPORTED_RESPONSE_TYPE,
    OAuthError,
)

__all__ = [
    "AccountService",
    "AuthorizationRequest",
    "AuthorizationServer",
    "PageError",
    "RedirectError",
    "TokenResponse",
    "group",
    "redirect_location",
]


class _Account(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def password_hash(self) -> str: ...


class _Issued(Protocol):
    @property
    def token(self) -> str: ...

    @property
    def expires_in(self) -> int: ...


class _Session(Protocol):
    @property
    def access(self) -> _Issued: ...

    @property
    def refresh_token(self) -> str: ...

    @property
    def family_id(self) -> uuid.UUID: ...


class AccountService(Protocol):
    """What the OAuth flows need from :class:`bastion.auth.service.AuthService`."""

    async def authenticate(self, email: str, password: str) -> Any: ...

    async def account(self, user_id: uuid.UUID) -> Any: ...

    async def start_session(self, account: Any) -> Any: ...

    async def refresh(self, token: str | None) -> Any: ...

    async def revoke_family(self, family_id: uuid.UUID) -> None: ...


class PageError(OAuthError):
    """An authorization request error shown to the user, never redirected (RFC 6749 §4.1.2.1)."""


class RedirectError(OAuthError):
    """An authorization request error sent back to the validated redirect URI."""

    def __init__(self, error: OAuthError, redirect_uri: str, state: str | None) -> None:
        super().__init__(error.error, error.description, status=302, detail=error.detail)
        self.redirect_uri = redirect_uri
        self.state = state

    @property
    def location(self) -> str:
        params = {"error": self.error, "error_description": self.description}
        return redirect_location(self.redirect_uri, params, self.state)


def redirect_location(redirect_uri: str, params: Mapping[str, str], state: str | None) -> str:
    """*redirect_uri* with *params* (and ``state``) added to its query (RFC 6749 §4.1.2).

    A registered URI may carry a query of its own, which is kept (RFC 6749 §3.1.2); it never
    carries a fragment (refused at registration).
    """
    query = dict(params)
    if state is not None:
        query["state"] = state
    return redirect_uri + ("&" if "?" in redirect_uri else "?") + urlencode(query)


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A validated authorization request."""

    client: Client
    redirect_uri: str
    code_challenge: str
    state: str | None

    def form_fields(self) -> dict[str, str]:
        """The parameters that travel through the login form (hidden fields)."""
        fields = {
            "response_type": "code",
            "client_id": self.client.client_id,
            "redirect_uri": self.redirect_uri,
            "code_challenge": self.code_challenge,
            "code_challenge_method": pkce.S256,
        }
        if self.state is not None:
            fields["state"] = self.state
        return fields


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """A successful token response (RFC 6749 §5.1) with the rotating refresh token."""

    access_token: str
    expires_in: int
    refresh_token: str

    def body(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
        }


def _single(
    params: Mapping[str, list[str]], name: str, fail: Callable[[OAuthError], Exception]
) -> str | None:
    """One value of *name*: absent or empty → None; sent twice → invalid_request (§3.1)."""
    values = params.get(name, [])
    if len(values) > 1:
        raise fail(OAuthError(INVALID_REQUEST, f"{name} sent more than once"))
    return values[0] if values and values[0] != "" else None


def group(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Request parameters by name, every value kept (to see repeated parameters)."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return grouped


def _as_page(error: OAuthError) -> PageError:
    return PageError(error.error, error.description, status=400)


class AuthorizationServer:
    """Authorization code with PKCE for public clients, plus the refresh-token grant."""

    def __init__(
        self,
        clients: ClientRegistry,
        codes_store: codes.CodeStore,
        sessions_store: sessions.SessionStore,
        accounts: AccountService,
        *,
        code_ttl: int = codes.DEFAULT_TTL,
        session_ttl: int = sessions.DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= code_ttl <= 600:  # RFC 6749 §4.1.2: at most 10 minutes
            raise ConfigError("code_ttl", "must be 1..600 seconds")
        if session_ttl <= 0:
            raise ConfigError("session_ttl", "must be positive")
        self.clients = clients
        self.codes = codes_store
        self.sessions = sessions_store
        self.accounts = accounts
        self.code_ttl = code_ttl
        self.session_ttl = session_ttl
        self.clock = clock

    # --- authorization endpoint ---------------------------------------------------------

    def validate(self, params: Mapping[str, list[str]]) -> AuthorizationRequest:
        """A valid request, or :class:`PageError` / :class:`RedirectError` (module docstring)."""
        client_id = _single(params, "client_id", _as_page)
        if client_id is None:
            raise PageError(INVALID_REQUEST, "client_id is missing")
        client = self.clients.get(client_id)
        if client is None:
            raise PageError(INVALID_CLIENT, "Unknown client")
        redirect_uri = _single(params, "redirect_uri", _as_page)
        if redirect_uri is None:
            # RFC 6749 §3.1.2.3 would allow omitting it for one registered URI; OAuth 2.1
            # and RFC 9700 §2.1 want it explicit: no guessing where codes go.
            raise PageError(INVALID_REQUEST, "redirect_uri is missing")
        if not client.allows(redirect_uri):
            raise PageError(INVALID_REQUEST, "redirect_uri is not registered for this client")

        # From here on the redirect URI is trusted: errors go back to the client, with the
        # state exactly as sent (RFC 6749 §4.1.2.1), or none when it was absent or repeated.
        states = params.get("state", [])
        state = states[0] if len(states) == 1 and states[0] != "" else None

        def back(error: OAuthError) -> RedirectError:
            return RedirectError(error, redirect_uri, state)

        if len(states) > 1:
            raise back(OAuthError(INVALID_REQUEST, "state sent more than once"))
        response_type = _single(params, "response_type", back)
        if response_type is None:
            raise back(OAuthError(INVALID_REQUEST, "response_type is missing"))
        if response_type != "code":
            raise back(OAuthError(UNSUPPORTED_RESPONSE_TYPE, "only response_type=code"))
        _single(params, "scope", back)  # no scopes are defined: ignored, but not twice
        try:
            challenge = pkce.check_challenge(
                _single(params, "code_challenge", back),
                _single(params, "code_challenge_method", back),
            )
        except RedirectError:
            raise
        except OAuthError as exc:
            raise back(exc) from None
        return AuthorizationRequest(client, redirect_uri, challenge, state)

    async def issue_code(self, request: AuthorizationRequest, user_id: uuid.UUID) -> str:
        """A new code for *user_id*; returns the ``Location`` that delivers it with ``state``."""
        code = codes.new_code()
        now = self.clock()
        grant = codes.CodeGrant(
            client_id=request.client.client_id,
            redirect_uri=request.redirect_uri,
            code_challenge=request.code_challenge,
            user_id=user_id,
            expires_at=now + self.code_ttl,
        )
        await self.codes.add(codes.digest(code), grant, now=now)
        return redirect_location(request.redirect_uri, {"code": code}, request.state)

    # --- browser sessions ---------------------------------------------------------------

    async def login(self, email: str, password: str) -> tuple[str, uuid.UUID]:
        """Check credentials (AuthService's uniform rules) and open a browser session.

        Returns ``(session id for the cookie, user id)``;
        :class:`~bastion.auth.errors.InvalidCredentials` for an unknown email and a wrong
        password alike.
        """
        account: _Account = await self.accounts.authenticate(email, password)
        session_id = sessions.new_session_id()
        now = self.clock()
        await self.sessions.add(
            sessions.digest(session_id),
            sessions.BrowserSession(
                user_id=account.id,
                password_fingerprint=sessions.password_fingerprint(account.password_hash),
                expires_at=now + self.session_ttl,
            ),
            now=now,
        )
        return session_id, account.id

    async def end_sessions(self, user_id: uuid.UUID) -> None:
        """End every browser session of *user_id* (the API's logout): no more silent codes."""
        await self.sessions.delete_user(user_id)

    async def session_user(self, session_id: str | None) -> uuid.UUID | None:
        """The user of a live browser session whose password has not changed since."""
        if session_id is None or not sessions.well_formed(session_id):
            return None
        session_hash = sessions.digest(session_id)
        session = await self.sessions.get(session_hash, self.clock())
        if session is None:
            return None
        account: _Account | None = await self.accounts.account(session.user_id)
        if account is None or not _same(
            sessions.password_fingerprint(account.password_hash), session.password_fingerprint
        ):
            await self.sessions.delete(session_hash)  # password changed or account gone
            return None
        return session.user_id

    # --- token endpoint -----------------------------------------------------------------

    async def token(self, params: Mapping[str, list[str]]) -> TokenResponse:
        """RFC 6749 §4.1.3 / §6 token request; :class:`OAuthError` when refused."""
        for name, values in params.items():
            if len(values) > 1:  # RFC 6749 §3.2: parameters MUST NOT be included more than once
                raise OAuthError(INVALID_REQUEST, f"{name} sent more than once")
        value = {name: values[0] for name, values in params.items() if values[0] != ""}
        grant_type = value.get("grant_type")
        if grant_type is None:
            raise OAuthError(INVALID_REQUEST, "grant_type is missing")
        client_id = value.get("client_id")
        if client_id is None:
            raise OAuthError(INVALID_REQUEST, "client_id is missing")
        if self.clients.get(client_id) is None:
            # 400, not 401: a public client never authenticates (RFC 6749 §5.2 allows both)
            raise OAuthError(INVALID_CLIENT, "Unknown client")
        if grant_type == "authorization_code":
            return await self._exchange_code(value, client_id)
        if grant_type == "refresh_token":
            return await self._refresh(value)
        raise OAuthError(
            UNSUPPORTED_GRANT_TYPE, "grant_type must be authorization_code or refresh_token"
        )

    async def _exchange_code(self, value: Mapping[str, str], client_id: str) -> TokenResponse:
        code, redirect_uri, verifier = (
            value.get("code"),
            value.get("redirect_uri"),
            value.get("code_verifier"),
        )
        if code is None:
            raise OAuthError(INVALID_REQUEST, "code is missing")
        if redirect_uri is None:
            raise OAuthError(INVALID_REQUEST, "redirect_uri is missing")
        if verifier is None:
            raise OAuthError(INVALID_REQUEST, "code_verifier is missing (PKCE, RFC 7636 §4.5)")
        if not pkce.valid_verifier_syntax(verifier):
            raise OAuthError(INVALID_REQUEST, "code_verifier must be 43-128 unreserved characters")
        if not codes.well_formed(code):
            raise _bad_code("malformed code")
        code_hash = codes.digest(code)
        consumed = await self.codes.consume(code_hash, self.clock())
        if consumed.use is codes.Use.REPLAYED:
            if consumed.family_id is not None:
                await self.accounts.revoke_family(consumed.family_id)
            raise _bad_code("code replayed: tokens of the first exchange revoked")
        grant = consumed.grant
        if consumed.use is not codes.Use.FIRST or grant is None:
            raise _bad_code("unknown code")
        if self.clock() >= grant.expires_at:
            raise _bad_code("expired code")
        if not _same(grant.client_id, client_id):
            raise _bad_code("code issued to another client")  # RFC 6749 §4.1.3
        if not _same(grant.redirect_uri, redirect_uri):
            raise _bad_code("redirect_uri differs from the authorization request")
        if not pkce.verify(verifier, grant.code_challenge):
            raise _bad_code("code_verifier does not match the code_challenge")  # RFC 7636 §4.6
        account = await self.accounts.account(grant.user_id)
        if account is None:
            raise _bad_code("account no longer exists")
        session: _Session = await self.accounts.start_session(account)
        if await self.codes.record_family(code_hash, session.family_id):
            # A replay arrived while we were issuing: nobody gets these tokens.
            await self.accounts.revoke_family(session.family_id)
            raise _bad_code("code replayed during the exchange: tokens revoked")
        return TokenResponse(session.access.token, session.access.expires_in, session.refresh_token)

    async def _refresh(self, value: Mapping[str, str]) -> TokenResponse:
        """Rotation with reuse detection, exactly as ``/api/v1/auth/refresh`` (AuthService)."""
        token = value.get("refresh_token")
        if token is None:
            raise OAuthError(INVALID_REQUEST, "refresh_token is missing")
        try:
            session: _Session = await self.accounts.refresh(token)
        except InvalidRefreshToken as exc:
            raise OAuthError(INVALID_GRANT, "Invalid refresh token", detail=exc.detail) from None
        return TokenResponse(session.access.token, session.access.expires_in, session.refresh_token)


def _bad_code(detail: str) -> OAuthError:
    # One public description for every code failure: the client learns nothing about which
    # check refused (unknown, used, expired, other client, other URI, wrong verifier).
    return OAuthError(INVALID_GRANT, "Invalid authorization code", detail=detail)


def _same(a: str, b: str) -> bool:
    """Constant-time string equality (secrets and values bound to them)."""
    return hmac.compare_digest(a.encode(), b.encode())
