"""The guarded network under the scanner's client: interim-response floods end a request before
h11 parses them, HTTP/2 frames are bounded by what the requests explain."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from bastion.scanner.context import RequestDeadline, ScanContext, ScanOptions
from bastion.scanner.transport import (
    DATA_BYTES_PER_FRAME,
    FRAMES_BASE,
    FRAMES_PER_REQUEST,
    HEAD_LIMIT,
    MAX_INTERIM,
    FrameCounter,
    FrameFlood,
    InterimFlood,
    ResponseGuard,
    check_frames,
)
from tests.scanner.hostile import OK_JSON, Request, Served, http11_handler, serving

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
FINAL = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


def test_interim_heads_are_counted_across_reads_until_the_final_one() -> None:
    guard = ResponseGuard()
    stream = CONTINUE * 3 + b"HTTP/1.1 103 Early Hints\nLink: </a>; rel=preload\n\n" + FINAL
    for i in range(len(stream)):  # one byte at a time: heads split anywhere
        guard.received(stream[i : i + 1])
    assert (guard.interim, guard.head_done) == (4, True)
    # After the final head, body bytes that look like heads are not counted.
    guard.received(CONTINUE * 100)
    assert guard.interim == 4


def test_101_switching_protocols_is_final_not_interim() -> None:
    guard = ResponseGuard()
    guard.received(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n" + CONTINUE * 50)
    assert (guard.interim, guard.head_done) == (0, True)


def test_more_than_the_allowed_interim_responses_is_a_flood() -> None:
    guard = ResponseGuard()
    guard.received(CONTINUE * MAX_INTERIM)
    with pytest.raises(InterimFlood, match="more than 8 interim"):
        guard.received(CONTINUE)


def test_a_head_that_never_ends_is_refused() -> None:
    guard = ResponseGuard()
    with pytest.raises(InterimFlood, match="no complete response head within 128 KiB"):
        guard.received(b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * HEAD_LIMIT)


def _frame(kind: int, payload: bytes = b"", stream: int = 1) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, 0]) + stream.to_bytes(4, "big") + payload


def test_frame_counter_reads_frames_across_boundaries() -> None:
    counter = FrameCounter(skip=3)
    data = b"PRI" + _frame(1, b"h" * 5) + _frame(0, b"d" * 70) + _frame(6, b"p" * 8, 0)
    for i in range(len(data)):
        counter.feed(data[i : i + 1])
    assert (counter.frames, counter.headers, counter.data_bytes) == (3, 1, 70)


def test_frames_beyond_what_the_requests_explain_are_a_flood() -> None:
    sent, received = FrameCounter(), FrameCounter()
    sent.feed(_frame(1, b"req"))  # one request
    allowed = FRAMES_BASE + FRAMES_PER_REQUEST
    check_frames(sent, received, _frame(6, b"12345678", 0) * allowed)
    with pytest.raises(FrameFlood, match="frames received for 1 requests"):
        check_frames(sent, received, _frame(6, b"12345678", 0))
    # Data earns room for more frames: large DATA frames are never a flood.
    data = _frame(0, b"x" * 16384) * 20
    sent2, received2 = FrameCounter(), FrameCounter()
    sent2.feed(_frame(1, b"req"))
    check_frames(sent2, received2, _frame(6, b"12345678", 0) * allowed + data)
    assert received2.data_bytes // DATA_BYTES_PER_FRAME > 20


async def _flood(served: Served, request: Request, writer: asyncio.StreamWriter) -> bool:
    if request.path == "/":
        writer.write(OK_JSON)
        await writer.drain()
        return True
    while True:
        writer.write(CONTINUE * 4096)
        await writer.drain()
        await asyncio.sleep(0)


async def test_a_100_continue_flood_ends_the_request_at_once_and_cheaply() -> None:
    """Before: the flood kept a core busy for as long as it lasted (h11 parsing every head).
    Now the ninth interim head ends the request before h11 sees it: milliseconds of CPU."""
    with serving(http11_handler(_flood)) as target:
        async with ScanContext(target.url, ScanOptions(timeout=30)) as ctx:
            assert (await ctx.request("GET", "/")).status == 200
            cpu, wall = time.process_time(), time.monotonic()
            with pytest.raises(httpx.RemoteProtocolError, match="more than 8 interim"):
                await ctx.request("GET", "/flood")
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
            assert (await ctx.request("GET", "/")).status == 200  # the client still works
    assert wall < 10, wall  # ended long before the 30 s request deadline
    assert cpu < 1.0, cpu


async def _trickle(served: Served, request: Request, writer: asyncio.StreamWriter) -> bool:
    while True:
        writer.write(b"HTTP/1.1 102 Processing\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)


async def test_a_slow_interim_trickle_ends_at_the_request_deadline() -> None:
    with serving(http11_handler(_trickle)) as target:
        async with ScanContext(target.url, ScanOptions(timeout=0.5)) as ctx:
            with pytest.raises(RequestDeadline, match=r"no response head within 0\.5 s"):
                await ctx.request("GET", "/")
