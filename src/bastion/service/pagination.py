"""Cursor pagination: ``?limit=`` 1..100 and an opaque keyset cursor.

Why keyset values rather than an HMAC-signed cursor
---------------------------------------------------
A cursor is the position of the last order of the previous page: its ``(created_at, id)``,
packed into 24 bytes (8-byte signed microseconds since the epoch, then the 16 bytes of the
UUID) and written as 32 base64url characters. It carries **no owner** and is never trusted
for authorisation: the repository always adds ``WHERE user_id = :caller`` to the keyset
condition (OWASP API1, BOLA). Forging a cursor (another user's order id, any timestamp) can
therefore only move the caller's own window; it cannot reveal a single row of someone else.
A signature would add a secret to manage across worker processes and key rotation while
protecting nothing the owner filter does not already protect.

Because every 32-character base64url string decodes to some position, the published schema
(``pattern ^[A-Za-z0-9_-]{32}$``) is exact: a well-formed cursor always gives ``200`` (perhaps
an empty page), anything else gives ``400``. Timestamps beyond what a datetime can hold are
clamped, so a fuzzer's cursor cannot become a 500.

Pages are ordered newest first, ``(created_at DESC, id DESC)``; the id breaks ties between
orders created in the same microsecond, so no order is skipped or repeated between pages.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from bastion.errors import HTTPError
from bastion.service.errors import INVALID_QUERY

LIMIT_MIN = 1
LIMIT_MAX = 100
LIMIT_DEFAULT = 20
CURSOR_LENGTH = 32
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{32}$"
_CURSOR = re.compile(r"[A-Za-z0-9_-]{32}")
_PACK = struct.Struct(">q16s")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_MIN_TIME = datetime(1, 1, 1, tzinfo=UTC)
_MAX_TIME = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
_MIN_US = (_MIN_TIME - _EPOCH) // _ONE_US
_MAX_US = (_MAX_TIME - _EPOCH) // _ONE_US


class InvalidCursor(ValueError):
    """The cursor is not 32 base64url characters."""


@dataclass(frozen=True, slots=True)
class Keyset:
    """The position after which the next page starts: the last item's sort key."""

    created_at: datetime
    id: uuid.UUID


def encode_cursor(position: Keyset) -> str:
    """32 base64url characters (no padding: 24 bytes are a whole number of base64 blocks)."""
    created = position.created_at
    if created.tzinfo is None:  # SQLite hands back naive UTC values
        created = created.replace(tzinfo=UTC)
    micros = (created - _EPOCH) // _ONE_US
    return base64.urlsafe_b64encode(_PACK.pack(micros, position.id.bytes)).decode("ascii")


def decode_cursor(cursor: str) -> Keyset:
    """The position a cursor names; raises :class:`InvalidCursor` unless it is well-formed."""
    if not _CURSOR.fullmatch(cursor):
        raise InvalidCursor("not 32 base64url characters")
    try:
        raw = base64.urlsafe_b64decode(cursor)
    except (binascii.Error, ValueError):  # unreachable after the pattern; kept for safety
        raise InvalidCursor("not base64url") from None
    micros, id_bytes = _PACK.unpack(raw)
    micros = min(max(micros, _MIN_US), _MAX_US)
    return Keyset(_EPOCH + micros * _ONE_US, uuid.UUID(bytes=id_bytes))


@dataclass(frozen=True, slots=True)
class PageRequest:
    """What the client asked for: how many items, after which position (None: first page)."""

    limit: int
    after: Keyset | None


_LIMIT: TypeAdapter[int] = TypeAdapter(Annotated[int, Field(ge=LIMIT_MIN, le=LIMIT_MAX)])

# The query parameters of a list, for the OpenAPI document (``openapi_extra``): the routes
# read them with :func:`page_of` rather than declaring them, see there.
PAGE_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": f"Items per page, {LIMIT_MIN}..{LIMIT_MAX}",
        "schema": {"type": "integer", "minimum": LIMIT_MIN, "maximum": LIMIT_MAX,
                   "default": LIMIT_DEFAULT, "title": "Limit",
                   "description": f"Items per page, {LIMIT_MIN}..{LIMIT_MAX}"},
    },
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "Opaque cursor from the previous page's next_cursor",
        "schema": {"type": "string", "pattern": CURSOR_PATTERN, "minLength": CURSOR_LENGTH,
                   "maxLength": CURSOR_LENGTH, "title": "Cursor",
                   "description": "Opaque cursor from the previous page's next_cursor"},
    },
]  # fmt: skip


def page_of(query: Mapping[str, str]) -> PageRequest:
    """The page a list request asks for (``request.query_params``); ``400`` with the
    contract's details for a bad ``limit`` or ``cursor``.

    Read here rather than declared as FastAPI query parameters, which FastAPI 0.165 solves
    with 37 µs of generic work per request (measured in process), a tenth of a list's CPU.
    The answers are FastAPI's: ``limit`` goes through the same pydantic validation (lax
    integer parsing, the same messages), and the last of repeated values counts.
    """
    raw = query.get("limit")
    limit = LIMIT_DEFAULT
    if raw is not None:
        try:
            limit = _LIMIT.validate_python(raw)
        except ValidationError as exc:
            details = {"limit": [error["msg"] for error in exc.errors()]}
            raise HTTPError(400, INVALID_QUERY, details=details) from None
    cursor = query.get("cursor")
    if cursor is None:
        return PageRequest(limit, None)
    try:
        return PageRequest(limit, decode_cursor(cursor))
    except InvalidCursor:
        raise HTTPError(400, INVALID_QUERY, details={"cursor": ["Invalid cursor"]}) from None


__all__ = [
    "LIMIT_DEFAULT",
    "LIMIT_MAX",
    "LIMIT_MIN",
    "PAGE_PARAMETERS",
    "InvalidCursor",
    "Keyset",
    "PageRequest",
    "decode_cursor",
    "encode_cursor",
    "page_of",
]
