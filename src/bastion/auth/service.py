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
import logging
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
from bastion.auth.revocation import MemoryRevocations, Revocations
from bastion.auth.tokens import IssuedToken, TokenIssuer
from bastion.errors import ConfigError

T = TypeVar("T")
log = logging.getLogger("bastion.auth")

DEFAULT_ROLE = "user"
RESET_MAILS_PER_HOUR = 3  # per account: a mail bomb gets 3 mails, a forgetful user enough
MAX_EMAIL_LENGTH = 254  # RFC 5321 §4.5.3.1.3 path limit minus the angle brackets


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_SPACE = " \t\n\v\f\r"


def stored_email(email: str) -> str:
    """The address as it is kept and mailed to: as typed, surrounding ASCII white space removed."""
    return email.strip(_SPACE)


def normalize_email(email: str) -> str:
    """The lookup key of an address: trimmed, with ASCII letters (and only those) lower-cased.

    Unicode case folding would merge different mailboxes: ``casefold()`` maps ``ß`` to
    ``ss``, the Kelvin sign to ``k`` and ``ﬁ`` to ``fi``, so ``owner@straße.de`` and
    ``owner@strasse.de`` (two IDNA2008 domains) would share one account and a reset for
    the second would reset the first. ASCII case is the only folding every mail system
    agrees on for domains, and the one users expect for local parts.
    """
    return stored_email(email).translate(_ASCII_LOWER)


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
    user_id: uuid.UUID | None = None  # REUSED: whose tokens were revoked


class AccountStore(Protocol):
    """Persistence the flows need. Times are POSIX seconds; hashes are hex SHA-256.

    ``rotate_refresh`` and ``complete_reset`` must be atomic (one conditional UPDATE whose
    row count decides), so concurrent calls with one token succeed at most once.
    """

    async def find_by_email(self, email: str) -> Account | None:
        """The account whose :func:`normalize_email` key equals *email* (already a key)."""
        ...

    async def get(self, user_id: uuid.UUID) -> Account | None: ...

    async def create(self, account: Account) -> bool:
        """Insert; False (and no change) when the email's key already has an account.

        ``account.email`` is the address as typed (trimmed); the store keys it with
        :func:`normalize_email`."""
        ...

    async def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None: ...

    async def add_refresh(
        self, *, token_hash: str, user_id: uuid.UUID, family_id: uuid.UUID, expires_at: float
    ) -> None: ...

    async def rotate_refresh(
        self, *, token_hash: str, new_hash: str, now: float, expires_at: float
    ) -> RotationResult: ...

    async def revoke_refresh(self, token_hash: str, now: float) -> uuid.UUID | None:
        """Revoke a live token; its user (None when it was unknown or already revoked)."""
        ...

    async def revoke_family(self, family_id: uuid.UUID, now: float) -> None:
        """Revoke every live token of one family (a login and its rotations)."""
        ...

    async def add_reset(
        self,
        *,
        token_hash: str,
        user_id: uuid.UUID,
        expires_at: float,
        now: float | None = None,
        limit: int | None = None,
        window: float = 3600.0,
    ) -> bool:
        """Store a reset token; with *limit*, only while the user got fewer than *limit*
        in the last *window* seconds (atomically: False and nothing stored otherwise)."""
        ...

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
        revocations: Revocations | None = None,
        reset_mails_per_hour: int = RESET_MAILS_PER_HOUR,
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
        self.reset_mails_per_hour = reset_mails_per_hour
        #: Access-token revocations (logout, reset, reuse): in-process unless shared.
        self.revocations: Revocations = revocations or MemoryRevocations(
            ttl=issuer.ttl, clock=clock
        )
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
        email = stored_email(email)
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
        access = await self._issue(account)
        return Session(access, token, self.refresh_ttl, family_id)

    async def _issue(self, account: Account) -> IssuedToken:
        """An access token that the user's latest revocation does not refuse: ``iat`` has
        one-second resolution, so within the second of a revocation wait for the next one
        (a login right after a logout or a reset would otherwise get a dead token)."""
        wait = self.revocations.not_before(account.id) + 1 - self.clock()
        if wait > 0:
            await asyncio.sleep(min(wait, 1.0) + 0.001)
        return self.issuer.issue(account.id, account.role)

    async def revoke_access(self, user_id: uuid.UUID) -> None:
        """Refuse every access token of *user_id* issued up to now (every process sharing
        the revocations store, within a second)."""
        try:
            await self.revocations.revoke(user_id, self.clock())
        except Exception as exc:  # the store is down: the refresh tokens are revoked anyway
            log.error("access tokens of %s not revoked: %s", user_id, type(exc).__name__)

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
            if result.user_id is not None:
                await self.revoke_access(result.user_id)
            raise RefreshTokenReused("revoked token presented again; user's tokens revoked")
        if result.outcome is not Rotation.ROTATED or result.account is None:
            raise InvalidRefreshToken("unknown or expired")
        access = await self._issue(result.account)
        return Session(access, successor, self.refresh_ttl)

    async def logout(self, token: str | None) -> uuid.UUID | None:
        """Revoke *token* if it is one of ours, and every access token of its user; the
        user, or None (idempotent: the cookie is cleared anyway)."""
        if token is None or not refresh.well_formed(token):
            return None
        user_id = await self.store.revoke_refresh(refresh.digest(token), self.clock())
        if user_id is not None:
            await self.revoke_access(user_id)
        return user_id

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
        now = self.clock()
        if not await self.store.add_reset(
            token_hash=reset.digest(token),
            user_id=account.id,
            expires_at=now + self.reset_ttl,
            now=now,
            limit=self.reset_mails_per_hour,
            window=3600.0,
        ):
            # Mail bombing, or a user clicking "send again": nothing sent, the same 202.
            log.warning(
                "password-reset mail not sent to account %s: hourly budget spent", account.id
            )
            return
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
        await self.revoke_access(account.id)
