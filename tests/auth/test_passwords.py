"""argon2id hashing profiles and the NIST SP 800-63B-4 password policy."""

from __future__ import annotations

import argon2
import pytest

from bastion.auth.errors import WeakPassword
from bastion.auth.passwords import (
    OWASP,
    TEST,
    Argon2Profile,
    PasswordHasher,
    PasswordPolicy,
    common_passwords,
)
from bastion.errors import ConfigError

GOOD = "correct horse battery staple"


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(TEST)


# --- hashing ---------------------------------------------------------------------------------


def test_the_default_profile_is_owasp_argon2id() -> None:
    assert Argon2Profile(time_cost=2, memory_cost=19456, parallelism=1) == OWASP
    digest = PasswordHasher().hash(GOOD)
    assert digest.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_hash_is_salted_and_verifies(hasher: PasswordHasher) -> None:
    a, b = hasher.hash(GOOD), hasher.hash(GOOD)
    assert a != b  # random salt
    assert hasher.verify(a, GOOD) and hasher.verify(b, GOOD)
    assert not hasher.verify(a, GOOD + "!")
    assert not hasher.verify(a, GOOD.upper())  # verified exactly (ASVS 6.2.8)


def test_the_whole_password_counts_no_truncation(hasher: PasswordHasher) -> None:
    long = "x" * 100 + "tail-one"
    assert not hasher.verify(hasher.hash(long), "x" * 100 + "tail-two")


def test_unicode_is_normalised_nfkc(hasher: PasswordHasher) -> None:
    composed = "caf\u00e9 au lait, s'il vous pla\u00eet"
    decomposed = "cafe\u0301 au lait, s'il vous pla\u0131\u0302t".replace("\u0131\u0302", "i\u0302")
    assert hasher.verify(hasher.hash(composed), decomposed)


def test_a_corrupt_stored_hash_never_verifies_nor_raises(hasher: PasswordHasher) -> None:
    assert hasher.verify("not a hash", GOOD) is False
    assert hasher.verify("$argon2id$v=19$m=8,t=1,p=1$AAAA$BBBB", GOOD) is False


def test_needs_rehash_when_parameters_change(hasher: PasswordHasher) -> None:
    old = argon2.PasswordHasher(time_cost=1, memory_cost=16, parallelism=1).hash(GOOD)
    assert hasher.needs_rehash(old)
    assert not hasher.needs_rehash(hasher.hash(GOOD))
    assert hasher.needs_rehash("garbage")


def test_dummy_verify_does_a_real_argon2_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    hasher = PasswordHasher(TEST)
    calls: list[str] = []
    real = hasher.verify

    def spy(stored: str, password: str) -> bool:
        calls.append(stored)
        return real(stored, password)

    monkeypatch.setattr(hasher, "verify", spy)
    hasher.dummy_verify(GOOD)
    hasher.dummy_verify("anything")
    assert len(calls) == 2
    assert calls[0] == calls[1] and calls[0].startswith("$argon2id$v=19$m=8,t=1,p=1$")


@pytest.mark.parametrize(
    "profile",
    [
        Argon2Profile(time_cost=0, memory_cost=64, parallelism=1),
        Argon2Profile(time_cost=1, memory_cost=7, parallelism=1),
        Argon2Profile(time_cost=1, memory_cost=64, parallelism=1, salt_len=8),
    ],
)
def test_weak_profiles_are_refused_at_construction(profile: Argon2Profile) -> None:
    with pytest.raises(ConfigError):
        PasswordHasher(profile)


# --- policy ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def policy() -> PasswordPolicy:
    return PasswordPolicy()


def test_the_common_password_list_has_at_least_ten_thousand_entries() -> None:
    common = common_passwords()
    assert len(common) >= 10_000
    assert {"123456", "password", "qwerty", "iloveyou"} <= common
    assert all(p == p.lower() for p in list(common)[:1000])


def test_fifteen_characters_is_the_minimum(policy: PasswordPolicy) -> None:
    assert policy.problems("abcdefghijklmn") == ["Password must be at least 15 characters"]
    assert policy.problems("abcdefghijklmno") == []


def test_128_characters_is_the_maximum(policy: PasswordPolicy) -> None:
    assert policy.problems("ab3" * 42 + "xy") == []  # 128
    assert policy.problems("ab3" * 43) == ["Password must be at most 128 characters"]


def test_length_counts_code_points_not_bytes(policy: PasswordPolicy) -> None:
    emoji = "\U0001f512\U0001f511" * 7 + "\U0001f3f0"  # 15 code points, 60 UTF-8 bytes
    assert policy.problems(emoji) == []


def test_no_composition_rules(policy: PasswordPolicy) -> None:
    # SP 800-63B-4: SHALL NOT impose composition rules; spaces and any Unicode are fine.
    for password in ("all lower case words", "ALLUPPERCASEWORDS", "1234567890987654321x"):
        assert policy.problems(password) == [], password


@pytest.mark.parametrize(
    "password",
    [
        "123456789987654321",  # in the list and >= 15 characters
        "1qaz2wsx3edc4rfv",
        "QAZWSXEDCRFVTGB",  # case does not hide it
        "passwordpassword",  # a common password repeated
        "iloveyouiloveyouiloveyou",
    ],
)
def test_common_passwords_are_refused(policy: PasswordPolicy, password: str) -> None:
    assert policy.problems(password) == ["Password is too common"]


@pytest.mark.parametrize("password", ["aaaaaaaaaaaaaaaa", "abababababababab", "xyz!xyz!xyz!xyz!"])
def test_a_short_sequence_repeated_is_refused(policy: PasswordPolicy, password: str) -> None:
    assert policy.problems(password) == ["Password must not be a short sequence repeated"]


def test_the_email_local_part_is_refused_in_any_case(policy: PasswordPolicy) -> None:
    message = "Password must not contain your email address"
    assert policy.problems("my name is Ada.Lovelace ok", email="ada.lovelace@example.com") == [
        message
    ]
    assert policy.problems("correct horse battery staple", email="ada@example.com") == []


def test_a_very_short_local_part_does_not_forbid_every_password(policy: PasswordPolicy) -> None:
    assert policy.problems("correct horse battery staple", email="e@example.com") == []


def test_check_raises_weak_password_with_every_problem(policy: PasswordPolicy) -> None:
    with pytest.raises(WeakPassword) as caught:
        policy.check("passwordpassword", email="password@example.com")
    assert caught.value.problems == [
        "Password is too common",
        "Password must not contain your email address",
    ]
    assert caught.value.public_message == "Password is too common"


@pytest.mark.parametrize(("low", "high"), [(7, 64), (16, 15)])
def test_bad_policy_bounds_are_refused(low: int, high: int) -> None:
    with pytest.raises(ConfigError):
        PasswordPolicy(min_length=low, max_length=high)
