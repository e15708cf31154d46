"""The network under the scanner's HTTP client: the budgets httpx does not keep.

httpx bounds the gap between two reads (its timeouts) and h11 the size of one header block,
but a hostile server has cheaper ways to hold a client:

* **Interim responses.** RFC 9110 §15.2 lets a server send any number of ``1xx`` responses
  before the final one, and httpcore loops over them. Slowly (``102 Processing`` every few
  seconds) that holds a request forever; fast (``100 Continue`` as fast as the socket goes) it
  also keeps a core busy parsing (h11 costs ~13 µs per response). Go's net/http bounds them
  too. Here the heads an HTTP/1.x connection delivers before the final one are counted as the
  bytes arrive, before h11 parses them: more than :data:`MAX_INTERIM` interim responses, or
  :data:`HEAD_LIMIT` bytes without a complete head, end the request.
* **HTTP/2 frames that carry nothing.** PING, SETTINGS, WINDOW_UPDATE, PRIORITY, unknown
  types, ``1xx`` HEADERS and empty DATA frames each cost h2 ~30 µs to parse (the client-side
  twin of CVE-2019-9512/9515/9518). The frames a connection may receive are bounded by what
  it asked for: :data:`FRAMES_BASE`, plus :data:`FRAMES_PER_REQUEST` for each request
  (HEADERS frame) sent, plus one per :data:`DATA_BYTES_PER_FRAME` payload bytes received.

The total deadline of each request (connect, TLS, interim responses, head and body) is kept
above, in :class:`~bastion.scanner.context.ScanContext`, by cancelling the request: a timeout
raised inside httpcore's HTTP/2 reader would fail every stream sharing the connection.

The guard is an ``httpcore`` network backend wrapping the default one, installed by
:func:`guarded_transport`; which request owns a read is carried by a context variable (the
HTTP/1.1 connection reads in the requesting task).
"""

from __future__ import annotations

import contextvars
import re
import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

MAX_INTERIM = 8
HEAD_LIMIT = 128 * 1024  # httpcore lets h11 take a 100 KiB head; nothing legitimate is larger
FRAMES_BASE = 64
FRAMES_PER_REQUEST = 256
DATA_BYTES_PER_FRAME = 64
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADERS_FRAME = 0x1
_DATA_FRAME = 0x0


class InterimFlood(httpcore.RemoteProtocolError):
    """Too many interim responses, or too many bytes, before the final response head."""


class FrameFlood(httpcore.RemoteProtocolError):
    """An HTTP/2 connection received far more frames than its requests can explain."""


# The end of a head (h11 also accepts bare LF line ends), and an interim status line; 101
# Switching Protocols ends the exchange as httpcore sees it, so it is not interim.
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_INTERIM = re.compile(rb"\s*HTTP/\d(?:\.\d)? +1(?!01)\d\d\b")


@dataclass
class ResponseGuard:
    """One request's state, seen by the network stream that reads its response.

    Until the final head has arrived, :meth:`received` splits what arrives into heads: each
    interim one is counted; the first other one ends the count (what follows is the body)."""

    max_interim: int = MAX_INTERIM
    head_limit: int = HEAD_LIMIT
    interim: int = 0
    head_done: bool = False
    _partial: bytes = b""

    def received(self, data: bytes) -> None:
        if self.head_done:
            return
        buffer = self._partial + data
        while True:
            end = _BLANK_LINE.search(buffer)
            if end is None:
                if len(buffer) > self.head_limit:
                    raise InterimFlood(
                        f"no complete response head within {self.head_limit // 1024} KiB"
                    )
                self._partial = buffer
                return
            if not _INTERIM.match(buffer, 0, end.start()):
                self.head_done = True  # the final head: the rest is the body
                self._partial = b""
                return
            self.interim += 1
            if self.interim > self.max_interim:
                raise InterimFlood(
                    f"more than {self.max_interim} interim (1xx) responses before the final "
                    "one (a flood)"
                )
            buffer = buffer[end.end() :]


_current: contextvars.ContextVar[ResponseGuard | None] = contextvars.ContextVar(
    "bastion_scan_response_guard", default=None
)


@contextmanager
def guarding(guard: ResponseGuard) -> Iterator[ResponseGuard]:
    """Reads made by this task while the block runs are charged to ``guard``."""
    token = _current.set(guard)
    try:
        yield guard
    finally:
        _current.reset(token)


class FrameCounter:
    """Counts HTTP/2 frames in a byte stream, across read boundaries (RFC 9113 §4.1)."""

    def __init__(self, skip: int = 0) -> None:
        self._skip = skip
        self._header = b""
        self._payload_left = 0
        self.frames = 0
        self.headers = 0
        self.data_bytes = 0
        self._in_data = False

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            if self._payload_left:
                step = min(self._payload_left, len(view))
                self._payload_left -= step
                if self._in_data:
                    self.data_bytes += step
                view = view[step:]
                continue
            need = 9 - len(self._header)
            self._header += bytes(view[:need])
            view = view[need:]
            if len(self._header) < 9:
                return
            length = int.from_bytes(self._header[:3], "big")
            kind = self._header[3]
            self._header = b""
            self._payload_left = length
            self._in_data = kind == _DATA_FRAME
            self.frames += 1
            if kind == _HEADERS_FRAME:
                self.headers += 1


def check_frames(sent: FrameCounter, received: FrameCounter, data: bytes) -> None:
    """Count ``data`` (just read) into ``received`` and raise :class:`FrameFlood` when the
    frames received exceed what the requests sent and the data received explain."""
    received.feed(data)
    allowed = (
        FRAMES_BASE
        + FRAMES_PER_REQUEST * sent.headers
        + received.data_bytes // DATA_BYTES_PER_FRAME
    )
    if received.frames > allowed:
        raise FrameFlood(
            f"{received.frames} HTTP/2 frames received for {sent.headers} requests and "
            f"{received.data_bytes} bytes of data (a frame flood)"
        )


class _GuardedStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._h2: tuple[FrameCounter, FrameCounter] | None = None  # (sent, received)
        self._protocol_known = False

    # httpcore's stream interface takes ``timeout``; the request deadline is kept above.
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        data = await self._inner.read(max_bytes, timeout)
        if self._h2 is not None:
            check_frames(*self._h2, data)
        else:
            guard = _current.get()
            if guard is not None:
                guard.received(data)  # before h11 parses a single byte of it
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not self._protocol_known and buffer:
            self._protocol_known = True
            if buffer.startswith(_H2_PREFACE):
                self._h2 = (FrameCounter(skip=len(_H2_PREFACE)), FrameCounter())
        if self._h2 is not None:
            self._h2[0].feed(buffer)
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _GuardedStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return _GuardedStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return _GuardedStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(*, verify: ssl.SSLContext, http2: bool = True) -> httpx.AsyncHTTPTransport:
    """httpx's own transport (its request/response mapping and exception types), with its
    connection pool rebuilt on the guarded network backend: httpx takes no network backend.
    Limits are httpx's defaults. An httpx without the ``_pool`` attribute fails here, loudly."""
    transport = httpx.AsyncHTTPTransport(verify=verify, http2=http2, trust_env=False)
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError("httpx.AsyncHTTPTransport has no httpcore pool to guard")
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=verify,
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        http1=True,
        http2=http2,
        network_backend=_GuardedBackend(httpcore.AnyIOBackend()),
    )
    return transport
