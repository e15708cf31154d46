"""FastHeadCycle writes exactly what uvicorn's cycle writes, and refuses exactly what it refuses.

The fast path replaces uvicorn's per-header checks with one pass over the joined names and
values, so the attacker's side matters most: a CR/LF in a value (response splitting), a bad
byte in a name, a smuggled ``Transfer-Encoding`` or a second ``Content-Length`` must come out
as uvicorn handles them. Each case runs the same messages through both cycles, with an
in-memory transport, and compares bytes written, the error raised and the framing state.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
from uvicorn.server import ServerState

from bastion.config import load_settings
from bastion.server.cycle import FastHeadCycle
from bastion.server.protocol import BastionHttpProtocol
from bastion.server.serve import HTTPS, configs

DATE = (b"date", b"Sat, 28 Nov 2026 04:00:00 GMT")


class SinkTransport(asyncio.Transport):
    """Keeps what is written; the cycle only writes, closes and asks about closing."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8443)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _cycle(kind: type[RequestResponseCycle], method: str, keep_alive: bool) -> Any:
    transport = SinkTransport()
    return kind(
        scope={"type": "http", "method": method, "http_version": "1.1"},  # type: ignore[typeddict-item]
        transport=transport,
        flow=FlowControl(transport),
        logger=logging.getLogger("test.uvicorn.error"),
        access_logger=logging.getLogger("test.uvicorn.access"),
        access_log=False,
        default_headers=[DATE],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )


async def _run(
    kind: type[RequestResponseCycle], messages: list[dict[str, Any]], method: str, keep_alive: bool
) -> tuple[Any, ...]:
    cycle = _cycle(kind, method, keep_alive)
    error: tuple[str, str] | None = None
    for message in messages:
        try:
            await cycle.send(dict(message))
        except Exception as exc:  # compared, not swallowed: both must fail alike
            error = (type(exc).__name__, str(exc))
            break
    transport = cycle.transport
    return (
        bytes(transport.written),
        transport.closed,
        error,
        cycle.response_started,
        cycle.response_complete,
        cycle.chunked_encoding,
        cycle.expected_content_length,
        cycle.keep_alive,
    )


async def _same(messages: list[dict[str, Any]], method: str = "GET", keep_alive: bool = True):
    uvicorn = await _run(RequestResponseCycle, messages, method, keep_alive)
    fast = await _run(FastHeadCycle, messages, method, keep_alive)
    assert fast == uvicorn
    return fast


CONTRACT_HEADERS = [
    (b"content-length", b"13"),
    (b"content-type", b"application/json"),
    (b"ratelimit-policy", b'"api";q=100;w=900'),
    (b"ratelimit", b'"api";r=99;t=900'),
    (b"vary", b"Origin"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"x-request-id", b"0123456789abcdef0123456789abcdef"),
]


def _response(headers: Any, body: bytes = b'{"pong":true}', status: int = 200) -> list[Any]:
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


async def test_the_usual_head_takes_the_fast_path_and_writes_uvicorns_bytes() -> None:
    written, *_ = await _same(_response(CONTRACT_HEADERS))
    assert written.startswith(b"HTTP/1.1 200 OK\r\ndate: ")
    assert written.endswith(b'x-request-id: 0123456789abcdef0123456789abcdef\r\n\r\n{"pong":true}')
    cycle = _cycle(FastHeadCycle, "GET", True)
    assert cycle._regular_head(_response(CONTRACT_HEADERS)[0]) is not None  # not a fallback


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"x-evil", b"a\r\nset-cookie: session=attacker"),  # response splitting
        (b"x-evil", b"a\nb"),
        (b"x-evil", b"a\rb"),
        (b"x-evil", b"nul\x00byte"),
        (b"x-evil", b"\x7f"),
        (b"x evil", b"space in the name"),
        (b"x-evil:", b"colon in the name"),
        (b"x-evil\r\nset-cookie", b"splitting through the name"),
        (b"", b"empty name"),
    ],
)
async def test_injection_attempts_fail_as_in_uvicorn(name: bytes, value: bytes) -> None:
    written, _closed, error, *_ = await _same(_response([*CONTRACT_HEADERS, (name, value)]))
    if name:
        assert error is not None and error[0] == "RuntimeError"
        assert written == b""  # nothing of the head reached the wire
    else:
        assert error is None  # uvicorn lets an empty name through; so do we


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([(b"Content-Length", b"13"), (b"X-Mixed", b"1")], id="upper-case-length"),
        pytest.param([(b"content-length", b"13"), (b"X-Mixed", b"1")], id="upper-case-name"),
        pytest.param([(b"content-length", b"13"), (b"content-length", b"99")], id="two-lengths"),
        pytest.param(
            [(b"content-length", b"13"), (b"transfer-encoding", b"chunked")], id="length-then-te"
        ),
        pytest.param(
            [(b"transfer-encoding", b"chunked"), (b"content-length", b"13")], id="te-then-length"
        ),
        pytest.param(
            [(b"content-length", b"13"), (b"connection", b"keep-alive, Close")], id="close"
        ),
        pytest.param([(b"content-type", b"application/json")], id="no-length-chunked"),
        pytest.param([(b"content-length", b"abc")], id="length-not-a-number"),
        pytest.param([(b"content-length", b" 13 ")], id="length-with-spaces"),
        pytest.param([(b"content-length", b"12")], id="body-longer-than-declared"),
        pytest.param([(b"content-length", b"14")], id="body-shorter-than-declared"),
        pytest.param([], id="no-headers"),
        pytest.param(((b"content-length", b"13"),), id="tuple-of-pairs"),
        pytest.param([[b"content-length", b"13"]], id="lists-as-pairs"),
        pytest.param([(b"content-length", b"13", b"extra")], id="three-items"),
        pytest.param([("content-length", "13")], id="str-not-bytes"),
        pytest.param([(bytearray(b"content-length"), memoryview(b"13"))], id="buffers"),
    ],
)
async def test_unusual_heads_behave_as_in_uvicorn(headers: Any) -> None:
    await _same(_response(headers))


