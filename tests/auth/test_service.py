"""AuthService flows over the real SQL store (SQLite): uniform work for unknown accounts,
rehash on login, rotation and reuse, password reset."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import argon2
import pytest

from bastion.auth import errors as E
from bastion.auth.bearer import BearerAuth
from bastion.auth.keys import KeyRing
from bastion.auth.passwords import TEST, PasswordHasher
from bastion.auth.service import AuthService, normalize_email
from bastion.auth.tokens import TokenIssuer
from bastion.errors import ConfigError
from bastion.service.accounts import SqlAccountStore
from bastion.service.db import Database
from bastion.service.deps import Caller, caller_of

ISSUER, AUDIENCE = "https://localhost:8443", "bastion-api"
PASSWORD = "correct horse battery staple"


class Outbox:
    """A Mailer that keeps messages in memory."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, str]] = []

    async def send(self, to: str, subject: str, text: str) -> None:
        self.messages.append((to, subject, text))

    def token(self) -> str:
        match = re.search(r"\?token=([A-Za-z0-9_-]+)", self.messages[-1][2])
        assert match is not None
        return match.group(1)


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(TEST)
        self.calls: list[str] = []

    def hash(self, password: str) -> str:
        self.calls.append("hash")
        return super().hash(password)

    def verify(self, stored: str, password: str) -> bool:
        self.calls.append("verify")
        return super().verify(stored, password)

    def dummy_verify(self, password: str) -> None:
        self.calls.append("dummy")
        super().dummy_verify(password)


class Verifier:
    """The service's verification path: BearerAuth over the ring, then the service's claims."""

    def __init__(self, ring: KeyRing) -> None:
        self.auth = BearerAuth(
            key_ring=ring, issuer=ISSUER, audience=AUDIENCE, required_claims=("jti", "role")
        )

    def verify_access(self, token: str) -> Caller:
        return caller_of(self.auth.verify(token))


class World:
    def __init__(self, service: AuthService, verifier: Verifier, outbox: Outbox) -> None:
        self.service = service
        self.verifier = verifier
        self.outbox = outbox
        assert isinstance(service.hasher, CountingHasher)
        self.hasher = service.hasher


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}")
    await database.create_schema()
    ring = KeyRing(tmp_path / "keys")
    ring.ensure()
    outbox = Outbox()
    service = AuthService(
        SqlAccountStore(database),
        TokenIssuer(ring, issuer=ISSUER, audience=AUDIENCE),
        mailer=outbox,
        reset_base_url=ISSUER,
        hasher=CountingHasher(),
    )
    try:
        yield World(service, Verifier(ring), outbox)
    finally:
        await database.close()


