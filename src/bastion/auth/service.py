"""AuthService: the account flows, with uniform errors and uniform timing.

Framework-free and storage-free: it talks to an :class:`AccountStore` (the reference
service implements it with SQLAlchemy) and a :class:`~bastion.auth.reset.Mailer`.

What "uniform" means here, so that no flow tells whether an email has an account, by its
answer or by its time (OWASP ASVS 6.3.8; OWASP Forgot Password cheat sheet, "consistent
message" and uniform time,
https://cheatsheetseries.owasp.org/cheatsheets/Forgot_Password_Cheat_Sheet.html):

* register: the same answer whether or not the email has an account, and the same work —
  the password is hashed either way, then an insert is attempted;
* login: one error (:class:`InvalidCredentials`) for an unknown email and a wrong password,
  and the same work — an unknown email is verified against a dummy hash of the same profile;
* password reset: the caller answers before any per-account work happens (the route runs
  :meth:`request_reset` after the response), so an existing account costs no extra time.

Argon2 runs in worker threads (argon2-cffi releases the GIL), at most ``hash_concurrency``
at a time so a burst of logins cannot exhaust memory (19 MiB each with the OWASP profile).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeVar

from bastion.auth import refresh, reset
from bastion.auth.errors import (
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidResetToken,
    RefreshTokenReused,
)
from bastion.auth.passwords import PasswordHasher, PasswordPolicy
from bastion.auth.tokens import IssuedToken, TokenIssuer
from bastion.errors import ConfigError

T = TypeVar("T")

DEFAULT_ROLE = "user"
MAX_EMAIL_LENGTH = 254  # RFC 5321 §4.5.3.1.3 path limit minus the angle brackets


def normalize_email(email: str) -> str:
    """Trimmed and case-folded: one account per mailbox however it is typed."""
    return email.strip().casefold()


@dataclass(frozen=True, slots=True)
class Account:
    """A user as the auth flows need it."""

    id: uuid.UUID
    email: str
    password_hash: str
    role: str = DEFAULT_ROLE


class Rotation(Enum):
    """What presenting a refresh token did."""

    ROTATED = "rotated"  # it was live: revoked and replaced, in one step
    REUSED = "reused"  # it was already revoked: every token of the user is now revoked
    INVALID = "invalid"  # unknown or expired


@dataclass(frozen=True, slots=True)
class RotationResult:
    outcome: Rotation
    account: Account | None = None


class AccountStore(Protocol):
    """Persistence the flows need. Times are POSIX seconds; hashes are hex SHA-256.

    ``rotate_refresh`` and ``complete_reset`` must be atomic (one conditional UPDATE whose
    row count decides), so concurrent calls with one token succeed at most once.
    """

    async def find_by_email(self, email: str) -> Account | None: ...

    async def get(self, user_id: uuid.UUID) -> Account | None: ...

    async def create(self, account: Account) -> bool:
        """Insert; False (and no change) when the email already has an account."""
        ...

    async def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None: ...

    async def add_refresh(
        self, *, token_hash: str, user_id: uuid.UUID, family_id: uuid.UUID, expires_at: float
    ) -> None: ...

    async def rotate_refresh(
        self, *, token_hash: str, new_hash: str, now: float, expires_at: float
    ) -> RotationResult: ...

    async def revoke_refresh(self, token_hash: str, now: float) -> None: ...

    async def revoke_family(self, family_id: uuid.UUID, now: float) -> None:
        """Revoke every live token of one family (a login and its rotations)."""
        ...

    async def add_reset(
        self, *, token_hash: str, user_id: uuid.UUID, expires_at: float
    ) -> None: ...

    async def reset_account(self, token_hash: str, now: float) -> Account | None:
        """The account of a live (unused, unexpired) reset token, without using it up."""
        ...

    async def complete_reset(self, *, token_hash: str, now: float, password_hash: str) -> bool:
        """Use the token, set the password, revoke every refresh token: all or nothing."""
        ...


@dataclass(frozen=True, slots=True)
class Session:
    """What a successful login or refresh hands out."""

    access: IssuedToken
    refresh_token: str
    refresh_max_age: int
    family_id: uuid.UUID | None = None  # set by start_session: the family it began


class AuthService:
    """Register, login, refresh, logout and password reset over an :class:`AccountStore`."""

    def __init__(
        self,
        store: AccountStore,
        issuer: TokenIssuer,
        *,
        mailer: reset.Mailer,
        reset_base_url: str,
        hasher: PasswordHasher | None = None,
        policy: PasswordPolicy | None = None,
        refresh_ttl: int = refresh.DEFAULT_TTL,
        reset_ttl: int = reset.DEFAULT_TTL,
        hash_concurrency: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if refresh_ttl <= 0 or reset_ttl <= 0:
            raise ConfigError("refresh_ttl/reset_ttl", "must be positive")
        if not reset_base_url.startswith(("https://", "http://")):
            raise ConfigError("reset_base_url", "must be an http(s) URL")
        self.store = store
        self.issuer = issuer
        self.mailer = mailer
        self.reset_base_url = reset_base_url
        self.hasher = hasher or PasswordHasher()
        self.policy = policy or PasswordPolicy()
        self.refresh_ttl = refresh_ttl
        self.reset_ttl = reset_ttl
        self.clock = clock
        slots = hash_concurrency or max(2, os.cpu_count() or 2)
        self._hash_slots = threading.BoundedSemaphore(slots)

    async def _argon2(self, fn: Callable[..., T], *args: str) -> T:
        """Run an argon2 call in a worker thread, bounded by the hashing slots."""

        def bounded() -> T:
            with self._hash_slots:
                return fn(*args)

        return await asyncio.to_thread(bounded)

    # --- accounts ---------------------------------------------------------------------

    async def register(self, email: str, password: str) -> None:
        """Create an account unless the email has one; the caller cannot tell which.

        Raises :class:`~bastion.auth.errors.WeakPassword` when the policy refuses the
        password (that answer does not depend on the email being known).
        """
        email = normalize_email(email)
        self.policy.check(password, email=email)
        password_hash = await self._argon2(self.hasher.hash, password)
        await self.store.create(Account(uuid.uuid4(), email, password_hash, DEFAULT_ROLE))

    async def login(self, email: str, password: str) -> Session:
        """A new session for valid credentials; :class:`InvalidCredentials` otherwise."""
        return await self._start_session(await self.authenticate(email, password))

    async def authenticate(self, email: str, password: str) -> Account:
        """The account for valid credentials, without starting a session (the OAuth login
        form opens a browser session instead); :class:`InvalidCredentials` otherwise."""
        account = await self.store.find_by_email(normalize_email(email))
        if account is None:
            await self._argon2(self.hasher.dummy_verify, password)
            raise InvalidCredentials("unknown email")
        if not await self._argon2(self.hasher.verify, account.password_hash, password):
            raise InvalidCredentials("wrong password")
        if self.hasher.needs_rehash(account.password_hash):
            # Parameters changed since this hash was made: upgrade it now, while we hold
            # the plain password (the only moment we ever do).
            new_hash = await self._argon2(self.hasher.hash, password)
            await self.store.set_password_hash(account.id, new_hash)
        return account

    async def account(self, user_id: uuid.UUID) -> Account | None:
        return await self.store.get(user_id)

    # --- refresh tokens ---------------------------------------------------------------

    async def start_session(self, account: Account) -> Session:
        """Access token + a refresh token starting a new family (``Session.family_id``)."""
        return await self._start_session(account)

    async def _start_session(self, account: Account) -> Session:
        token = refresh.new_token()
        family_id = uuid.uuid4()
        await self.store.add_refresh(
            token_hash=refresh.digest(token),
            user_id=account.id,
            family_id=family_id,
            expires_at=self.clock() + self.refresh_ttl,
        )
        access = self.issuer.issue(account.id, account.role)
        return Session(access, token, self.refresh_ttl, family_id)

    async def revoke_family(self, family_id: uuid.UUID) -> None:
        """Revoke a family's live tokens (e.g. those issued from a replayed OAuth code)."""
        await self.store.revoke_family(family_id, self.clock())

    async def refresh(self, token: str | None) -> Session:
        """Rotate: revoke *token*, issue its successor in the same family (atomically).

        A revoked token presented again means two parties hold it (RFC 9700 §4.14.2): the
        store revokes every refresh token of the user and :class:`RefreshTokenReused` is
        raised. Two concurrent refreshes with one token are such a case too: exactly one
        succeeds, the other is treated as reuse (no grace window).
        """
        if token is None or not refresh.well_formed(token):
            raise InvalidRefreshToken("missing or malformed")
        successor = refresh.new_token()
        now = self.clock()
        result = await self.store.rotate_refresh(
            token_hash=refresh.digest(token),
            new_hash=refresh.digest(successor),
            now=now,
            expires_at=now + self.refresh_ttl,
        )
        if result.outcome is Rotation.REUSED:
            raise RefreshTokenReused("revoked token presented again; user's tokens revoked")
        if result.outcome is not Rotation.ROTATED or result.account is None:
            raise InvalidRefreshToken("unknown or expired")
        access = self.issuer.issue(result.account.id, result.account.role)
        return Session(access, successor, self.refresh_ttl)

    async def logout(self, token: str | None) -> None:
        """Revoke *token* if it is one of ours; idempotent (the cookie is cleared anyway)."""
        if token is not None and refresh.well_formed(token):
            await self.store.revoke_refresh(refresh.digest(token), self.clock())

    # --- password reset ---------------------------------------------------------------

    async def request_reset(self, email: str) -> None:
        """Mail a single-use reset link if *email* has an account; do nothing otherwise.

        Run it after answering (a background task): the answer must not wait for work
        that only happens for existing accounts.
        """
        account = await self.store.find_by_email(normalize_email(email))
        if account is None:
            return
        token = reset.new_token()
        await self.store.add_reset(
            token_hash=reset.digest(token),
            user_id=account.id,
            expires_at=self.clock() + self.reset_ttl,
        )
        link = reset.reset_link(self.reset_base_url, token)
        await self.mailer.send(account.email, reset.SUBJECT, reset.reset_text(link, self.reset_ttl))

    async def confirm_reset(self, token: str, password: str) -> None:
        """Set a new password with a reset token, then revoke every refresh token.

        :class:`InvalidResetToken` for a malformed, unknown, used or expired token;
        :class:`~bastion.auth.errors.WeakPassword` (token left unused) for a refused password.
        """
        if not reset.well_formed(token):
            raise InvalidResetToken("malformed")
        token_hash = reset.digest(token)
        account = await self.store.reset_account(token_hash, self.clock())
        if account is None:
            raise InvalidResetToken("unknown, used or expired")
        self.policy.check(password, email=account.email)
        password_hash = await self._argon2(self.hasher.hash, password)
        if not await self.store.complete_reset(
            token_hash=token_hash, now=self.clock(), password_hash=password_hash
        ):
            raise InvalidResetToken("used or expired meanwhile")  # a concurrent confirm won
