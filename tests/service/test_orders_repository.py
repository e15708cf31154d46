"""The orders repository on SQLite and on a real PostgreSQL: owner scoping in the query,
random ids, keyset pages, verbatim storage of hostile-looking text. The repository runs on
the database's direct path; the ORM session is used here only to set rows up and to read
them back the way the rest of the service stores them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from bastion.service import orders as repo
from bastion.service.db import Database, Direct
from bastion.service.models import Order, User, rfc3339
from bastion.service.pagination import Keyset, decode_cursor, encode_cursor
from tests.service.auth_db import postgres_database, sqlite_url

ALICE = uuid.UUID("a11ce000-0000-4000-8000-000000000001")
BOB = uuid.UUID("b0b00000-0000-4000-8000-000000000002")
SQLI = [
    "'; DROP TABLE orders; --",
    "1' OR '1'='1",
    "x' UNION SELECT user_id, id, 1, 'a', 'b', 'c' FROM orders --",
    "\\'; SELECT pg_sleep(5); --",
    "$$; DELETE FROM orders; $$",
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database with Alice and Bob: a SQLite file, or a PostgreSQL database of its own
    (so parallel test workers never see each other's rows)."""

    async def ready(url: str) -> AsyncIterator[Database]:
        database = Database(url)
        try:
            await database.create_schema()
            async with database.session() as session:  # orders reference their accounts
                for user_id in (ALICE, BOB):
                    session.add(
                        User(id=user_id, email=f"{user_id}@example.test", password_hash="-")
                    )
                await session.commit()
            yield database
        finally:
            await database.close()

    if request.param == "sqlite":
        async for database in ready(sqlite_url(tmp_path)):
            yield database
    else:
        async with postgres_database() as url:
            async for database in ready(url):
                yield database


def new_order(**changes: Any) -> repo.NewOrder:
    values: dict[str, Any] = {
        "product_id": uuid.UUID("0b8e7a52-6f1c-4d8e-9a3b-2f6c1d0e9a77"),
        "quantity": 2,
        "street": "1 Rue de Rivoli",
        "city": "Paris",
        "country": "FR",
    }
    values.update(changes)
    return repo.NewOrder(**values)


async def test_create_and_get_round_trip(db: Database) -> None:
    created = await repo.create_order(db, ALICE, new_order())
    got = await repo.get_order(db, ALICE, uuid.UUID(created.id))
    assert got is not None
    assert (got.id, got.product_id, got.quantity) == (created.id, created.product_id, 2)
    assert (got.street, got.city, got.country) == ("1 Rue de Rivoli", "Paris", "FR")
    assert got.created_at == created.created_at  # microseconds survive the round trip
    assert repo.created(got).tzinfo == UTC and got.created_at.endswith("Z")
    assert abs(datetime.now(UTC) - repo.created(got)) < timedelta(minutes=1)
    # ids come back as canonical text (what the responses carry), on both databases
    assert got.product_id == "0b8e7a52-6f1c-4d8e-9a3b-2f6c1d0e9a77"
    assert got.id == str(uuid.UUID(got.id))


async def test_the_direct_path_and_the_orm_store_rows_alike(db: Database) -> None:
    """Rows written by the direct path read back through the ORM unchanged, and the other way
    round: both use SQLAlchemy's type conversions, so the stored forms cannot drift."""
    created = await repo.create_order(db, ALICE, new_order(street="Ümlaut 1"))
    async with db.session() as session:
        stored = await session.get(Order, uuid.UUID(created.id))
        assert stored is not None
        assert (stored.user_id, stored.created_at, stored.street) == (
            ALICE,
            repo.created(created),
            "Ümlaut 1",
        )
        orm_made = Order(
            id=uuid.uuid4(),
            user_id=BOB,
            product_id=uuid.uuid4(),
            quantity=7,
            street="s",
            city="c",
            country="DE",
            created_at=datetime(2026, 3, 4, 5, 6, 7, 0, tzinfo=UTC),  # no microseconds
        )
        session.add(orm_made)
        await session.commit()
    got = await repo.get_order(db, BOB, orm_made.id)
    assert got == repo.OrderRecord(
        str(orm_made.id), str(orm_made.product_id), 7, "s", "c", "DE", "2026-03-04T05:06:07Z"
    )
    rows, _ = await repo.list_orders(db, BOB, limit=5)
    assert [r.id for r in rows] == [str(orm_made.id)]


