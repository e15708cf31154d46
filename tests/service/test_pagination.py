"""The cursor codec and the page parameters (the owner filter is tested with the repository)."""

from __future__ import annotations

import base64
import re
import struct
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.errors import HTTPError
from bastion.service.pagination import (
    CURSOR_PATTERN,
    InvalidCursor,
    Keyset,
    PageRequest,
    decode_cursor,
    encode_cursor,
    page_request,
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


async def test_page_request_defaults_to_the_first_page_of_20() -> None:
    assert await page_request() == PageRequest(20, None)


async def test_page_request_decodes_the_cursor() -> None:
    cursor = encode_cursor(Keyset(MOMENT, ID))
    assert await page_request(limit=5, cursor=cursor) == PageRequest(5, Keyset(MOMENT, ID))


async def test_page_request_answers_400_with_the_field_for_a_bad_cursor() -> None:
    with pytest.raises(HTTPError) as info:
        await page_request(cursor="not-a-cursor")
    assert info.value.status == 400
    assert info.value.public_message == "Invalid query parameters"
    assert info.value.details == {"cursor": ["Invalid cursor"]}
