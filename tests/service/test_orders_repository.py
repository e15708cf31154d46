"""The orders repository on SQLite and on a real PostgreSQL: owner scoping in the query,
random ids, keyset pages, verbatim storage of hostile-looking text."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from bastion.service import orders as repo
from bastion.service.db import Base
from bastion.service.models import User
from bastion.service.pagination import Keyset, decode_cursor, encode_cursor
from tests.support import require_tcp

ALICE = uuid.UUID("a11ce000-0000-4000-8000-000000000001")
BOB = uuid.UUID("b0b00000-0000-4000-8000-000000000002")
POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
SQLI = [
    "'; DROP TABLE orders; --",
    "1' OR '1'='1",
    "x' UNION SELECT user_id, id, 1, 'a', 'b', 'c' FROM orders --",
    "\\'; SELECT pg_sleep(5); --",
    "$$; DELETE FROM orders; $$",
]


def _foreign_keys_on(dbapi_connection, _record):  # type: ignore[no-untyped-def]
    dbapi_connection.cursor().execute("PRAGMA foreign_keys=ON")  # as bastion.service.db does


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def sessions(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on a fresh database: a SQLite file, or a PostgreSQL schema of its own
    (so parallel test workers never see each other's rows)."""
    if request.param == "sqlite":
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}")
        event.listen(engine.sync_engine, "connect", _foreign_keys_on)
        schema = None
    else:
        require_tcp("127.0.0.1", 5432, "PostgreSQL")
        schema = f"t_{uuid.uuid4().hex}"
        engine = create_async_engine(
            POSTGRES_URL, connect_args={"server_settings": {"search_path": schema}}
        )
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        factory = async_sessionmaker(engine, expire_on_commit=False)
        async with factory() as session:  # the owners (orders reference their accounts)
            for user_id in (ALICE, BOB):
                session.add(User(id=user_id, email=f"{user_id}@example.test", password_hash="-"))
            await session.commit()
        yield factory
    finally:
        if schema is not None:
            async with engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()


def new_order(**changes: object) -> repo.NewOrder:
    values: dict[str, object] = {
        "product_id": uuid.UUID("0b8e7a52-6f1c-4d8e-9a3b-2f6c1d0e9a77"),
        "quantity": 2,
        "street": "1 Rue de Rivoli",
        "city": "Paris",
        "country": "FR",
    }
    values.update(changes)
    return repo.NewOrder(**values)  # type: ignore[arg-type]


