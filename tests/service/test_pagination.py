"""The cursor codec and the page parameters (the owner filter is tested with the repository)."""

from __future__ import annotations

import base64
import re
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI, Query
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.errors import HTTPError
from bastion.fastapi import install_error_handlers
from bastion.service.pagination import (
    CURSOR_PATTERN,
    LIMIT_DEFAULT,
    PAGE_PARAMETERS,
    InvalidCursor,
    Keyset,
    PageRequest,
    decode_cursor,
    encode_cursor,
    page_of,
)

MOMENT = datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)
ID = uuid.UUID("9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f")


def test_round_trip_keeps_microseconds_and_id() -> None:
    cursor = encode_cursor(Keyset(MOMENT, ID))
    assert len(cursor) == 32
    assert re.fullmatch(CURSOR_PATTERN, cursor)
    assert decode_cursor(cursor) == Keyset(MOMENT, ID)


def test_naive_datetimes_are_read_as_utc() -> None:
    """SQLite gives naive UTC values back; the cursor must not shift them by a local offset."""
    naive = MOMENT.replace(tzinfo=None)
    assert decode_cursor(encode_cursor(Keyset(naive, ID))) == Keyset(MOMENT, ID)


def test_other_offsets_are_normalised_to_utc() -> None:
    paris = MOMENT.astimezone(ZoneInfo("Europe/Paris"))
    decoded = decode_cursor(encode_cursor(Keyset(paris, ID)))
    assert decoded.created_at == MOMENT and decoded.created_at.tzinfo is UTC


def test_the_cursor_names_no_owner() -> None:
    """Its 24 bytes are exactly the timestamp and the order id: nothing to forge an owner with."""
    raw = base64.urlsafe_b64decode(encode_cursor(Keyset(MOMENT, ID)))
    micros, id_bytes = struct.unpack(">q16s", raw)
    assert id_bytes == ID.bytes
    assert datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros) == MOMENT


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "A" * 31,
        "A" * 33,
        "A" * 30 + "==",  # padding is not part of the alphabet
        "A" * 31 + "+",  # standard base64, not base64url
        "A" * 31 + "/",
        "A" * 31 + ".",
        "A" * 31 + "\n",
        "Ａ" * 32,  # full-width letters
        "' OR 1=1 --" + "A" * 21,
    ],
)
def test_malformed_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)


@settings(database=None)  # no example database in the shared checkout
@given(st.from_regex(r"\A[A-Za-z0-9_-]{32}\Z"))
def test_every_well_formed_cursor_decodes(cursor: str) -> None:
    """The published pattern is exact: anything matching it is a position (never a 500)."""
    position = decode_cursor(cursor)
    assert position.created_at.tzinfo is UTC
    assert datetime(1, 1, 1, tzinfo=UTC) <= position.created_at


@pytest.mark.parametrize(
    ("micros", "expected"),
    [
        (-(2**63), datetime(1, 1, 1, tzinfo=UTC)),
        (2**63 - 1, datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_extreme_timestamps_are_clamped(micros: int, expected: datetime) -> None:
    cursor = base64.urlsafe_b64encode(struct.pack(">q16s", micros, ID.bytes)).decode()
    assert decode_cursor(cursor) == Keyset(expected, ID)


def test_a_page_defaults_to_the_first_page_of_20() -> None:
    assert page_of({}) == PageRequest(20, None)


def test_a_page_decodes_the_cursor() -> None:
    cursor = encode_cursor(Keyset(MOMENT, ID))
    assert page_of({"limit": "5", "cursor": cursor}) == PageRequest(5, Keyset(MOMENT, ID))


def test_a_bad_cursor_is_a_400_naming_the_field() -> None:
    with pytest.raises(HTTPError) as info:
        page_of({"cursor": "not-a-cursor"})
    assert info.value.status == 400
    assert info.value.public_message == "Invalid query parameters"
    assert info.value.details == {"cursor": ["Invalid cursor"]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("0", "Input should be greater than or equal to 1"),
        ("-1", "Input should be greater than or equal to 1"),
        ("101", "Input should be less than or equal to 100"),
        ("9" * 30, "Input should be less than or equal to 100"),
        ("abc", "Input should be a valid integer, unable to parse string as an integer"),
        ("1.5", "Input should be a valid integer, unable to parse string as an integer"),
        ("1e1", "Input should be a valid integer, unable to parse string as an integer"),
        ("", "Input should be a valid integer, unable to parse string as an integer"),
        ("\uff15", "Input should be a valid integer, unable to parse string as an integer"),
    ],
)
def test_a_bad_limit_is_a_400_with_pydantic_s_message(raw: str, message: str) -> None:
    """The messages FastAPI gave when ``limit`` was a declared query parameter."""
    with pytest.raises(HTTPError) as info:
        page_of({"limit": raw})
    assert info.value.status == 400
    assert info.value.details == {"limit": [message]}


@pytest.mark.parametrize(("raw", "limit"), [(" 1", 1), ("+5", 5), ("05", 5), ("100", 100)])
def test_a_limit_is_parsed_as_fastapi_parsed_it(raw: str, limit: int) -> None:
    assert page_of({"limit": raw}).limit == limit


def test_the_documented_parameters_are_what_fastapi_writes_for_declared_ones() -> None:
    """The list routes read ``limit`` and ``cursor`` themselves; their OpenAPI entries must
    be the ones FastAPI generates for the same parameters declared the usual way (with the
    contract's touches to the document, as the service's app has them)."""
    declared = FastAPI()
    install_error_handlers(declared)

    @declared.get("/orders")
    async def orders(
        limit: Annotated[
            int, Query(ge=1, le=100, description="Items per page, 1..100")
        ] = LIMIT_DEFAULT,
        cursor: Annotated[
            str | None,
            Query(
                description="Opaque cursor from the previous page's next_cursor",
                json_schema_extra={"pattern": r"^[A-Za-z0-9_-]{32}$", "minLength": 32,
                                   "maxLength": 32},
            ),
        ] = None,
    ) -> None: ...  # fmt: skip

    generated = declared.openapi()["paths"]["/orders"]["get"]["parameters"]
    assert generated == PAGE_PARAMETERS
