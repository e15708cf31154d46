"""The stack's token machinery, usable by any Starlette/FastAPI app.

Key ring + JWKS + rotation (:mod:`.keys`), access tokens (:mod:`.tokens`), refresh tokens
(:mod:`.refresh`), passwords (:mod:`.passwords`), reset tokens (:mod:`.reset`), the account
flows with uniform errors and timing (:mod:`.service`) and the bearer-token helpers for
ASGI/Starlette apps (:mod:`.bearer`). Nothing here imports FastAPI or SQLAlchemy: storage
comes in through the :class:`AccountStore` protocol, mail through :class:`Mailer`.
"""

from __future__ import annotations

from bastion.auth.bearer import RequireBearer, authenticate, bearer_token
from bastion.auth.keys import KeyRing, SigningKey
from bastion.auth.passwords import Argon2Profile, PasswordHasher, PasswordPolicy
from bastion.auth.principal import Principal
from bastion.auth.reset import Mailer
from bastion.auth.service import Account, AccountStore, AuthService, Session
from bastion.auth.tokens import IssuedToken, TokenIssuer, TokenVerifier

__all__ = [
    "Account",
    "AccountStore",
    "Argon2Profile",
    "AuthService",
    "IssuedToken",
    "KeyRing",
    "Mailer",
    "PasswordHasher",
    "PasswordPolicy",
    "Principal",
    "RequireBearer",
    "Session",
    "SigningKey",
    "TokenIssuer",
    "TokenVerifier",
    "authenticate",
    "bearer_token",
]
