"""Password-reset tokens: single use, 30 minutes, only their SHA-256 digest stored.

The token goes to the account's mailbox (through a :class:`Mailer`), in a link ending in
``?token=<token>``; confirming it sets the new password and revokes every refresh token of
the user (ASVS 7.4.3). A used, expired, unknown or malformed token gives the same answer.
"""

from __future__ import annotations

from typing import Protocol

from bastion.auth.refresh import digest, new_token, well_formed

DEFAULT_TTL = 30 * 60  # seconds
SUBJECT = "Reset your password"


class Mailer(Protocol):
    """Sends one plain-text message. Implementations must never log *text* (it holds a token)."""

    async def send(self, to: str, subject: str, text: str) -> None: ...


def reset_link(base_url: str, token: str) -> str:
    """The link mailed to the user; the contract wants it to end in ``?token=<token>``."""
    return f"{base_url.rstrip('/')}/password-reset?token={token}"


def reset_text(link: str, ttl: int = DEFAULT_TTL) -> str:
    """The body of the reset mail."""
    return (
        "Someone asked to reset the password of your account.\n"
        f"If it was you, open this link within {ttl // 60} minutes:\n\n{link}\n\n"
        "If it was not you, ignore this message: your password stays unchanged.\n"
    )


__all__ = [
    "DEFAULT_TTL",
    "SUBJECT",
    "Mailer",
    "digest",
    "new_token",
    "reset_link",
    "reset_text",
    "well_formed",
]
