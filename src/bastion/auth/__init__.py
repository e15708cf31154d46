"""The stack's token machinery, usable by any Starlette/FastAPI app.

Key ring + JWKS + rotation (:mod:`.keys`), access tokens (:mod:`.tokens`), verification keys
from JWKs (:mod:`.jwk`), key sources (:mod:`.keysource`, :mod:`.jwks` for an issuer's keys
over the network), bearer authentication for any issuer (:mod:`.bearer`: ``BearerAuth``),
refresh tokens (:mod:`.refresh`), passwords (:mod:`.passwords`), reset tokens (:mod:`.reset`)
and the account flows with uniform errors and timing (:mod:`.service`). Nothing here imports
FastAPI or SQLAlchemy: storage comes in through the :class:`AccountStore` protocol, mail
through :class:`Mailer`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bastion.auth.bearer import BearerAuth, RequireBearer, bearer_token
from bastion.auth.keys import KeyRing, SigningKey
from bastion.auth.principal import Principal
from bastion.auth.tokens import IssuedToken, TokenIssuer, TokenVerifier

if TYPE_CHECKING:
    from bastion.auth.passwords import Argon2Profile, PasswordHasher, PasswordPolicy
    from bastion.auth.reset import Mailer
    from bastion.auth.service import Account, AccountStore, AuthService, Session

# The account machinery needs argon2-cffi, which a bare install of the stack may not have:
# it is imported when first used, so `from bastion.auth import BearerAuth` never needs it.
_LAZY = {
    "Argon2Profile": "bastion.auth.passwords",
    "PasswordHasher": "bastion.auth.passwords",
    "PasswordPolicy": "bastion.auth.passwords",
    "Mailer": "bastion.auth.reset",
    "Account": "bastion.auth.service",
    "AccountStore": "bastion.auth.service",
    "AuthService": "bastion.auth.service",
    "Session": "bastion.auth.service",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bastion.auth' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Account",
    "AccountStore",
    "Argon2Profile",
    "AuthService",
    "BearerAuth",
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
    "bearer_token",
]
