"""Bearer tokens from any issuer: ``BearerAuth`` for Starlette, FastAPI and raw ASGI.

::

    auth = BearerAuth(issuer="https://login.example.com/", audience="orders-api")

    @app.get("/orders")
    async def orders(user: Principal = Depends(auth)): ...          # FastAPI
    @app.delete("/orders/{id}", dependencies=[Depends(auth.require(scopes=["orders:write"]))])

    async def endpoint(request):                                     # Starlette
        user = await auth(request)

Where the keys come from (exactly one): OIDC discovery from ``issuer`` (the default), a
``jwks_url``, a static ``jwks`` set, or bastion's own ``key_ring``. The verification rules
are :class:`bastion.auth.tokens.TokenVerifier`'s; the fetching and caching rules
:class:`bastion.auth.jwks.RemoteKeys`'.

Answers (RFC 6750 §3, the contract's error shape), raised as :class:`bastion.errors.HTTPError`
for the safe-errors layer of ``secure()`` to render:

* no ``Authorization`` header: ``401 {"error":"Authentication required"}`` with
  ``WWW-Authenticate: Bearer``;
* a token presented and refused, whatever the reason (kept internal, logged at DEBUG on
  ``bastion.auth``): ``401 {"error":"Invalid token"}`` with
  ``WWW-Authenticate: Bearer error="invalid_token"``;
* ``auth.require(scopes=[...])`` and a token lacking one of them: ``403
  {"error":"Insufficient scope"}`` with ``WWW-Authenticate: Bearer error="insufficient_scope",
  scope="..."``.

Only the ``Authorization`` header is read: a token in the query string (RFC 6750 §2.3) is
never accepted, since URLs end up in logs, histories and ``Referer`` headers.

This module does not use ``from __future__ import annotations``: FastAPI reads the parameter
annotation of ``BearerAuth.__call__`` at runtime to hand it the request.
"""

import asyncio
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from starlette.requests import HTTPConnection

from bastion.asgi import ASGIApp, Receive, Scope, Send, get_headers, send_error
from bastion.auth.errors import TokenError, UnknownKey
from bastion.auth.jwk import DEFAULT_ALGORITHMS, pinned_algorithms
from bastion.auth.jwks import DEFAULT_TIMEOUT, RemoteKeys
from bastion.auth.keys import KeyRing
from bastion.auth.keysource import KeySource, RingKeys, StaticKeys
from bastion.auth.principal import Principal
from bastion.auth.tokens import DEFAULT_LEEWAY, DEFAULT_MAX_LENGTH, DEFAULT_TYPES, TokenVerifier
from bastion.errors import ConfigError, HTTPError

log = logging.getLogger("bastion.auth")

PRINCIPAL_KEY = "bastion.principal"
"""``scope[PRINCIPAL_KEY]``: the :class:`Principal` of an authenticated request."""
_VERIFIED_BY = "bastion.principal_by"  # the BearerAuth that put it there

# RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token; the scheme is case-insensitive
# (RFC 9110 §11.1). b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_BEARER = re.compile(rb"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*) *")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")

MISSING_MESSAGE = "Authentication required"
INVALID_MESSAGE = "Invalid token"
SCOPE_MESSAGE = "Insufficient scope"
# RFC 6750 §3 / RFC 9110 §15.5.2: every 401 says how to authenticate; error="invalid_token"
# only when a token was presented and refused (§3.1: no error code when none was sent).
CHALLENGE = (b"www-authenticate", b"Bearer")
INVALID_CHALLENGE = (b"www-authenticate", b'Bearer error="invalid_token"')


class MissingToken(HTTPError):
    """No bearer credentials were presented."""

    def __init__(self) -> None:
        super().__init__(401, MISSING_MESSAGE, headers=[CHALLENGE])