async def test_a_one_shot_header_iterable_reaches_uvicorn_unread() -> None:
    def headers() -> Any:
        yield (b"content-length", b"13")
        yield (b"x-from-a-generator", b"1")

    messages = _response(None)
    results = []
    for kind in (RequestResponseCycle, FastHeadCycle):
        messages[0]["headers"] = headers()
        results.append(await _run(kind, messages, "GET", True))
    assert results[0] == results[1]
    assert b"x-from-a-generator: 1" in results[1][0]


@pytest.mark.parametrize(("method", "status"), [("HEAD", 200), ("GET", 204), ("GET", 304)])
async def test_bodiless_responses(method: str, status: int) -> None:
    await _same(_response([(b"content-length", b"13")], b"", status), method=method)


@pytest.mark.parametrize("status", [99, 600, "200", None])
async def test_odd_statuses_behave_as_in_uvicorn(status: Any) -> None:
    await _same(_response([(b"content-length", b"13")], status=status))


async def test_closing_connection_gets_uvicorns_connection_close() -> None:
    written, closed, *_ = await _same(_response(CONTRACT_HEADERS), keep_alive=False)
    assert b"\r\nconnection: close\r\n" in written and closed


_NAME = st.one_of(
    st.sampled_from(
        [b"content-length", b"transfer-encoding", b"connection", b"x-a", b"Vary", b"set-cookie"]
    ),
    st.binary(max_size=12),
)
_VALUE = st.one_of(
    st.sampled_from([b"13", b"chunked", b"close", b"0", b""]), st.binary(max_size=24)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    headers=st.lists(st.tuples(_NAME, _VALUE), max_size=8),
    declared=st.booleans(),  # half the heads declare a length, as nearly all real ones do
    body=st.sampled_from([b"", b'{"pong":true}']),
    method=st.sampled_from(["GET", "HEAD"]),
    status=st.sampled_from([200, 204, 304, 404, 500]),
    keep_alive=st.booleans(),
)
def test_generated_heads_match_uvicorn(
    headers: list[tuple[bytes, bytes]],
    declared: bool,
    body: bytes,
    method: str,
    status: int,
    keep_alive: bool,
) -> None:
    if declared:
        headers = [(b"content-length", b"%d" % len(body)), *headers]
    asyncio.run(_same(_response(headers, body, status), method=method, keep_alive=keep_alive))


async def test_bastion_serve_runs_requests_on_the_fast_path(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `bastion serve`'s own uvicorn settings, the head never reaches uvicorn's loop."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for message in _response(CONTRACT_HEADERS):
            await send(message)

    seen_by_uvicorn: list[str] = []
    uvicorn_send = RequestResponseCycle.send

    async def recording_send(self: Any, message: Any) -> None:
        seen_by_uvicorn.append(message["type"])
        await uvicorn_send(self, message)

    monkeypatch.setattr(RequestResponseCycle, "send", recording_send)
    monkeypatch.setenv("BASTION_DATA_DIR", str(tmp_path))
    serve_config = configs(load_settings(insecure_http=True))[HTTPS]
    options = {name: getattr(serve_config, name) for name in ("access_log", "log_config", "http")}
    config = Config(app=app, date_header=False, **options)
    config.load()
    protocol = BastionHttpProtocol(config, ServerState(), app_state={})
    transport = SinkTransport()
    protocol.connection_made(transport)
    protocol.data_received(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert type(protocol.cycle) is FastHeadCycle
    for _ in range(100):  # the request's task runs on this loop
        if protocol.cycle.response_complete:
            break
        await asyncio.sleep(0)
    written = bytes(transport.written)
    assert written.startswith(b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\n")
    assert written.endswith(b'x-request-id: 0123456789abcdef0123456789abcdef\r\n\r\n{"pong":true}')
    assert seen_by_uvicorn == ["http.response.body"]  # the start took the fast path
    protocol.connection_lost(None)
