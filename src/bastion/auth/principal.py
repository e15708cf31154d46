"""The authenticated caller, as every protected route sees it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: built only from a verified access token.

    ``token_id`` is the token's ``jti``, so a route can log *which* token acted
    without ever logging the token itself.
    """

    user_id: uuid.UUID
    role: str
    token_id: str