async def test_ids_are_random_version_4_uuids(db: Database) -> None:
    ids = [uuid.UUID((await repo.create_order(db, ALICE, new_order())).id) for _ in range(20)]
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == 20
    # Not sequential, not time-ordered: sorting by id does not give creation order (the chance
    # that 20 random ids come out sorted is 1/20!).
    assert ids != sorted(ids)


async def test_another_owner_gets_none_exactly_like_an_unknown_id(db: Database) -> None:
    alices = await repo.create_order(db, ALICE, new_order())
    assert await repo.get_order(db, BOB, uuid.UUID(alices.id)) is None
    assert await repo.get_order(db, BOB, uuid.uuid4()) is None
    assert await repo.delete_order(db, BOB, uuid.UUID(alices.id)) is False
    assert await repo.delete_order(db, BOB, uuid.uuid4()) is False
    assert await repo.get_order(db, ALICE, uuid.UUID(alices.id)) is not None  # Bob changed nothing


async def test_the_owner_filter_is_in_the_sql(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not checked after loading: the statement the driver receives names the owner, and every
    value travels as a bound parameter."""
    alices = await repo.create_order(db, ALICE, new_order())
    sent: list[tuple[str, list[Any]]] = []
    direct = type(db.direct)

    def spy(name: str) -> Any:
        original = getattr(direct, name)

        async def recorded(self: Direct, compiled: Any, args: list[Any], *more: Any) -> Any:
            sent.append((compiled.sql, list(args)))
            return await original(self, compiled, args, *more)

        return recorded

    monkeypatch.setattr(direct, "_fetch", spy("_fetch"))
    monkeypatch.setattr(direct, "_execute", spy("_execute"))
    await repo.get_order(db, BOB, uuid.UUID(alices.id))
    await repo.delete_order(db, BOB, uuid.UUID(alices.id))
    await repo.list_orders(db, BOB, limit=5)
    await repo.list_orders(
        db, BOB, limit=5, after=Keyset(repo.created(alices), uuid.UUID(alices.id))
    )
    assert len(sent) == 4
    for sql, args in sent:
        where = sql.split("WHERE", 1)[1]
        assert "user_id" in where
        assert alices.id not in sql and alices.id.replace("-", "") not in sql and "'" not in where
        flat = [str(arg).replace("-", "") for arg in args]
        assert BOB.hex in flat


async def test_an_order_needs_an_existing_owner(db: Database) -> None:
    with pytest.raises(IntegrityError):
        await repo.create_order(db, uuid.uuid4(), new_order())
    rows, _ = await repo.list_orders(db, ALICE, limit=5)
    assert rows == []


async def test_deleting_an_account_deletes_its_orders(db: Database) -> None:
    alices = await repo.create_order(db, ALICE, new_order())
    bobs = await repo.create_order(db, BOB, new_order())
    async with db.session() as session:
        await session.execute(delete(User).where(User.id == ALICE))
        await session.commit()
    assert await repo.get_order(db, ALICE, uuid.UUID(alices.id)) is None
    assert await repo.get_order(db, BOB, uuid.UUID(bobs.id)) is not None


async def test_delete_removes_only_the_owners_order(db: Database) -> None:
    a = await repo.create_order(db, ALICE, new_order())
    b = await repo.create_order(db, BOB, new_order())
    assert await repo.delete_order(db, ALICE, uuid.UUID(a.id)) is True
    assert await repo.delete_order(db, ALICE, uuid.UUID(a.id)) is False  # already gone
    assert await repo.get_order(db, ALICE, uuid.UUID(a.id)) is None
    assert await repo.get_order(db, BOB, uuid.UUID(b.id)) is not None
    async with db.session() as session:  # gone for the ORM too: one database, two paths
        assert await session.scalar(select(Order).where(Order.id == uuid.UUID(a.id))) is None


@pytest.mark.parametrize("hostile", SQLI)
async def test_sql_looking_text_is_stored_verbatim(db: Database, hostile: str) -> None:
    created = await repo.create_order(db, ALICE, new_order(street=hostile, city=hostile[:100]))
    got = await repo.get_order(db, ALICE, uuid.UUID(created.id))
    rows, _ = await repo.list_orders(db, ALICE, limit=10)
    assert got is not None and got.street == hostile and got.city == hostile[:100]
    assert [r.id for r in rows] == [created.id]  # the table is intact and holds just this row


async def test_unicode_text_survives(db: Database) -> None:
    street = "Straße 1 – 東京都 😀 " + "é" * 180
    created = await repo.create_order(db, ALICE, new_order(street=street))
    got = await repo.get_order(db, ALICE, uuid.UUID(created.id))
    assert got is not None and got.street == street


async def _seed(
    db: Database, owner: uuid.UUID, count: int, same_time: bool
) -> list[repo.OrderRecord]:
    made = [await repo.create_order(db, owner, new_order()) for _ in range(count)]
    if same_time:  # force ties on created_at: the id must break them
        moment = datetime(2026, 1, 1, tzinfo=UTC)
        async with db.session() as session:
            ids = [uuid.UUID(order.id) for order in made]
            await session.execute(update(Order).where(Order.id.in_(ids)).values(created_at=moment))
            await session.commit()
        made = [order._replace(created_at=rfc3339(moment)) for order in made]
    return made


@pytest.mark.parametrize("same_time", [False, True])
async def test_pages_cover_every_order_once_newest_first(db: Database, same_time: bool) -> None:
    mine = await _seed(db, ALICE, 23, same_time)
    await _seed(db, BOB, 7, same_time)
    seen: list[str] = []
    after: Keyset | None = None
    pages = 0
    while True:
        rows, after = await repo.list_orders(db, ALICE, limit=5, after=after)
        pages += 1
        seen.extend(r.id for r in rows)
        if after is None:
            break
        after = decode_cursor(encode_cursor(after))  # through the wire format
    assert pages == 5  # 5+5+5+5+3, and no empty trailing page
    assert sorted(seen) == sorted(o.id for o in mine)
    keys = [(repo.created(o), o.id) for o in mine]  # canonical text sorts as the UUIDs do
    assert seen == [i for _, i in sorted(keys, reverse=True)]


async def test_exact_multiple_of_the_limit_has_no_cursor_on_the_last_page(db: Database) -> None:
    await _seed(db, ALICE, 4, False)
    rows, after = await repo.list_orders(db, ALICE, limit=2)
    assert len(rows) == 2 and after is not None
    rows, after = await repo.list_orders(db, ALICE, limit=2, after=after)
    assert len(rows) == 2 and after is None


async def test_a_forged_cursor_never_reaches_another_owners_orders(db: Database) -> None:
    """Bob builds cursors from Alice's real ids and timestamps, and extreme ones: he only ever
    gets his own orders (or nothing)."""
    alices = await _seed(db, ALICE, 6, False)
    bobs = await _seed(db, BOB, 2, False)
    forged = [Keyset(repo.created(o) + timedelta(microseconds=1), uuid.UUID(o.id)) for o in alices]
    forged += [
        Keyset(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), uuid.UUID(int=2**128 - 1)),
        Keyset(datetime(1, 1, 1, tzinfo=UTC), uuid.UUID(int=0)),
    ]
    for position in forged:
        rows, _ = await repo.list_orders(db, BOB, limit=100, after=position)
        assert {r.id for r in rows} <= {o.id for o in bobs}