def test_emails_are_trimmed_and_only_ascii_letters_fold() -> None:
    assert normalize_email("  Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"
    # Unicode folding would merge different mailboxes (issue 13): nothing else folds.
    for typed, other in [
        ("owner@straße.de", "owner@strasse.de"),
        ("\u212aelvin@example.com", "kelvin@example.com"),  # KELVIN SIGN
        ("\ufb01nance@example.com", "finance@example.com"),  # LATIN SMALL LIGATURE FI
        ("ＡＤＡ@example.com", "ada@example.com"),  # fullwidth
        ("ÉLODIE@example.com", "élodie@example.com"),  # non-ASCII case stays as typed
    ]:
        assert normalize_email(typed) != normalize_email(other)
    assert normalize_email("ÉLODIE@EXAMPLE.COM") == "Élodie@example.com"


async def test_register_then_login_gives_a_verifiable_access_token(world: World) -> None:
    await world.service.register("Ada@Example.com", PASSWORD)
    session = await world.service.login(" ada@example.COM", PASSWORD)
    principal = world.verifier.verify_access(session.access.token)
    account = await world.service.account(principal.user_id)
    assert account is not None and account.email == "Ada@Example.com"  # stored as typed
    assert principal.role == "user"
    assert len(session.refresh_token) == 43 and session.refresh_max_age == 7 * 86400


async def test_registering_a_taken_email_does_the_same_work_and_changes_nothing(
    world: World,
) -> None:
    await world.service.register("ada@example.com", PASSWORD)
    world.hasher.calls.clear()
    await world.service.register("ADA@example.com", "another long passphrase here")
    assert world.hasher.calls == ["hash"]  # hashed although the account exists
    await world.service.login("ada@example.com", PASSWORD)  # the original password still works
    with pytest.raises(E.InvalidCredentials):
        await world.service.login("ada@example.com", "another long passphrase here")


async def test_a_weak_password_is_refused_before_any_hashing(world: World) -> None:
    with pytest.raises(E.WeakPassword):
        await world.service.register("ada@example.com", "short")
    with pytest.raises(E.WeakPassword):
        await world.service.register("ada.lovelace@example.com", "i am ada.lovelace really")
    assert world.hasher.calls == []


async def test_unknown_email_and_wrong_password_fail_alike_with_the_same_work(
    world: World,
) -> None:
    await world.service.register("ada@example.com", PASSWORD)
    world.hasher.calls.clear()
    with pytest.raises(E.InvalidCredentials) as unknown:
        await world.service.login("nobody@example.com", PASSWORD)
    work_unknown = list(world.hasher.calls)
    world.hasher.calls.clear()
    with pytest.raises(E.InvalidCredentials) as wrong:
        await world.service.login("ada@example.com", PASSWORD + "!")
    # one argon2 verification each: against the dummy hash, against the real one
    assert work_unknown == ["dummy", "verify"] and world.hasher.calls == ["verify"]
    assert unknown.value.public_message == wrong.value.public_message
    assert unknown.value.public_message == "Invalid email or password"


async def test_login_upgrades_a_hash_made_with_old_parameters(world: World) -> None:
    await world.service.register("ada@example.com", PASSWORD)
    account = await world.service.store.find_by_email("ada@example.com")
    assert account is not None
    old = argon2.PasswordHasher(time_cost=1, memory_cost=16, parallelism=1).hash(PASSWORD)
    await world.service.store.set_password_hash(account.id, old)
    await world.service.login("ada@example.com", PASSWORD)
    upgraded = await world.service.store.get(account.id)
    assert upgraded is not None and upgraded.password_hash != old
    assert upgraded.password_hash.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    await world.service.login("ada@example.com", PASSWORD)


async def test_refresh_rotates_and_reuse_revokes_everything(world: World) -> None:
    await world.service.register("ada@example.com", PASSWORD)
    first = await world.service.login("ada@example.com", PASSWORD)
    other_device = await world.service.login("ada@example.com", PASSWORD)
    second = await world.service.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    world.verifier.verify_access(second.access.token)
    with pytest.raises(E.RefreshTokenReused) as caught:
        await world.service.refresh(first.refresh_token)
    assert caught.value.public_message == "Invalid refresh token"
    for token in (second.refresh_token, other_device.refresh_token):
        with pytest.raises(E.InvalidRefreshToken):
            await world.service.refresh(token)


@pytest.mark.parametrize("token", [None, "", "short", "x" * 43 + "=", "A" * 43, "é" * 43])
async def test_missing_malformed_or_unknown_refresh_tokens_are_refused(
    world: World, token: str | None
) -> None:
    with pytest.raises(E.InvalidRefreshToken):
        await world.service.refresh(token)


async def test_logout_revokes_and_is_idempotent(world: World) -> None:
    await world.service.register("ada@example.com", PASSWORD)
    session = await world.service.login("ada@example.com", PASSWORD)
    await world.service.logout(session.refresh_token)
    await world.service.logout(session.refresh_token)
    await world.service.logout(None)
    with pytest.raises(E.InvalidRefreshToken):
        await world.service.refresh(session.refresh_token)


async def test_password_reset_end_to_end(world: World) -> None:
    await world.service.register("ada@example.com", PASSWORD)
    session = await world.service.login("ada@example.com", PASSWORD)
    await world.service.request_reset("ADA@example.com")
    to, subject, text = world.outbox.messages[-1]
    assert to == "ada@example.com" and subject == "Reset your password"
    assert re.search(r"https://localhost:8443/password-reset\?token=[A-Za-z0-9_-]{43}\n", text)
    token = world.outbox.token()
    await world.service.confirm_reset(token, "a brand new passphrase")
    await world.service.login("ada@example.com", "a brand new passphrase")
    with pytest.raises(E.InvalidCredentials):
        await world.service.login("ada@example.com", PASSWORD)
    with pytest.raises(E.InvalidRefreshToken):  # every refresh token revoked
        await world.service.refresh(session.refresh_token)
    with pytest.raises(E.InvalidResetToken):  # single use
        await world.service.confirm_reset(token, "yet another new passphrase")


async def test_a_reset_for_an_unknown_email_sends_nothing(world: World) -> None:
    await world.service.request_reset("nobody@example.com")
    assert world.outbox.messages == []


async def test_a_weak_new_password_leaves_the_reset_token_usable(world: World) -> None:
    await world.service.register("ada@example.com", PASSWORD)
    await world.service.request_reset("ada@example.com")
    token = world.outbox.token()
    with pytest.raises(E.WeakPassword):
        await world.service.confirm_reset(token, "too short")
    await world.service.confirm_reset(token, "a brand new passphrase")


@pytest.mark.parametrize("token", ["", "forged", "A" * 43, "2947422a33384e1687edb78a6d1d351b"])
async def test_forged_reset_tokens_are_refused(world: World, token: str) -> None:
    with pytest.raises(E.InvalidResetToken) as caught:
        await world.service.confirm_reset(token, "a brand new passphrase")
    assert caught.value.public_message == "Invalid or expired token"


async def test_an_expired_reset_token_is_refused(world: World) -> None:
    await world.service.register("ada@example.com", PASSWORD)
    await world.service.request_reset("ada@example.com")
    token = world.outbox.token()
    world.service.clock = lambda: __import__("time").time() + 31 * 60
    with pytest.raises(E.InvalidResetToken):
        await world.service.confirm_reset(token, "a brand new passphrase")


def test_bad_options_are_refused_at_construction(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "keys")
    issuer = TokenIssuer(ring, issuer=ISSUER, audience=AUDIENCE)
    store = SqlAccountStore(Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    with pytest.raises(ConfigError):
        AuthService(store, issuer, mailer=Outbox(), reset_base_url="javascript:alert(1)")
    with pytest.raises(ConfigError):
        AuthService(store, issuer, mailer=Outbox(), reset_base_url=ISSUER, refresh_ttl=0)
