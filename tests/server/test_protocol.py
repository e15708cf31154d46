"""The HTTP protocol's own rules, on an in-memory transport (server/protocol.py).

What the integration tests cannot see from outside: a head reaches the parser in one piece
however it was cut (so its cost is linear), a pipelined request is not parsed while the
previous response is pending, and timers are re-armed lazily. Exact bytes on the wire, the
timeouts and the caps against a real server are in tests/integration/test_transport_serve.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from bastion.server.limits import TransportLimits
from bastion.server.protocol import BastionHttpProtocol


class SinkTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.paused = False
        self.eof = False

    def write(self, data: Any) -> None:
        self.written += data

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8443)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


class Recording(BastionHttpProtocol):
    """Counts the pieces the parser hands to Python."""

    url_pieces = 0
    headers_seen = 0

    def on_url(self, url: bytes) -> None:
        self.url_pieces += 1
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers_seen += 1
        super().on_header(name, value)


def _protocol(app: Any, **limits: Any) -> tuple[Recording, SinkTransport]:
    config = Config(app=app, log_config=None, ws="none", http=Recording)
    config.load()
    config.transport_limits = TransportLimits(**limits)  # type: ignore[attr-defined]
    protocol = Recording(config, ServerState(), app_state={})
    transport = SinkTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def _settle(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the protocol did not get there")


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


async def test_a_head_sent_one_byte_at_a_time_reaches_the_parser_in_one_piece() -> None:
    protocol, transport = _protocol(ok_app)
    head = b"GET /" + b"p" * 4000 + b" HTTP/1.1\r\nHost: a\r\nX-Long: " + b"v" * 8000 + b"\r\n\r\n"
    for i in range(len(head)):
        protocol.data_received(head[i : i + 1])
    assert protocol.url_pieces == 1  # not one per read: no piecewise concatenation
    assert protocol.headers_seen == 2
    await _settle(lambda: transport.written.endswith(b"ok"))
    protocol.connection_lost(None)


async def test_a_pipelined_request_waits_unparsed_until_the_response_is_complete() -> None:
    release = asyncio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await ok_app(scope, receive, send)

    protocol, transport = _protocol(slow_app)
    one = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
    protocol.data_received(one + b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    await asyncio.sleep(0)
    assert protocol.url_pieces == 1  # the second head is held, not parsed
    assert transport.paused  # and reading stops while it waits
    release.set()
    await _settle(lambda: transport.written.count(b"HTTP/1.1 200") == 2)
    assert protocol.url_pieces == 2
    protocol.connection_lost(None)


async def test_an_oversized_pipelined_head_is_refused_after_the_pending_response() -> None:
    release = asyncio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await ok_app(scope, receive, send)

    protocol, transport = _protocol(slow_app, max_header_bytes=1024)
    first = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
    protocol.data_received(first + b"GET /2 HTTP/1.1\r\nX: " + b"a" * 2000)
    await asyncio.sleep(0)
    assert transport.written == b""  # nothing may overtake the first response
    release.set()
    await _settle(lambda: b" 431 " in transport.written)
    assert transport.written.index(b"HTTP/1.1 200") < transport.written.index(b"HTTP/1.1 431")
    await _settle(lambda: transport.eof)  # then the write side closes (lingering close)
    protocol.connection_lost(None)


async def test_a_busy_keep_alive_connection_does_not_arm_a_timer_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    protocol, transport = _protocol(ok_app)
    timers = []
    original = protocol.loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any) -> Any:
        timers.append(when)
        return original(when, callback, *args)

    monkeypatch.setattr(protocol.loop, "call_at", counting_call_at)
    try:
        for n in range(50):
            protocol.data_received(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % n)
            await _settle(lambda n=n: transport.written.count(b"HTTP/1.1 200") == n + 1)
    finally:
        monkeypatch.undo()
    assert len(timers) <= 2  # the head timer from connect, at most one keep-alive re-arm
    protocol.connection_lost(None)


async def test_a_request_after_a_content_length_body_in_the_same_read_is_served() -> None:
    """An early answer (413, 401) while the body is in flight; the body's tail and the next
    request then arrive in one read: the parser gets exactly the body, the rest is a head."""

    async def early(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/big":
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [(b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
        else:
            await ok_app(scope, receive, send)

    protocol, transport = _protocol(early)
    protocol.data_received(b"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    await _settle(lambda: b" 413 " in transport.written)
    protocol.data_received(b"defghij" + b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    await _settle(lambda: transport.written.endswith(b"ok"))
    assert not transport.closed
    protocol.connection_lost(None)


async def test_a_request_after_a_chunked_body_in_the_same_read_closes_after_the_response() -> None:
    protocol, transport = _protocol(ok_app)
    protocol.data_received(
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    await _settle(lambda: transport.closed)
    assert transport.written.count(b"HTTP/1.1 ") == 1
    assert b"connection: close" in transport.written
    protocol.connection_lost(None)
