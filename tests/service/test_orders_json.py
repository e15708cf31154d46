"""The orders' JSON is written by hand on the hot path (bastion.service.routes.orders); it must
be, byte for byte, what the documented response models would have written through FastAPI
(pydantic-core, aliases on) for any order the database can hold."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from bastion.service.models import UTCDateTime, rfc3339
from bastion.service.orders import OrderRecord
from bastion.service.responses import JSONBody
from bastion.service.routes.orders import as_v1, as_v2
from bastion.service.schemas import (
    Address,
    MetaV2,
    OrderEnvelopeV2,
    OrderListEnvelopeV2,
    OrderListV1,
    OrderV1,
    OrderV2,
)

M = TypeVar("M", bound=BaseModel)

# Any text SQLite or PostgreSQL could hand back (lone surrogates cannot be stored as UTF-8).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=60)
MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


@st.composite
def orders(draw: st.DrawFn) -> OrderRecord:
    moment = draw(MOMENTS)
    if draw(st.booleans()):
        moment = moment.replace(microsecond=0)  # pydantic drops ".000000"; so must we
    return OrderRecord(
        id=str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))),
        product_id=str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))),
        quantity=draw(st.integers(1, 100)),
        street=draw(TEXT),
        city=draw(TEXT),
        country=draw(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2)),
        created_at=rfc3339(moment),  # as the repository reads it on both databases
    )


def _model_fields(order: OrderRecord) -> dict[str, Any]:
    return {
        "id": uuid.UUID(order.id),
        "product_id": uuid.UUID(order.product_id),
        "quantity": order.quantity,
        "address": Address.model_construct(
            street=order.street, city=order.city, country=order.country
        ),
        "created_at": datetime.fromisoformat(order.created_at),
    }


def pydantic_bytes(model: type[M], value: M) -> bytes:
    """What FastAPI writes for a response model (its dump_json fast path, aliases on)."""
    return bytes(TypeAdapter(model).dump_json(value, by_alias=True))


def ours(content: object) -> bytes:
    return bytes(JSONBody(content).body)


@settings(max_examples=300, deadline=None)
@given(order=orders())
def test_one_order_v1_and_v2(order: OrderRecord) -> None:
    v1 = OrderV1.model_construct(**_model_fields(order))
    assert ours(as_v1(order)) == pydantic_bytes(OrderV1, v1)
    v2 = OrderEnvelopeV2.model_construct(
        data=OrderV2.model_construct(**_model_fields(order)), meta=MetaV2()
    )
    assert ours({"data": as_v2(order), "meta": {"apiVersion": 2, "next_cursor": None}}) == (
        pydantic_bytes(OrderEnvelopeV2, v2)
    )


@settings(max_examples=100, deadline=None)
@given(page=st.lists(orders(), max_size=5), cursor=st.none() | st.just("A" * 32))
def test_pages_v1_and_v2(page: list[OrderRecord], cursor: str | None) -> None:
    v1 = OrderListV1.model_construct(
        items=[OrderV1.model_construct(**_model_fields(o)) for o in page], next_cursor=cursor
    )
    assert ours({"items": [as_v1(o) for o in page], "next_cursor": cursor}) == pydantic_bytes(
        OrderListV1, v1
    )
    v2 = OrderListEnvelopeV2.model_construct(
        data=[OrderV2.model_construct(**_model_fields(o)) for o in page],
        meta=MetaV2(next_cursor=cursor),
    )
    ours_v2 = {"data": [as_v2(o) for o in page], "meta": {"apiVersion": 2, "next_cursor": cursor}}
    assert ours(ours_v2) == pydantic_bytes(OrderListEnvelopeV2, v2)


@settings(max_examples=300, deadline=None)
@given(moment=MOMENTS, whole_second=st.booleans())
def test_timestamps_read_as_text_are_pydantic_s_form_on_both_databases(
    moment: datetime, whole_second: bool
) -> None:
    """``created_at`` is read as text (``Query(as_text=True)``): from SQLite's stored form by
    slicing, from asyncpg's aware datetime by formatting; both must be what pydantic writes."""
    if whole_second:
        moment = moment.replace(microsecond=0)
    expected = TypeAdapter(datetime).dump_json(moment).decode().strip('"')
    column = UTCDateTime()
    sqlite = sqlite_dialect.dialect()
    store: Callable[[datetime], str] | None = column.dialect_impl(sqlite).bind_processor(sqlite)
    assert store is not None
    assert column.text_result_processor(sqlite)(store(moment)) == expected
    postgres = postgresql_dialect.dialect()  # type: ignore[no-untyped-call]
    assert column.text_result_processor(postgres)(moment) == expected
    paris = moment.astimezone(ZoneInfo("Europe/Paris")) if moment.year > 1 else moment
    assert column.text_result_processor(postgres)(paris) == expected
