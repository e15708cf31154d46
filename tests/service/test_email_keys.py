"""The email-key data step on SQLite and PostgreSQL: a database from before keys existed
(``users`` without ``email_key``, addresses stored case-folded) gets its column, its unique
index and a key per row; a second run changes nothing; two rows that differ only in ASCII case
leave the younger one keyless (unreachable by email), never shared."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from bastion.service import email_keys
from bastion.service.accounts import SqlAccountStore
from bastion.service.db import Database
from tests.service.auth_db import postgres_database, sqlite_url

LEGACY = """CREATE TABLE users (
    id {uuid} PRIMARY KEY, email VARCHAR(254) NOT NULL UNIQUE,
    password_hash VARCHAR(255) NOT NULL, role VARCHAR(32) NOT NULL,
    created_at {time} NOT NULL)"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def legacy(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A database whose ``users`` table is the one before email keys."""

    async def made(url: str) -> AsyncIterator[Database]:
        database = Database(url)
        pg = not database.is_sqlite
        ddl = LEGACY.format(
            uuid="UUID" if pg else "CHAR(32)", time="TIMESTAMPTZ" if pg else "DATETIME"
        )
        async with database.engine.begin() as conn:
            await conn.execute(text(ddl))
        try:
            yield database
        finally:
            await database.close()

    if request.param == "sqlite":
        async for database in made(sqlite_url(tmp_path)):
            yield database
        return
    async with postgres_database() as url:
        async for database in made(url):
            yield database


async def insert(database: Database, email: str, age_days: int) -> uuid.UUID:
    user_id = uuid.uuid4()
    created = datetime.now(UTC) - timedelta(days=age_days)
    value = user_id if not database.is_sqlite else user_id.hex
    stamp = created if not database.is_sqlite else created.strftime("%Y-%m-%d %H:%M:%S.%f")
    async with database.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, email, password_hash, role, created_at) "
                "VALUES (:id, :email, '-', 'user', :created)"
            ),
            {"id": value, "email": email, "created": stamp},
        )
    return user_id


async def upgrade(database: Database) -> None:
    """The data step, as revision 0003 runs it."""
    async with database.engine.begin() as conn:
        await email_keys.upgrade(conn)


async def test_legacy_rows_get_keys_once_and_collisions_stay_unreachable(
    legacy: Database, caplog: pytest.LogCaptureFixture
) -> None:
    folded = await insert(legacy, "owner@strasse.de", 30)  # stored by casefold() long ago
    older = await insert(legacy, "ada@example.com", 20)
    younger = await insert(legacy, "Ada@Example.com", 10)  # written outside the service
    caplog.set_level(logging.WARNING, "bastion.db")
    await upgrade(legacy)
    store = SqlAccountStore(legacy)
    found = await store.find_by_email("owner@strasse.de")
    assert found is not None and found.id == folded
    found = await store.find_by_email("ada@example.com")
    assert found is not None and found.id == older  # the oldest keeps the key
    assert await store.get(younger) is not None  # kept, but nobody reaches it by email
    collisions = [r.getMessage() for r in caplog.records if "collides" in r.getMessage()]
    assert collisions == [collisions[0]] and str(younger) in collisions[0]
    assert "ada@example.com" not in collisions[0].lower()  # ids, never addresses

    caplog.clear()
    await upgrade(legacy)  # idempotent: nothing to add, the collision reported again
    assert [r for r in caplog.records if "email_key added" in r.getMessage()] == []
    found = await store.find_by_email("ada@example.com")
    assert found is not None and found.id == older


async def test_the_key_is_unique_after_the_upgrade(legacy: Database) -> None:
    await insert(legacy, "grace@example.com", 1)
    await upgrade(legacy)
    store = SqlAccountStore(legacy)
    from bastion.auth.service import Account

    assert not await store.create(Account(uuid.uuid4(), "GRACE@example.COM", "-", "user"))
    assert await store.create(Account(uuid.uuid4(), "grâce@example.com", "-", "user"))


@pytest.mark.postgres
async def test_a_failed_statement_never_carries_its_parameters() -> None:
    """Issue 13: a NUL reaching PostgreSQL made a 500 whose logged message held the SQL
    parameters, the email included. The engine now hides them."""
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from bastion.service.models import User

    async with postgres_database() as url:
        database = Database(url)
        try:
            await database.create_schema()
            email = "secret-person@example.test\x00"
            async with database.session() as session:
                with pytest.raises(SQLAlchemyError) as failed:
                    await session.execute(select(User).where(User.email == email))
            assert "secret-person" not in str(failed.value)
            assert "hidden" in str(failed.value)  # SQLAlchemy's placeholder for them
        finally:
            await database.close()
