"""The orders repository: every query is scoped by its owner *in the query itself*.

OWASP API1 (Broken Object Level Authorization) happens when code loads an object by the id a
client sent and checks the owner afterwards, or forgets to. Here there is no function that
takes an order id without an owner id: reads and deletes are
``WHERE id = :id AND user_id = :owner``, so another user's order is, to the caller, exactly an
order that does not exist (same query, same plan, same ``None``), and the route answers the
same ``404`` for both. Every statement is a SQLAlchemy Core construct with bound parameters,
compiled once and run on the database's direct request path (:mod:`bastion.service.db`); no
SQL text is ever built from input.

Ids are random version-4 UUIDs (122 random bits): not sequential, and unlike UUIDv7 they carry
no creation timestamp, so an id neither reveals when an order was placed nor helps guess
another one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import and_, bindparam, delete, insert, or_, select

from bastion.service.db import Database, Query
from bastion.service.models import Order, rfc3339
from bastion.service.pagination import Keyset


@dataclass(frozen=True, slots=True)
class NewOrder:
    """A validated order, as the routes hand it to the repository (owner comes separately)."""

    product_id: uuid.UUID
    quantity: int
    street: str
    city: str
    country: str


class OrderRecord(NamedTuple):
    """An order as its owner reads it: the columns of :class:`~bastion.service.models.Order`
    but the owner (who is the caller: every read is filtered on it), in the text its JSON
    carries.

    A named tuple: built from a row in one C call, which a page of orders does 21 times. Ids
    are canonical UUID text (lowercase, dashed), ``created_at`` RFC 3339 in UTC as pydantic
    writes it (:func:`~bastion.service.models.rfc3339`), both read from the driver's value
    without a :class:`uuid.UUID` or :class:`~datetime.datetime` in between
    (:class:`~bastion.service.db.Query`'s ``as_text``): 7 µs per order less than building
    the objects and formatting them again. :func:`created` gives the datetime back.
    """

    id: str
    product_id: str
    quantity: int
    street: str
    city: str
    country: str
    created_at: str


def created(order: OrderRecord) -> datetime:
    """*order*'s creation time as an aware UTC datetime."""
    return datetime.fromisoformat(order.created_at)


_t = Order.__table__.c
_COLUMNS = (_t.id, _t.product_id, _t.quantity, _t.street, _t.city, _t.country, _t.created_at)
_OWNED = and_(_t.id == bindparam("id"), _t.user_id == bindparam("owner"))
_NEWEST_FIRST = (_t.created_at.desc(), _t.id.desc())

_INSERT = Query(insert(Order).values({c.name: bindparam(c.name) for c in (*_COLUMNS, _t.user_id)}))
_GET = Query(select(*_COLUMNS).where(_OWNED), as_text=True)
_DELETE = Query(delete(Order).where(_OWNED))
_FIRST_PAGE = Query(
    select(*_COLUMNS)
    .where(_t.user_id == bindparam("owner"))
    .order_by(*_NEWEST_FIRST)
    .limit(bindparam("limit")),
    as_text=True,
)
_NEXT_PAGE = Query(
    select(*_COLUMNS)
    .where(
        _t.user_id == bindparam("owner"),
        or_(
            _t.created_at < bindparam("at"),
            and_(_t.created_at == bindparam("at"), _t.id < bindparam("after_id")),
        ),
    )
    .order_by(*_NEWEST_FIRST)
    .limit(bindparam("limit")),
    as_text=True,
)


async def create_order(db: Database, owner_id: uuid.UUID, new: NewOrder) -> OrderRecord:
    """Insert an order owned by *owner_id* (committed when this returns)."""
    order_id = uuid.uuid4()
    created_at = datetime.now(UTC)
    await db.direct.run(
        _INSERT,
        id=order_id,
        user_id=owner_id,
        product_id=new.product_id,
        quantity=new.quantity,
        street=new.street,
        city=new.city,
        country=new.country,
        created_at=created_at,
    )
    return OrderRecord(
        str(order_id), str(new.product_id), new.quantity, new.street, new.city, new.country,
        rfc3339(created_at),
    )  # fmt: skip


async def get_order(db: Database, owner_id: uuid.UUID, order_id: uuid.UUID) -> OrderRecord | None:
    """The order *order_id* if *owner_id* owns it; ``None`` otherwise (absent or not theirs)."""
    row = await db.direct.one(_GET, id=order_id, owner=owner_id)
    return None if row is None else OrderRecord._make(row)


async def delete_order(db: Database, owner_id: uuid.UUID, order_id: uuid.UUID) -> bool:
    """Delete *order_id* if *owner_id* owns it; ``False`` when nothing matched."""
    return await db.direct.run(_DELETE, id=order_id, owner=owner_id) == 1


async def list_orders(
    db: Database,
    owner_id: uuid.UUID,
    *,
    limit: int,
    after: Keyset | None = None,
) -> tuple[list[OrderRecord], Keyset | None]:
    """One page of *owner_id*'s orders, newest first, and the position of the next page.

    The keyset condition is ANDed with the owner filter, so a forged position can only move
    within the caller's own orders. One extra row is fetched to know whether a next page
    exists without a ``COUNT``; the last page therefore never returns a cursor.
    """
    if after is None:
        rows = await db.direct.all(_FIRST_PAGE, owner=owner_id, limit=limit + 1)
    else:
        rows = await db.direct.all(
            _NEXT_PAGE, owner=owner_id, at=after.created_at, after_id=after.id, limit=limit + 1
        )
    orders = [OrderRecord._make(row) for row in rows]
    if len(orders) <= limit:
        return orders, None
    last = orders[limit - 1]
    return orders[:limit], Keyset(created(last), uuid.UUID(last.id))


__all__ = [
    "NewOrder",
    "Order",
    "OrderRecord",
    "create_order",
    "created",
    "delete_order",
    "get_order",
    "list_orders",
]
