"""The stack's token machinery, usable by any Starlette/FastAPI app.

Key ring + JWKS + rotation (:mod:`.keys`), access tokens (:mod:`.tokens`), refresh tokens
(:mod:`.refresh`), passwords (:mod:`.passwords`), reset tokens (:mod:`.reset`), the account
flows with uniform errors and timing (:mod:`.service`) and the bearer-token helpers for
ASGI/Starlette apps (:mod:`.bearer`).
"""

from __future__ import annotations

from bastion.auth.principal import Principal

__all__ = ["Principal"]
