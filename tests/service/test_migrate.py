"""Migrations (service/migrate.py, service/migrations/): one set of revisions for SQLite and
PostgreSQL, on the service's async drivers, and databases made before migrations existed.

The previous release's schema is made the way that release made it: ``create_all`` of its
six tables (their definitions are unchanged since fe4a976, ``git diff fe4a976 --
src/bastion/service/models.py src/bastion/service/oauth_store.py`` shows no column change),
with rows in them that must survive the upgrade.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bastion.errors import ConfigError
from bastion.service import migrate
from bastion.service.db import Database
from bastion.service.models import Order, User
from tests.service.auth_db import postgres_database, sqlite_url
from tests.service.legacy_schema import create_legacy_schema


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        db = Database(sqlite_url(tmp_path))
        try:
            yield db
        finally:
            await db.close()
        return
    async with postgres_database() as url:
        db = Database(url)
        try:
            yield db
        finally:
            await db.close()


async def _create_all(database: Database, revision: str) -> None:
    await create_legacy_schema(database, revision)


def _differences(conn: sa.Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, migrate.target_metadata()))


async def _drift(database: Database) -> list[object]:
    async with database.engine.connect() as conn:
        found: list[object] = await conn.run_sync(_differences)
        return found


async def _tables(database: Database) -> set[str]:
    async with database.engine.connect() as conn:
        names: list[str] = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        return set(names)


async def test_an_empty_database_gets_the_head_and_matches_the_models(
    database: Database,
) -> None:
    assert (await migrate.state(database)).empty
    before, after = await migrate.ensure(database)
    assert before.empty and after == migrate.head() == "0003"
    assert (await migrate.state(database)).revision == "0003"
    # The revisions build exactly what the models describe, on this database.
    assert await _drift(database) == []
    # Idempotent: a second start changes nothing.
    before, _ = await migrate.ensure(database)
    assert before.revision == "0003"


async def test_previous_release_schema_is_refused_then_upgraded_keeping_its_rows(
    database: Database,
) -> None:
    await _create_all(database, "0001")
    user_id, order_id = uuid.uuid4(), uuid.uuid4()
    async with database.engine.begin() as conn:  # the 0.1 row: no email_key column yet
        legacy = migrate.KNOWN_SCHEMAS["0001"]["users"]
        columns = [sa.column(c.name, c.type) for c in User.__table__.columns if c.name in legacy]
        users = sa.table("users", *columns)
        await conn.execute(
            sa.insert(users).values(
                id=user_id,
                email="old@example.com",
                password_hash="$argon2id$x",
                role="user",
                created_at=datetime.now(UTC),
            )
        )
    async with database.session() as session, session.begin():
        session.add(
            Order(
                id=order_id,
                user_id=user_id,
                product_id=uuid.uuid4(),
                quantity=3,
                street="1 Old Road",
                city="Lyon",
                country="FR",
                created_at=datetime.now(UTC),
            )
        )
    assert "signing_keys" not in await _tables(database)
    state = await migrate.state(database)
    assert state.revision is None and state.legacy == "0001"

    with pytest.raises(ConfigError) as refused:
        await migrate.ensure(database)
    assert "bastion db upgrade" in str(refused.value)
    assert "revision 0001" in str(refused.value)
    assert "BASTION_DATABASE_URL" in str(refused.value)
    assert "\n" not in str(refused.value)

    before, after = await migrate.upgrade(database)
    assert before.legacy == "0001" and after == "0003"
    assert (await migrate.state(database)).revision == "0003"
    assert {"signing_keys", "signing_key_ring", "alembic_version"} <= await _tables(database)
    assert await _drift(database) == []
    async with database.session() as session:
        order = await session.get(Order, order_id)
        assert order is not None and order.user_id == user_id and order.quantity == 3
        user = await session.get(User, user_id)  # revision 0003's data step keyed the account
        assert user is not None and user.email_key == "old@example.com"


async def test_serve_migrate_upgrades_the_previous_release_schema(database: Database) -> None:
    await _create_all(database, "0001")
    before, after = await migrate.ensure(database, migrate=True)
    assert (before.legacy, after) == ("0001", "0003")
    assert await _drift(database) == []


async def test_todays_create_all_schema_is_recorded_without_a_change(database: Database) -> None:
    await _create_all(database, "0003")
    assert (await migrate.state(database)).legacy == "0003"
    before, after = await migrate.ensure(database)  # no --migrate needed: nothing to change
    assert before.legacy == "0003" and after == "0003"
    assert (await migrate.state(database)).revision == "0003"


async def test_signing_key_tables_made_first_by_the_key_store_are_kept(
    database: Database,
) -> None:
    # `bastion keys rotate` with the database key store may run before the first start.
    metadata = migrate.target_metadata()
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all, tables=[metadata.tables["signing_key_ring"]])
        await conn.execute(sa.text("INSERT INTO signing_key_ring (id, version) VALUES (1, 7)"))
    assert (await migrate.state(database)).empty
    await migrate.ensure(database)
    async with database.engine.connect() as conn:
        assert (await conn.scalar(sa.text("SELECT version FROM signing_key_ring"))) == 7
    assert await _drift(database) == []


async def test_a_partial_schema_is_refused_in_one_line(database: Database) -> None:
    metadata = migrate.target_metadata()
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all, tables=[metadata.tables["users"]])
    for attempt in (migrate.ensure, migrate.upgrade, migrate.state):
        with pytest.raises(ConfigError, match="matches no known schema") as refused:
            await attempt(database)
        assert "\n" not in str(refused.value)


async def test_a_revision_from_a_newer_version_is_refused(database: Database) -> None:
    await migrate.ensure(database)
    async with database.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    for attempt in (migrate.ensure, migrate.upgrade):
        with pytest.raises(ConfigError, match="does not know"):
            await attempt(database)
