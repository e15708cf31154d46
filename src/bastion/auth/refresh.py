"""Refresh tokens: opaque 256-bit random strings; only their SHA-256 digest is stored.

They travel only in one cookie (the contract's), never in a JSON body or a URL::

    refresh_token=<token>; HttpOnly; Secure; SameSite=Strict; Path=/api/v1/auth; Max-Age=604800

``HttpOnly`` keeps scripts (XSS) away from it, ``Secure`` keeps it off plain HTTP,
``SameSite=Strict`` and the narrow ``Path`` mean browsers send it only to the auth endpoints
and never on a cross-site request (CSRF on /refresh and /logout).

Rotation and reuse detection live in the store (one conditional ``UPDATE ... WHERE revoked
= false``, so two concurrent refreshes with one token yield exactly one success) and in
:class:`bastion.auth.service.AuthService`.
"""

from __future__ import annotations

import hashlib
import re
import secrets

COOKIE_NAME = "refresh_token"
COOKIE_PATH = "/api/v1/auth"
DEFAULT_TTL = 7 * 24 * 3600  # seconds
TOKEN_BYTES = 32  # 256 bits from the OS CSPRNG (ASVS 7.2.3 asks for at least 128)

# What token_urlsafe(32) produces: 43 base64url characters. Anything else is refused
# before it is hashed or looked up.
_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def new_token() -> str:
    """A fresh refresh token."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def digest(token: str) -> str:
    """The stored form of a high-entropy token: SHA-256, hex.

    A fast hash is right here (unlike passwords): 256 random bits cannot be guessed, and a
    stolen database must not yield usable tokens.
    """
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def well_formed(token: str | None) -> bool:
    """True when *token* has the shape of one of ours (cheap pre-check, no oracle)."""
    return token is not None and _SHAPE.fullmatch(token) is not None


def set_cookie_header(token: str, max_age: int = DEFAULT_TTL) -> str:
    """The ``Set-Cookie`` value that delivers *token*."""
    return (
        f"{COOKIE_NAME}={token}; HttpOnly; Secure; SameSite=Strict; "
        f"Path={COOKIE_PATH}; Max-Age={max_age}"
    )


def clear_cookie_header() -> str:
    """The ``Set-Cookie`` value that makes the browser drop the cookie (logout)."""
    return (
        f"{COOKIE_NAME}=; HttpOnly; Secure; SameSite=Strict; Path={COOKIE_PATH}; "
        "Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    )
