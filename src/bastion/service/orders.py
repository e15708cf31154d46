"""The orders repository: every query is scoped by its owner *in the query itself*.

OWASP API1 (Broken Object Level Authorization) happens when code loads an object by the id a
client sent and checks the owner afterwards, or forgets to. Here there is no function that
takes an order id without an owner id: reads and deletes are
``WHERE id = :id AND user_id = :owner``, so another user's order is, to the caller, exactly an
order that does not exist (same query, same plan, same ``None``), and the route answers the
same ``404`` for both. Everything goes through SQLAlchemy with bound parameters; no SQL text
is ever built from input.

Ids are random version-4 UUIDs (122 random bits): not sequential, and unlike UUIDv7 they carry
no creation timestamp, so an id neither reveals when an order was placed nor helps guess
another one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.service.models import Order
from bastion.service.pagination import Keyset


@dataclass(frozen=True, slots=True)
class NewOrder:
    """A validated order, as the routes hand it to the repository (owner comes separately)."""

    product_id: uuid.UUID
    quantity: int
    street: str
    city: str
    country: str


async def create_order(session: AsyncSession, owner_id: uuid.UUID, new: NewOrder) -> Order:
    """Insert an order owned by *owner_id* and commit."""
    order = Order(
        id=uuid.uuid4(),
        user_id=owner_id,
        product_id=new.product_id,
        quantity=new.quantity,
        street=new.street,
        city=new.city,
        country=new.country,
        created_at=datetime.now(UTC),
    )
    session.add(order)
    await session.commit()
    return order


async def get_order(
    session: AsyncSession, owner_id: uuid.UUID, order_id: uuid.UUID
) -> Order | None:
    """The order *order_id* if *owner_id* owns it; ``None`` otherwise (absent or not theirs)."""
    statement = select(Order).where(Order.id == order_id, Order.user_id == owner_id)
    return cast(Order | None, await session.scalar(statement))


async def delete_order(session: AsyncSession, owner_id: uuid.UUID, order_id: uuid.UUID) -> bool:
    """Delete *order_id* if *owner_id* owns it; ``False`` when nothing matched. Commits."""
    statement = delete(Order).where(Order.id == order_id, Order.user_id == owner_id)
    result = cast(CursorResult[Any], await session.execute(statement))
    await session.commit()
    return result.rowcount == 1


async def list_orders(
    session: AsyncSession,
    owner_id: uuid.UUID,
    *,
    limit: int,
    after: Keyset | None = None,
) -> tuple[Sequence[Order], Keyset | None]:
    """One page of *owner_id*'s orders, newest first, and the position of the next page.

    The keyset condition is ANDed with the owner filter, so a forged position can only move
    within the caller's own orders. One extra row is fetched to know whether a next page
    exists without a ``COUNT``; the last page therefore never returns a cursor.
    """
    statement = select(Order).where(Order.user_id == owner_id)
    if after is not None:
        statement = statement.where(
            or_(
                Order.created_at < after.created_at,
                and_(Order.created_at == after.created_at, Order.id < after.id),
            )
        )
    statement = statement.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1)
    rows = list(await session.scalars(statement))
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], Keyset(last.created_at, last.id)


__all__ = ["NewOrder", "Order", "create_order", "delete_order", "get_order", "list_orders"]
