"""Request and response models of the orders API (pydantic v2).

Why every input field is declared ``strict`` one by one rather than with a model-wide
``strict=True``: FastAPI validates the parsed JSON in *python* mode, where a model-wide
strict mode would also refuse a UUID given as a string, which is the only way JSON can carry
one. Per-field strictness refuses exactly what the contract names: ``"1"``, ``true`` and
``1.5`` are not integers (pydantic's lax mode would coerce the first two, a type confusion),
and a number is not a string. ``1.0`` *is* the integer 1, for JSON and for JSON Schema alike
(a JavaScript client cannot even tell them apart), so the published schema and the server
agree on every value.

Every input model forbids unknown fields (``extra="forbid"``): a client cannot smuggle an
``id``, ``user_id`` or ``createdAt`` into an order. Control characters and NUL are refused in
free text: PostgreSQL cannot store NUL in ``text`` (it would become a 500) and a newline in a
street is a log- or CSV-injection vector, never a valid address line.

The JSON Schemas generated from these models are the ones the OpenAPI document publishes (and
schemathesis fuzzes), so every constraint is expressed both as a pydantic rule and as the
matching JSON Schema keyword.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

# C0 controls, DEL and C1 controls (U+0080..U+009F). The JSON Schema pattern uses \uXXXX
# escapes, understood by ECMA-262 (OpenAPI tools), Python's re and pydantic's Rust regex.
_CONTROL = re.compile("[\u0000-\u001f\u007f-\u009f]")
NO_CONTROL_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f]*$"
# Canonical RFC 9562 text form only (what JSON Schema's "uuid" format means): no braces, no
# "urn:uuid:" prefix, no 32-hex-digit form, so the published schema and the server agree.
_UUID_TEXT = re.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
)
_COUNTRY = re.compile(r"[A-Za-z]{2}")
# minLength/maxLength 2 keep "FR\n" out: Python's re.search lets "$" match before a final
# newline, so the pattern alone would disagree with the server.
COUNTRY_PATTERN = r"^[A-Za-z]{2}$"

# pydantic serialises an aware UTC datetime as RFC 3339 with "Z" and microseconds.
RFC3339 = "RFC 3339 timestamp in UTC, e.g. 2026-01-31T12:00:00.123456Z"
QUANTITY_MIN = 1
QUANTITY_MAX = 100
STREET_MAX = 200
CITY_MAX = 100


def _no_control_characters(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _uuid_text(value: Any) -> Any:
    """Accept only the canonical hyphenated text form; pydantic then builds the UUID."""
    if not isinstance(value, str) or not _UUID_TEXT.fullmatch(value):
        raise ValueError("must be a UUID in its canonical form (8-4-4-4-12 hexadecimal digits)")
    return value


def _integral_number(value: Any) -> Any:
    """``100.0`` and ``1e2`` are the JSON integer 100 (JSON has one number type, and JSON
    Schema's ``integer`` is any number with a zero fractional part); ``1.5``, strings and
    booleans are left for the strict check to refuse."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _country(value: str) -> str:
    if not _COUNTRY.fullmatch(value):
        raise ValueError("must be a two-letter country code")
    return value.upper()


# Single-line strings of 1..N characters (code points, as JSON Schema counts them).
_SINGLE_LINE = {"pattern": NO_CONTROL_PATTERN}
Street = Annotated[
    str,
    Field(strict=True, min_length=1, max_length=STREET_MAX, json_schema_extra=_SINGLE_LINE),
    AfterValidator(_no_control_characters),
]
City = Annotated[
    str,
    Field(strict=True, min_length=1, max_length=CITY_MAX, json_schema_extra=_SINGLE_LINE),
    AfterValidator(_no_control_characters),
]
Country = Annotated[
    str,
    Field(
        strict=True,
        min_length=2,
        max_length=2,
        json_schema_extra={"pattern": COUNTRY_PATTERN},
        description="ISO 3166-1 alpha-2 code; stored and returned upper-case",
    ),
    AfterValidator(_country),
]
ProductId = Annotated[uuid.UUID, BeforeValidator(_uuid_text)]
Quantity = Annotated[
    int,
    Field(strict=True, ge=QUANTITY_MIN, le=QUANTITY_MAX),
    BeforeValidator(_integral_number),
]


class Address(BaseModel):
    """A delivery address, as sent and as returned."""

    model_config = ConfigDict(extra="forbid")

    street: Street
    city: City
    country: Country


class OrderCreate(BaseModel):
    """Body of ``POST /api/v1/orders``. The owner comes from the token, never from the body."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    product_id: ProductId = Field(alias="productId")
    quantity: Quantity
    address: Address


# --- responses -----------------------------------------------------------------------------


class OrderV1(BaseModel):
    """An order in version 1: camelCase field names."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    id: uuid.UUID
    product_id: uuid.UUID = Field(serialization_alias="productId")
    quantity: Quantity
    address: Address
    created_at: datetime = Field(serialization_alias="createdAt", description=RFC3339)


class OrderListV1(BaseModel):
    """A page of the caller's orders; ``next_cursor`` is null on the last page."""

    items: list[OrderV1]
    next_cursor: str | None


class OrderV2(BaseModel):
    """An order in version 2: snake_case field names."""

    id: uuid.UUID
    product_id: uuid.UUID
    quantity: Quantity
    address: Address
    created_at: datetime = Field(description=RFC3339)


class MetaV2(BaseModel):
    """Version 2 envelope metadata. ``next_cursor`` is always present (null unless a list
    has more pages), so every v2 response has the same ``meta`` shape."""

    api_version: Literal[2] = Field(default=2, serialization_alias="apiVersion")
    next_cursor: str | None = None

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)


class OrderEnvelopeV2(BaseModel):
    """``{"data": <order>, "meta": {...}}``."""

    data: OrderV2
    meta: MetaV2


class OrderListEnvelopeV2(BaseModel):
    """``{"data": [<order>, ...], "meta": {"apiVersion": 2, "next_cursor": ...}}``."""

    data: list[OrderV2]
    meta: MetaV2


class ErrorBody(BaseModel):
    """Every error of the API: a public message and the request id (RFC 9457 in spirit)."""

    error: str = Field(description="Public message; never an exception text")
    request_id: str = Field(alias="requestId", description="Equals the X-Request-ID header")
    # Absent (never null) unless the request failed validation.
    details: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Validation errors only: dotted field path -> list of messages",
    )

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)


__all__ = [
    "Address",
    "ErrorBody",
    "MetaV2",
    "OrderCreate",
    "OrderEnvelopeV2",
    "OrderListEnvelopeV2",
    "OrderListV1",
    "OrderV1",
    "OrderV2",
]
