"""Authorization codes: 256-bit random, stored only as SHA-256, 60 seconds, single use.

A code is bound to the client, the exact redirect URI, the PKCE challenge and the user
(RFC 6749 §4.1.3, RFC 7636 §4.4). Single use is decided by the store in one conditional
statement (``UPDATE ... SET used_at = :now WHERE code_hash = :h AND used_at IS NULL``): of
two exchanges racing with one code, exactly one gets the grant.

A code presented again is a replay (RFC 6749 §4.1.2: "the authorization server MUST deny
the request and SHOULD revoke ... all tokens previously issued based on that authorization
code"; RFC 9700 §4.2.1; ASVS 10.4.2). The store remembers which refresh-token family the
first exchange started, and the replay marks the code. Whichever of the two happens second
sees the other's mark and revokes the family:

* replay after the first exchange recorded its family → the replay revokes it;
* replay while the first exchange is still issuing → the first exchange finds the mark when
  it records its family, revokes it and answers ``invalid_grant`` instead of tokens.

A code is used up by any exchange attempt, a failed one included (a wrong verifier does not
leave the code open for a second guess).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

__all__ = [
    "CODE_BYTES",
    "DEFAULT_TTL",
    "CodeGrant",
    "CodeStore",
    "Consumed",
    "Use",
    "digest",
    "new_code",
    "well_formed",
]

CODE_BYTES = 32  # 256 bits from the OS CSPRNG
DEFAULT_TTL = 60  # seconds: RFC 6749 §4.1.2 "maximum ... of 10 minutes"; ASVS 10.4.3 L3: 1 min
_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")  # what token_urlsafe(32) produces


def new_code() -> str:
    """A fresh authorization code (43 base64url characters)."""
    return secrets.token_urlsafe(CODE_BYTES)


def digest(code: str) -> str:
    """The stored form of a code: SHA-256, hex (a stolen table yields no usable code)."""
    return hashlib.sha256(code.encode("ascii")).hexdigest()


def well_formed(code: str | None) -> bool:
    """True when *code* has the shape of one of ours (checked before any lookup)."""
    return code is not None and _SHAPE.fullmatch(code) is not None


@dataclass(frozen=True, slots=True)
class CodeGrant:
    """What a code was issued for. Times are POSIX seconds."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    user_id: uuid.UUID
    expires_at: float


class Use(Enum):
    """What presenting a code did."""

    FIRST = "first"  # it was unused: now used, the grant is returned
    REPLAYED = "replayed"  # it was used before: marked, the first exchange's family returned
    UNKNOWN = "unknown"  # never issued (or purged long after expiry)


@dataclass(frozen=True, slots=True)
class Consumed:
    use: Use
    grant: CodeGrant | None = None
    family_id: uuid.UUID | None = None  # REPLAYED: the first exchange's family, if recorded


class CodeStore(Protocol):
    """Persistence of codes; every method is one atomic statement (or transaction)."""

    async def add(self, code_hash: str, grant: CodeGrant, *, now: float) -> None:
        """Store a new code (and purge codes long expired)."""
        ...

    async def consume(self, code_hash: str, now: float) -> Consumed:
        """Use the code up: FIRST exactly once per code, then REPLAYED (marking it)."""
        ...

    async def record_family(self, code_hash: str, family_id: uuid.UUID) -> bool:
        """Remember the family the exchange started; True when a replay marked the code."""
        ...