async def test_create_and_get_round_trip(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as s:
        created = await repo.create_order(s, ALICE, new_order())
    async with sessions() as s:
        got = await repo.get_order(s, ALICE, created.id)
    assert got is not None
    assert (got.id, got.user_id, got.product_id, got.quantity) == (
        created.id,
        ALICE,
        created.product_id,
        2,
    )
    assert (got.street, got.city, got.country) == ("1 Rue de Rivoli", "Paris", "FR")
    assert got.created_at == created.created_at  # microseconds survive the round trip
    assert got.created_at.tzinfo is UTC
    assert abs(datetime.now(UTC) - got.created_at) < timedelta(minutes=1)


async def test_ids_are_random_version_4_uuids(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as s:
        ids = [(await repo.create_order(s, ALICE, new_order())).id for _ in range(20)]
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == 20
    # Not sequential, not time-ordered: sorting by id does not give creation order (the chance
    # that 20 random ids come out sorted is 1/20!).
    assert ids != sorted(ids)


async def test_another_owner_gets_none_exactly_like_an_unknown_id(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        alices = await repo.create_order(s, ALICE, new_order())
    async with sessions() as s:
        assert await repo.get_order(s, BOB, alices.id) is None
        assert await repo.get_order(s, BOB, uuid.uuid4()) is None
        assert await repo.delete_order(s, BOB, alices.id) is False
        assert await repo.delete_order(s, BOB, uuid.uuid4()) is False
    async with sessions() as s:  # Bob's attempts changed nothing
        assert await repo.get_order(s, ALICE, alices.id) is not None


async def test_the_owner_filter_is_in_the_sql(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Not checked after loading: the statement sent to the database names the owner."""
    async with sessions() as s:
        alices = await repo.create_order(s, ALICE, new_order())
    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append((statement, parameters))

    async with sessions() as s:
        sync_engine = (await s.connection()).engine.sync_engine
        event.listen(sync_engine, "before_cursor_execute", record)
        try:
            await repo.get_order(s, BOB, alices.id)
            await repo.delete_order(s, BOB, alices.id)
            await repo.list_orders(s, BOB, limit=5)
        finally:
            event.remove(sync_engine, "before_cursor_execute", record)
    queries = [(sql, params) for sql, params in statements if "orders" in sql]
    assert len(queries) == 3
    for sql, params in queries:
        assert "user_id" in sql.split("WHERE", 1)[1]
        assert (
            str(alices.id) not in sql and "'" not in sql.split("WHERE", 1)[1]
        )  # bound, not inlined
        flat = [
            str(p).replace("-", "")
            for p in (params.values() if isinstance(params, dict) else params)
        ]  # type: ignore[union-attr]
        assert BOB.hex in flat or str(BOB) in flat


async def test_an_order_needs_an_existing_owner(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        with pytest.raises(IntegrityError):
            await repo.create_order(s, uuid.uuid4(), new_order())


async def test_deleting_an_account_deletes_its_orders(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        alices = await repo.create_order(s, ALICE, new_order())
        bobs = await repo.create_order(s, BOB, new_order())
    async with sessions() as s:
        await s.execute(delete(User).where(User.id == ALICE))
        await s.commit()
    async with sessions() as s:
        assert await repo.get_order(s, ALICE, alices.id) is None
        assert await repo.get_order(s, BOB, bobs.id) is not None


async def test_delete_removes_only_the_owners_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        a = await repo.create_order(s, ALICE, new_order())
        b = await repo.create_order(s, BOB, new_order())
    async with sessions() as s:
        assert await repo.delete_order(s, ALICE, a.id) is True
        assert await repo.delete_order(s, ALICE, a.id) is False  # already gone
    async with sessions() as s:
        assert await repo.get_order(s, ALICE, a.id) is None
        assert await repo.get_order(s, BOB, b.id) is not None


@pytest.mark.parametrize("hostile", SQLI)
async def test_sql_looking_text_is_stored_verbatim(
    sessions: async_sessionmaker[AsyncSession], hostile: str
) -> None:
    async with sessions() as s:
        created = await repo.create_order(s, ALICE, new_order(street=hostile, city=hostile[:100]))
    async with sessions() as s:
        got = await repo.get_order(s, ALICE, created.id)
        rows, _ = await repo.list_orders(s, ALICE, limit=10)
    assert got is not None and got.street == hostile and got.city == hostile[:100]
    assert [r.id for r in rows] == [created.id]  # the table is intact and holds just this row


async def test_unicode_text_survives(sessions: async_sessionmaker[AsyncSession]) -> None:
    street = "Straße 1 – 東京都 😀 " + "é" * 180
    async with sessions() as s:
        created = await repo.create_order(s, ALICE, new_order(street=street))
    async with sessions() as s:
        got = await repo.get_order(s, ALICE, created.id)
    assert got is not None and got.street == street


async def _seed(
    sessions: async_sessionmaker[AsyncSession], owner: uuid.UUID, count: int, same_time: bool
) -> list[repo.Order]:
    made = []
    async with sessions() as s:
        for _ in range(count):
            made.append(await repo.create_order(s, owner, new_order()))
        if same_time:  # force ties on created_at: the id must break them
            moment = datetime(2026, 1, 1, tzinfo=UTC)
            for order in made:
                order.created_at = moment
            await s.commit()
    return made


@pytest.mark.parametrize("same_time", [False, True])
async def test_pages_cover_every_order_once_newest_first(
    sessions: async_sessionmaker[AsyncSession], same_time: bool
) -> None:
    mine = await _seed(sessions, ALICE, 23, same_time)
    await _seed(sessions, BOB, 7, same_time)
    seen: list[uuid.UUID] = []
    after: Keyset | None = None
    pages = 0
    while True:
        async with sessions() as s:
            rows, after = await repo.list_orders(s, ALICE, limit=5, after=after)
        pages += 1
        seen.extend(r.id for r in rows)
        assert all(r.user_id == ALICE for r in rows)
        if after is None:
            break
        after = decode_cursor(encode_cursor(after))  # through the wire format
    assert pages == 5  # 5+5+5+5+3, and no empty trailing page
    assert sorted(seen) == sorted(o.id for o in mine)
    keys = [(o.created_at, o.id) for o in mine]
    assert seen == [i for _, i in sorted(keys, reverse=True)]


async def test_exact_multiple_of_the_limit_has_no_cursor_on_the_last_page(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _seed(sessions, ALICE, 4, False)
    async with sessions() as s:
        rows, after = await repo.list_orders(s, ALICE, limit=2)
        assert len(rows) == 2 and after is not None
        rows, after = await repo.list_orders(s, ALICE, limit=2, after=after)
        assert len(rows) == 2 and after is None


async def test_a_forged_cursor_never_reaches_another_owners_orders(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Bob builds cursors from Alice's real ids and timestamps, and extreme ones: he only ever
    gets his own orders (or nothing)."""
    alices = await _seed(sessions, ALICE, 6, False)
    bobs = await _seed(sessions, BOB, 2, False)
    forged = [Keyset(o.created_at + timedelta(microseconds=1), o.id) for o in alices]
    forged += [
        Keyset(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), uuid.UUID(int=2**128 - 1)),
        Keyset(datetime(1, 1, 1, tzinfo=UTC), uuid.UUID(int=0)),
    ]
    async with sessions() as s:
        for position in forged:
            rows, _ = await repo.list_orders(s, BOB, limit=100, after=position)
            assert {r.user_id for r in rows} <= {BOB}
            assert {r.id for r in rows} <= {o.id for o in bobs}
