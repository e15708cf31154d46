"""SqlAccountStore on SQLite and PostgreSQL: accounts, refresh rotation (atomic, also under
real concurrency), reuse → every token of the user revoked, single-use reset tokens."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bastion.auth.service import Account, Rotation
from bastion.service.accounts import SqlAccountStore
from bastion.service.db import Database
from bastion.service.models import PasswordResetToken, RefreshToken, User
from tests.service.auth_db import postgres_database, sqlite_url

DAY = 86400.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlAccountStore]:
    if request.param == "sqlite":
        database = Database(sqlite_url(tmp_path))
        await database.create_schema()
        try:
            yield SqlAccountStore(database)
        finally:
            await database.close()
        return
    async with postgres_database() as url:
        database = Database(url)
        await database.create_schema()
        try:
            yield SqlAccountStore(database)
        finally:
            await database.close()


async def account(store: SqlAccountStore, email: str | None = None) -> Account:
    made = Account(uuid.uuid4(), email or f"{uuid.uuid4().hex}@example.test", "$argon2id$x", "user")
    assert await store.create(made)
    return made


async def refresh_rows(store: SqlAccountStore, user_id: uuid.UUID) -> list[RefreshToken]:
    async with store.database.session() as session:
        result = await session.scalars(select(RefreshToken).where(RefreshToken.user_id == user_id))
        return list(result)


# --- users -------------------------------------------------------------------------------------


async def test_create_and_find_an_account(store: SqlAccountStore) -> None:
    made = await account(store, "ada@example.com")
    assert await store.find_by_email("ada@example.com") == made
    assert await store.get(made.id) == made
    assert await store.find_by_email("nobody@example.com") is None
    assert await store.get(uuid.uuid4()) is None


async def test_a_second_account_for_one_email_is_not_created(store: SqlAccountStore) -> None:
    first = await account(store, "ada@example.com")
    again = Account(uuid.uuid4(), "ada@example.com", "$argon2id$other", "admin")
    assert await store.create(again) is False
    assert await store.find_by_email("ada@example.com") == first  # untouched


async def test_ids_are_random_version_4_uuids(store: SqlAccountStore) -> None:
    made = await account(store)
    async with store.database.session() as session:
        user = await session.get(User, made.id)
    assert user is not None and user.id.version == 4


async def test_email_lookups_are_parameterised_not_interpolated(store: SqlAccountStore) -> None:
    await account(store, "ada@example.com")
    for hostile in ("' OR '1'='1", "ada@example.com' --", "%", "_da@example.com"):
        assert await store.find_by_email(hostile) is None


async def test_set_password_hash(store: SqlAccountStore) -> None:
    made = await account(store)
    await store.set_password_hash(made.id, "$argon2id$new")
    found = await store.get(made.id)
    assert found is not None and found.password_hash == "$argon2id$new"


# --- refresh tokens ------------------------------------------------------------------------------


async def test_rotation_revokes_the_token_and_adds_its_successor_in_the_family(
    store: SqlAccountStore,
) -> None:
    user = await account(store)
    family = uuid.uuid4()
    now = time.time()
    await store.add_refresh(
        token_hash="a" * 64, user_id=user.id, family_id=family, expires_at=now + DAY
    )
    result = await store.rotate_refresh(
        token_hash="a" * 64, new_hash="b" * 64, now=now, expires_at=now + 7 * DAY
    )
    assert result.outcome is Rotation.ROTATED and result.account == user
    rows = {row.token_hash: row for row in await refresh_rows(store, user.id)}
    assert rows["a" * 64].revoked and rows["a" * 64].revoked_at is not None
    assert not rows["b" * 64].revoked
    assert rows["b" * 64].family_id == family


async def test_a_revoked_token_presented_again_revokes_every_token_of_the_user(
    store: SqlAccountStore,
) -> None:
    user, bystander = await account(store), await account(store)
    now = time.time()
    await store.add_refresh(
        token_hash="a" * 64, user_id=user.id, family_id=uuid.uuid4(), expires_at=now + DAY
    )
    await store.add_refresh(
        token_hash="c" * 64, user_id=user.id, family_id=uuid.uuid4(), expires_at=now + DAY
    )
    await store.add_refresh(
        token_hash="d" * 64, user_id=bystander.id, family_id=uuid.uuid4(), expires_at=now + DAY
    )
    await store.rotate_refresh(
        token_hash="a" * 64, new_hash="b" * 64, now=now, expires_at=now + DAY
    )
    reused = await store.rotate_refresh(
        token_hash="a" * 64, new_hash="e" * 64, now=now + 1, expires_at=now + DAY
    )
    assert reused.outcome is Rotation.REUSED and reused.account is None
    assert all(row.revoked for row in await refresh_rows(store, user.id))  # b and c too
    assert not any(row.revoked for row in await refresh_rows(store, bystander.id))
    # and the successor of the stolen token is dead as well
    successor = await store.rotate_refresh(
        token_hash="b" * 64, new_hash="f" * 64, now=now + 2, expires_at=now + DAY
    )
    assert successor.outcome is Rotation.REUSED


async def test_unknown_and_expired_tokens_are_invalid(store: SqlAccountStore) -> None:
    user = await account(store)
    now = time.time()
    await store.add_refresh(
        token_hash="a" * 64, user_id=user.id, family_id=uuid.uuid4(), expires_at=now - 1
    )
    for token_hash in ("a" * 64, "9" * 64):
        result = await store.rotate_refresh(
            token_hash=token_hash, new_hash="b" * 64, now=now, expires_at=now + DAY
        )
        assert result.outcome is Rotation.INVALID
    assert [row.token_hash for row in await refresh_rows(store, user.id)] == ["a" * 64]


async def test_concurrent_rotations_of_one_token_succeed_exactly_once(
    store: SqlAccountStore,
) -> None:
    for round_ in range(5):
        user = await account(store)
        now = time.time()
        old = f"{round_:064d}"
        await store.add_refresh(
            token_hash=old, user_id=user.id, family_id=uuid.uuid4(), expires_at=now + DAY
        )
        results = await asyncio.gather(
            *(
                store.rotate_refresh(
                    token_hash=old, new_hash=uuid.uuid4().hex * 2, now=now, expires_at=now + DAY
                )
                for _ in range(10)
            )
        )
        outcomes = [r.outcome for r in results]
        assert outcomes.count(Rotation.ROTATED) == 1, outcomes
        assert outcomes.count(Rotation.REUSED) == 9, outcomes
        # the losers saw reuse after the winner committed: its successor is revoked too
        assert all(row.revoked for row in await refresh_rows(store, user.id))


async def test_revoke_refresh(store: SqlAccountStore) -> None:
    user = await account(store)
    now = time.time()
    await store.add_refresh(
        token_hash="a" * 64, user_id=user.id, family_id=uuid.uuid4(), expires_at=now + DAY
    )
    await store.revoke_refresh("a" * 64, now)
    (row,) = await refresh_rows(store, user.id)
    assert row.revoked


# --- password reset -----------------------------------------------------------------------------


async def test_a_reset_token_is_single_use_and_revokes_every_refresh_token(
    store: SqlAccountStore,
) -> None:
    user = await account(store)
    now = time.time()
    await store.add_refresh(
        token_hash="r" * 64, user_id=user.id, family_id=uuid.uuid4(), expires_at=now + DAY
    )
    await store.add_reset(token_hash="t" * 64, user_id=user.id, expires_at=now + 1800)
    await store.add_reset(token_hash="u" * 64, user_id=user.id, expires_at=now + 1800)
    assert await store.reset_account("t" * 64, now) == user
    assert await store.complete_reset(token_hash="t" * 64, now=now, password_hash="$argon2id$new")
    stored = await store.get(user.id)
    assert stored is not None and stored.password_hash == "$argon2id$new"
    assert all(row.revoked for row in await refresh_rows(store, user.id))
    # used: never again; the user's other outstanding link died with the old password
    assert await store.reset_account("t" * 64, now) is None
    assert not await store.complete_reset(token_hash="t" * 64, now=now, password_hash="$x")
    assert await store.reset_account("u" * 64, now) is None


async def test_an_expired_reset_token_is_refused(store: SqlAccountStore) -> None:
    user = await account(store)
    now = time.time()
    await store.add_reset(token_hash="t" * 64, user_id=user.id, expires_at=now + 1800)
    later = now + 1801
    assert await store.reset_account("t" * 64, later) is None
    assert not await store.complete_reset(token_hash="t" * 64, now=later, password_hash="$x")


async def test_concurrent_reset_confirmations_succeed_once(store: SqlAccountStore) -> None:
    user = await account(store)
    now = time.time()
    await store.add_reset(token_hash="t" * 64, user_id=user.id, expires_at=now + 1800)
    results = await asyncio.gather(
        *(
            store.complete_reset(token_hash="t" * 64, now=now, password_hash=f"$argon2id${i}")
            for i in range(8)
        )
    )
    assert results.count(True) == 1


async def test_only_digests_are_stored(store: SqlAccountStore) -> None:
    user = await account(store)
    now = time.time()
    await store.add_reset(token_hash="t" * 64, user_id=user.id, expires_at=now + 1800)
    async with store.database.session() as session:
        row = await session.scalar(select(PasswordResetToken))
    assert row is not None and row.token_hash == "t" * 64
    columns = {c.name for c in PasswordResetToken.__table__.columns}
    assert "token" not in columns and "token_hash" in columns
    assert "password" not in {c.name for c in User.__table__.columns}


async def test_revoke_family_revokes_only_that_family(store: SqlAccountStore) -> None:
    user = await account(store)
    now = time.time()
    doomed, kept = uuid.uuid4(), uuid.uuid4()
    await store.add_refresh(
        token_hash="a" * 64, user_id=user.id, family_id=doomed, expires_at=now + DAY
    )
    await store.add_refresh(
        token_hash="b" * 64, user_id=user.id, family_id=kept, expires_at=now + DAY
    )
    await store.revoke_family(doomed, now)
    rows = {row.token_hash: row.revoked for row in await refresh_rows(store, user.id)}
    assert rows == {"a" * 64: True, "b" * 64: False}
