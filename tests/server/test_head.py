"""The request head is refused as soon as the bytes received prove it too large (head.py).

Exact boundaries (a limit is "at most"), the same verdict whatever the pieces the bytes
arrive in, and the memory bound: the buffer never holds more than the limit plus the last
read when it refuses.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.server.head import (
    HEADER_FIELDS_TOO_LARGE,
    URI_TOO_LONG,
    HeadBuffer,
    HeadRefused,
    target_length,
)

MAX_BYTES, MAX_FIELDS, MAX_URI = 16384, 100, 8192


def _buffer() -> HeadBuffer:
    return HeadBuffer(max_bytes=MAX_BYTES, max_fields=MAX_FIELDS, max_uri=MAX_URI)


def _head(size: int | None = None, fields: int = 1, target: bytes = b"/") -> bytes:
    """A head of exactly *size* bytes (padding in the last field) with *fields* fields."""
    lines = [b"GET " + target + b" HTTP/1.1", *(b"X-F%d: v" % i for i in range(fields - 1))]
    lines.append(b"Host: a")
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    if size is not None:
        head = head[:-4] + b"a" * (size - len(head)) + b"\r\n\r\n"
        assert len(head) == size
    return head


def _verdict(head: HeadBuffer, pieces: list[bytes]) -> int | str:
    size = 0
    try:
        for piece in pieces:
            size = head.add(piece)
            if size:
                return size
    except HeadRefused as refused:
        return refused.refusal.status
    return "incomplete"


def test_a_head_at_the_byte_limit_is_complete_and_one_more_byte_is_431() -> None:
    assert _verdict(_buffer(), [_head(MAX_BYTES)]) == MAX_BYTES
    assert _buffer().whole(_head(MAX_BYTES))
    assert _verdict(_buffer(), [_head(MAX_BYTES + 1)]) == 431
    assert not _buffer().whole(_head(MAX_BYTES + 1))


def test_an_unfinished_head_past_the_limit_is_refused_without_its_end() -> None:
    head = _buffer()
    start = b"GET / HTTP/1.1\r\nX: "
    head.add(start)
    assert head.add(b"a" * (MAX_BYTES - len(start))) == 0  # exactly the limit: still waiting
    with pytest.raises(HeadRefused) as refused:
        head.add(b"a")
    assert refused.value.refusal is HEADER_FIELDS_TOO_LARGE


def test_fields_at_the_limit_pass_and_one_more_is_431_before_the_head_ends() -> None:
    verdict = _verdict(_buffer(), [_head(fields=MAX_FIELDS)])
    assert isinstance(verdict, int) and verdict > 0
    assert _verdict(_buffer(), [_head(fields=MAX_FIELDS + 1)]) == 431
    # Line by line, the 101st field is refused as soon as its line ends.
    lines = _head(fields=MAX_FIELDS + 1).split(b"\r\n")
    head = _buffer()
    head.add(lines[0] + b"\r\n")
    with pytest.raises(HeadRefused):
        for line in lines[1 : MAX_FIELDS + 2]:
            head.add(line + b"\r\n")
    assert len(head) < 4096  # refused long before the byte limit


def test_uri_at_the_limit_passes_and_one_more_byte_is_414() -> None:
    at_limit = b"/" + b"a" * (MAX_URI - 1)
    verdict = _verdict(_buffer(), [_head(target=at_limit)])
    assert isinstance(verdict, int) and verdict > 0
    assert _buffer().whole(_head(target=at_limit))
    assert _verdict(_buffer(), [_head(target=at_limit + b"a")]) == 414
    assert not _buffer().whole(_head(target=at_limit + b"a"))


def test_a_request_line_that_never_ends_is_414_once_no_target_within_the_limit_fits() -> None:
    head = _buffer()
    head.add(b"GET /")
    with pytest.raises(HeadRefused) as refused:
        for _ in range(MAX_URI + 64):
            head.add(b"a")
    assert refused.value.refusal is URI_TOO_LONG
    assert len(head) <= MAX_URI + 40


def test_uri_and_head_limits_are_checked_in_that_order() -> None:
    # The target is the cause: 414 even though the head is over its limit too.
    assert _verdict(_buffer(), [_head(target=b"/" + b"a" * MAX_BYTES)]) == 414


@settings(max_examples=60, deadline=None)
@given(
    case=st.sampled_from(
        [
            _head(MAX_BYTES),
            _head(MAX_BYTES + 1),
            _head(fields=MAX_FIELDS),
            _head(fields=MAX_FIELDS + 1),
            _head(target=b"/" + b"a" * (MAX_URI - 1)),
            _head(target=b"/" + b"a" * MAX_URI),
        ]
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=20000), max_size=12),
)
def test_the_verdict_does_not_depend_on_how_the_bytes_are_cut(case: bytes, cuts: list[int]) -> None:
    whole = _verdict(_buffer(), [case])
    points = sorted({c for c in cuts if c < len(case)})
    pieces = [case[a:b] for a, b in zip([0, *points], [*points, len(case)], strict=True)]
    assert _verdict(_buffer(), pieces) == whole


def test_one_byte_at_a_time_gives_the_same_verdict() -> None:
    for case, expected in ((_head(2000), 2000), (_head(fields=MAX_FIELDS + 1), 431)):
        head = _buffer()
        assert _verdict(head, [case[i : i + 1] for i in range(len(case))]) == expected


def test_bytes_after_the_head_stay_for_the_body_or_the_next_request() -> None:
    head = _buffer()
    first = b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\n"
    size = head.add(first + b"abcGET /y HTTP/1.1\r\n\r\n")
    assert head.take(size) == first
    assert head.take_all() == b"abcGET /y HTTP/1.1\r\n\r\n"


def test_a_pipelined_head_after_one_is_scanned_from_its_own_start() -> None:
    head = _buffer()
    size = head.add(_head() + _head(target=b"/two"))
    assert head.take(size) == _head()
    assert head.add(b"") == len(_head(target=b"/two"))
    assert head.add(b"") == len(_head(target=b"/two"))  # asking again gives the same answer


def test_empty_lines_before_the_request_line_are_skipped() -> None:
    head = _buffer()
    assert head.add(b"\r\n\r\n") == 0
    assert len(head) == 0
    size = head.add(b"\r\n" + _head())
    assert head.take(size) == _head()


def test_a_bare_lf_blank_line_ends_the_head_so_the_parser_can_refuse_it_at_once() -> None:
    head = _buffer()
    assert head.add(b"GET / HTTP/1.1\nHost: a\n\n") == len(b"GET / HTTP/1.1\nHost: a\n\n")


def test_the_buffer_never_holds_more_than_the_limit_plus_the_last_read() -> None:
    head = _buffer()
    piece = b"a" * 1000
    head.add(b"GET / HTTP/1.1\r\nX: ")
    with pytest.raises(HeadRefused):
        for _ in range(1000):
            head.add(piece)
    assert len(head) <= MAX_BYTES + len(piece)


@pytest.mark.parametrize(
    ("line", "length"),
    [
        (b"GET /abc HTTP/1.1\r\n", 4),
        (b"GET /abc\r\n", 4),  # no version: the target runs to the end of the line
        (b"GET /abc", 4),
        (b"GARBAGE\r\n", 0),
        (b"OPTIONS * HTTP/1.1\r\n", 1),
    ],
)
def test_target_length(line: bytes, length: int) -> None:
    end = line.find(b"\n")
    assert target_length(line, end if end >= 0 else len(line)) == length