class RefusedToken(HTTPError):
    """A bearer token was presented and refused (the reason stays internal)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(401, INVALID_MESSAGE, headers=[INVALID_CHALLENGE], detail=detail)


class InsufficientScope(HTTPError):
    """A valid token without every scope the route needs (RFC 6750 §3.1)."""

    def __init__(self, challenge: bytes, detail: str = "") -> None:
        super().__init__(
            403, SCOPE_MESSAGE, headers=[(b"www-authenticate", challenge)], detail=detail
        )


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


class BearerAuth:
    """Verifies ``Authorization: Bearer`` JWTs of one issuer; a FastAPI dependency as is.

    Keys (give at most one; none means OIDC discovery from *issuer*):

    * *jwks_url*: the issuer's JWKS (HTTPS; plain HTTP only to a loopback host);
    * *jwks*: a JWK Set given in code (``{"keys": [...]}``), checked at construction;
    * *key_ring*: bastion's own :class:`~bastion.auth.keys.KeyRing`;
    * *keys*: any :class:`~bastion.auth.keysource.KeySource` (advanced).

    Rules:

    * *issuer*: the exact ``iss`` of the tokens (and, without other keys, where discovery
      starts). *audience*: this API's identifier; a string or several. *audience_claim*:
      the claim that must name it (``aud``; ``client_id`` for Amazon Cognito's access
      tokens, which have no ``aud``).
    * *algorithms*: the pinned list (default ``RS256``, ``ES256``, ``EdDSA``); ``none`` and
      HMAC are refused here even if asked for. The key ring's own algorithm by default.
    * ``iss``, ``aud``, ``exp`` and ``sub`` are always required, ``nbf``/``iat`` checked
      when present; *required_claims* adds more. *leeway*: seconds of clock skew (30).
    * *typ*: accepted ``typ`` header values when one is present (``JWT``, ``at+jwt``).
    * *require_low_s*: refuse high-S ECDSA signatures (default). Issuers that do not
      normalise S (most ECDSA signers, PyJWT included) make a high-S signature half of the
      time; set it to ``False`` for those, at the price of two valid strings per token.
    * *timeout*, *ssl_context*: for fetching remote keys. *clock*: for the time claims.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str | Sequence[str],
        jwks_url: str | None = None,
        jwks: Mapping[str, Any] | None = None,
        key_ring: KeyRing | None = None,
        keys: KeySource | None = None,
        algorithms: Iterable[str] | None = None,
        required_claims: Iterable[str] = (),
        leeway: int = DEFAULT_LEEWAY,
        typ: Iterable[str] = DEFAULT_TYPES,
        audience_claim: str = "aud",
        require_low_s: bool = True,
        max_token_length: int = DEFAULT_MAX_LENGTH,
        timeout: float = DEFAULT_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        given = [
            name
            for name, value in (
                ("jwks_url", jwks_url),
                ("jwks", jwks),
                ("key_ring", key_ring),
                ("keys", keys),
            )
            if value is not None
        ]
        if len(given) > 1:
            raise ConfigError(given[1], f"give only one of {', '.join(given)}")
        if not isinstance(issuer, str) or not issuer:
            raise ConfigError("issuer", "must be a non-empty string (the tokens' exact iss)")
        if not isinstance(require_low_s, bool):
            raise ConfigError("require_low_s", "must be True or False")
        if key_ring is not None:
            if algorithms is not None and tuple(algorithms) != (key_ring.alg,):
                raise ConfigError("algorithms", f"the key ring signs with {key_ring.alg} only")
            source: KeySource = RingKeys(key_ring, low_s=require_low_s)
        elif keys is not None:
            source = keys
        else:
            pinned = pinned_algorithms(DEFAULT_ALGORITHMS if algorithms is None else algorithms)
            if jwks is not None:
                if not isinstance(jwks, Mapping):
                    raise ConfigError("jwks", 'give a JWK Set: {"keys": [...]}')
                source = StaticKeys(jwks, pinned, low_s=require_low_s)
            elif jwks_url is not None:
                source = RemoteKeys(
                    jwks_url=jwks_url,
                    algorithms=pinned,
                    low_s=require_low_s,
                    timeout=timeout,
                    ssl_context=ssl_context,
                )
            else:
                source = RemoteKeys(
                    issuer=issuer,
                    algorithms=pinned,
                    low_s=require_low_s,
                    timeout=timeout,
                    ssl_context=ssl_context,
                )
        self.keys = source
        self.verifier = TokenVerifier(
            source,
            issuer=issuer,
            audience=audience,
            leeway=leeway,
            max_length=max_token_length,
            required_claims=required_claims,
            typ=typ,
            audience_claim=audience_claim,
            clock=clock,
        )

    @property
    def issuer(self) -> str:
        return self.verifier.issuer

    # --- verification ---------------------------------------------------------------------

    def _principal(self, token: str) -> Principal:
        self.keys.poll()
        return Principal.from_claims(self.verifier.decode(token))

    def verify(self, token: str) -> Principal:
        """The principal of *token* (blocking: may wait for the issuer's keys; use
        :meth:`authenticate` in async code). Raises a ``TokenError`` subclass if refused."""
        try:
            return self._principal(token)
        except UnknownKey:
            fetch = self.keys.refetch()
            if fetch is None or not fetch.result():
                raise
        return self._principal(token)

    async def _verify_after_refetch(self, token: str) -> Principal:
        """The token named a key we do not know: the issuer may have rotated its keys. Wait
        for a fetch (shared, throttled, off the event loop), then try once more."""
        fetch = self.keys.refetch()
        if fetch is None or not await asyncio.shield(asyncio.wrap_future(fetch)):
            raise UnknownKey("no key with this kid, and no new keys (throttled or unreachable)")
        return self._principal(token)

    async def authenticate(self, scope: Scope) -> Principal:
        """The request's principal, also stored in ``scope["bastion.principal"]``.

        Raises :class:`MissingToken` or :class:`RefusedToken` (401). A request already
        authenticated by this object (two dependencies on one route) is not verified twice.
        """
        if scope.get(_VERIFIED_BY) is self:
            principal: Principal = scope[PRINCIPAL_KEY]
            return principal
        token = bearer_token(scope)
        if token is None:
            raise MissingToken()
        try:
            try:
                principal = self._principal(token)  # the usual case: no await at all
            except UnknownKey:
                principal = await self._verify_after_refetch(token)
        except TokenError as exc:
            log.debug("bearer token refused: %s: %s", type(exc).__name__, exc.detail)
            raise RefusedToken(f"{type(exc).__name__}: {exc.detail}") from None
        scope[PRINCIPAL_KEY] = principal
        scope[_VERIFIED_BY] = self
        return principal

    async def __call__(self, request: HTTPConnection) -> Principal:
        """FastAPI dependency (``Depends(auth)``), or ``await auth(request)`` in Starlette."""
        return await self.authenticate(request.scope)

    def require(
        self, *, scopes: Iterable[str] = ()
    ) -> Callable[[HTTPConnection], Awaitable[Principal]]:
        """A dependency that needs a valid token carrying *every* one of *scopes* (403 if not).

        ``Depends(auth.require(scopes=["orders:write"]))``; in Starlette,
        ``await auth.require(scopes=[...])(request)``.
        """
        if isinstance(scopes, str):
            raise ConfigError("scopes", "give a list of scopes, e.g. ['orders:write']")
        needed = tuple(dict.fromkeys(scopes))
        for name in needed:
            if not isinstance(name, str) or not _SCOPE_TOKEN.fullmatch(name):
                raise ConfigError("scopes", f"{name!r} is not a scope token (RFC 6749 §3.3)")
        required = frozenset(needed)
        challenge = b'Bearer error="insufficient_scope", scope="%s"' % " ".join(needed).encode()

        async def require_scopes(request: HTTPConnection) -> Principal:
            principal = await self.authenticate(request.scope)
            if not required.issubset(principal.scopes):
                missing = " ".join(sorted(required - principal.scopes))
                raise InsufficientScope(challenge, detail=f"missing scopes: {missing}")
            return principal

        return require_scopes


class RequireBearer:
    """Pure ASGI middleware: requests under *prefixes* need a valid token of *auth*.

    The principal is stored in ``scope["bastion.principal"]`` for the app below; refusals
    are answered here, in the contract's shape.
    """

    def __init__(
        self, app: ASGIApp, *, auth: BearerAuth, prefixes: tuple[str, ...] = ("/",)
    ) -> None:
        if not prefixes or any(not p.startswith("/") for p in prefixes):
            raise ConfigError("prefixes", "give one or more paths starting with '/'")
        self.app = app
        self.auth = auth
        self.prefixes = tuple(prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        try:
            await self.auth.authenticate(scope)
        except HTTPError as exc:
            await send_error(scope, send, exc.status, exc.public_message, headers=exc.headers)
            return
        await self.app(scope, receive, send)


__all__ = [
    "PRINCIPAL_KEY",
    "BearerAuth",
    "InsufficientScope",
    "MissingToken",
    "Principal",
    "RefusedToken",
    "RequireBearer",
    "bearer_token",
]
