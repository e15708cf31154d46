"""Passwords: argon2id hashing (argon2-cffi) and the NIST SP 800-63B-4 policy.

Hashing. :data:`OWASP` is the default profile (argon2id, 19 MiB, t=2, p=1: the OWASP Password
Storage Cheat Sheet's first recommendation); :data:`RFC9106_LOW_MEMORY` is argon2-cffi's own
stronger default; :data:`TEST` is deliberately weak and exists so unit tests stay fast — never
use it in production. A hash made with other parameters is recognised by
:meth:`PasswordHasher.needs_rehash`, so logins upgrade old hashes transparently.

Policy (SP 800-63B-4 §3.1.1.2): 15 to 128 characters counted as Unicode code points after
NFKC normalisation, any characters, no composition rules; refused when it is a common password
(the 30,000 most common, shipped as package data), a short pattern repeated
(``aaaaaaaaaaaaaaa``, ``abcabcabcabcabc``) or a common password repeated, or when it contains the
local part of the account's email address (a context-specific word).
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from importlib import resources

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bastion.auth.errors import WeakPassword
from bastion.errors import ConfigError

MIN_LENGTH = 15  # SP 800-63B-4: SHALL be at least 15 for a single-factor password
MAX_LENGTH = 128  # SP 800-63B-4: SHOULD permit at least 64; ASVS 4 2.1.2 denies > 128
MIN_CONTEXT_WORD = 3  # shorter local parts ("a@x") would forbid nearly every password
COMMON_PASSWORDS_FILE = "common-passwords.txt"


@dataclass(frozen=True, slots=True)
class Argon2Profile:
    """argon2id cost parameters (memory in KiB)."""

    time_cost: int
    memory_cost: int
    parallelism: int
    hash_len: int = 32
    salt_len: int = 16


OWASP = Argon2Profile(time_cost=2, memory_cost=19 * 1024, parallelism=1)
RFC9106_LOW_MEMORY = Argon2Profile(time_cost=3, memory_cost=64 * 1024, parallelism=4)
TEST = Argon2Profile(time_cost=1, memory_cost=8, parallelism=1)  # tests only: cheap on purpose

PROFILES = {"owasp": OWASP, "rfc9106-low-memory": RFC9106_LOW_MEMORY, "test": TEST}


def normalize(password: str) -> str:
    """NFKC, as SP 800-63B-4 suggests, so the same password typed on two keyboards matches."""
    return unicodedata.normalize("NFKC", password)


class PasswordHasher:
    """argon2id hashes with one profile; verification never raises for a wrong password.

    All methods are CPU-bound and block for tens of milliseconds with the real profiles:
    async callers run them in a worker thread (argon2-cffi releases the GIL).
    """

    def __init__(self, profile: Argon2Profile = OWASP) -> None:
        if profile.parallelism < 1 or profile.memory_cost < 8 * profile.parallelism:
            raise ConfigError("argon2 profile", "memory_cost must be at least 8 x parallelism")
        if profile.time_cost < 1 or profile.salt_len < 16 or profile.hash_len < 16:
            raise ConfigError("argon2 profile", "time_cost >= 1, salt and hash >= 16 bytes")
        self.profile = profile
        self._hasher = argon2.PasswordHasher(
            time_cost=profile.time_cost,
            memory_cost=profile.memory_cost,
            parallelism=profile.parallelism,
            hash_len=profile.hash_len,
            salt_len=profile.salt_len,
            type=argon2.Type.ID,
        )
        # Made now, not at the first unknown-email login, which would otherwise be slower.
        self._dummy = self._hasher.hash("bastion dummy password, never valid")

    def hash(self, password: str) -> str:
        """A fresh salted argon2id hash (PHC string) of *password*."""
        return self._hasher.hash(normalize(password))

    def verify(self, stored: str, password: str) -> bool:
        """True when *password* matches *stored*; False for a mismatch or a corrupt hash."""
        try:
            return self._hasher.verify(stored, normalize(password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """True when *stored* was made with other parameters (upgrade it at the next login)."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except (InvalidHashError, ValueError):
            return True

    def dummy_verify(self, password: str) -> None:
        """Spend the time of a real verification, for an unknown account.

        Without it, "no such user" answers in microseconds and "wrong password" in tens of
        milliseconds: an oracle for which emails have accounts (OWASP ASVS 6.3.8).
        """
        self.verify(self._dummy, password)


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped common-password list (lower case), loaded once per process."""
    text = (
        resources.files("bastion.auth")
        .joinpath("data", COMMON_PASSWORDS_FILE)
        .read_text(encoding="utf-8")
    )
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def _period(text: str) -> str | None:
    """The shortest unit *text* repeats (``"abab"`` -> ``"ab"``), or None if it repeats none."""
    length = len(text)
    for size in range(1, length // 2 + 1):
        if length % size == 0 and text[:size] * (length // size) == text:
            return text[:size]
    return None


class PasswordPolicy:
    """Decides whether a new password may be set; :meth:`check` raises :class:`WeakPassword`."""

    def __init__(
        self,
        *,
        min_length: int = MIN_LENGTH,
        max_length: int = MAX_LENGTH,
        blocklist: frozenset[str] | None = None,
    ) -> None:
        if not 8 <= min_length <= max_length <= 4096:
            raise ConfigError("password length", "need 8 <= min_length <= max_length <= 4096")
        self.min_length = min_length
        self.max_length = max_length
        self._blocklist = blocklist

    @property
    def blocklist(self) -> frozenset[str]:
        if self._blocklist is None:
            self._blocklist = common_passwords()
        return self._blocklist

    def problems(self, password: str, *, email: str | None = None) -> list[str]:
        """Every rule *password* breaks, as public messages (empty when it is acceptable)."""
        text = normalize(password)
        length = len(text)  # code points, as SP 800-63B-4 counts them
        if length < self.min_length:
            return [f"Password must be at least {self.min_length} characters"]
        if length > self.max_length:
            return [f"Password must be at most {self.max_length} characters"]
        problems = []
        folded = text.casefold()
        unit = _period(folded)
        if folded in self.blocklist or (unit is not None and unit in self.blocklist):
            problems.append("Password is too common")
        elif unit is not None and len(unit) <= 4:
            problems.append("Password must not be a short sequence repeated")
        if email:
            local = normalize(email).casefold().rpartition("@")[0]
            if len(local) >= MIN_CONTEXT_WORD and local in folded:
                problems.append("Password must not contain your email address")
        return problems

    def check(self, password: str, *, email: str | None = None) -> None:
        """Raise :class:`WeakPassword` (its public message is the first problem) if refused."""
        problems = self.problems(password, email=email)
        if problems:
            raise WeakPassword(problems)
