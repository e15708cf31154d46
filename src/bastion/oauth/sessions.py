"""The authorization server's browser session: who is logged in at ``/oauth/authorize``.

After a successful login on the OAuth form the browser holds one cookie::

    __Host-bastion_oauth=<256-bit random id>; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age=…

* ``__Host-`` (RFC 6265bis §4.1.3.2): the browser accepts it only with ``Secure``, ``Path=/``
  and no ``Domain``, so a sibling subdomain cannot plant or overwrite it (session fixation
  by cookie tossing).
* ``HttpOnly``: no script reads it. ``SameSite=Lax``: sent on the top-level GET navigation
  an app opens to ``/oauth/authorize`` (that is how a second authorize needs no password),
  never on a cross-site POST.
* The id is opaque; the database keeps only its SHA-256 (a stolen table opens no session).
* The session remembers a fingerprint of the user's password hash when it was opened: a
  password change or reset ends every browser session of that user (ASVS 7.4.3).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "COOKIE_NAME",
    "DEFAULT_TTL",
    "BrowserSession",
    "SessionStore",
    "clear_cookie_header",
    "digest",
    "new_session_id",
    "password_fingerprint",
    "set_cookie_header",
    "well_formed",
]

COOKIE_NAME = "__Host-bastion_oauth"
DEFAULT_TTL = 8 * 3600  # absolute lifetime (ASVS 7.3.2); a login form again after that
_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def well_formed(session_id: str | None) -> bool:
    return session_id is not None and _SHAPE.fullmatch(session_id) is not None


def password_fingerprint(password_hash: str) -> str:
    """SHA-256 of the stored argon2 string: changes whenever the password does."""
    return hashlib.sha256(password_hash.encode()).hexdigest()


def set_cookie_header(session_id: str, max_age: int = DEFAULT_TTL) -> str:
    return f"{COOKIE_NAME}={session_id}; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}"


def clear_cookie_header() -> str:
    return (
        f"{COOKIE_NAME}=; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age=0; "
        "Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    )


@dataclass(frozen=True, slots=True)
class BrowserSession:
    user_id: uuid.UUID
    password_fingerprint: str
    expires_at: float


class SessionStore(Protocol):
    async def add(self, session_hash: str, session: BrowserSession, *, now: float) -> None:
        """Store a session (and purge expired ones)."""
        ...

    async def get(self, session_hash: str, now: float) -> BrowserSession | None:
        """The live (unexpired) session with this digest, or ``None``."""
        ...

    async def delete(self, session_hash: str) -> None: ...

    async def delete_user(self, user_id: uuid.UUID) -> None:
        """End every browser session of *user_id* (logout ends them all)."""
        ...
