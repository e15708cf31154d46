"""The HTTP/1.1 protocol `bastion serve` runs: uvicorn's httptools protocol, with limits.

uvicorn's protocol is kept for what it does well (llhttp parsing, the ASGI cycle, flow
control, graceful shutdown). This subclass changes how bytes reach the parser and when a
connection ends, as the contract's "Transport limits" ask:

* **Heads are limited as they arrive** (:mod:`bastion.server.head`): the parser gets each
  complete head in one call, so its cost is linear, and a head over a limit gets ``431`` or
  ``414`` without being buffered past the limit.
* **One request at a time.** The next head is parsed only once the current response is
  complete; bytes of a pipelined request wait in the head buffer (reading pauses once it
  holds a complete head). Pipelined requests are answered in order without a queue of
  parsed requests growing behind a slow one. A ``Content-Length`` body is fed to the parser
  to its exact length, so the next request may follow it in the same read (as it does after
  an early response such as a ``413``); after a *chunked* body, where only the parser knows
  the end, a request in the same read ends the connection after the response (RFC 9112
  §9.3.2 advises clients not to pipeline after a request with a body).
* **Timeouts** from one per-connection timer, re-armed lazily (a busy connection costs one
  timer event per few seconds, not one per request): the head within ``header_timeout`` of
  the accept (TLS handshake included) or of the previous response; the body never
  ``body_idle_timeout`` without a byte and complete within ``body_timeout``, not counting
  time the server itself paused reading (flow control); ``keepalive_timeout`` of idleness
  after a response. A timed-out head or body gets ``408`` when no part of a response was
  sent, then the connection closes; an idle connection just closes.
* **Refusals go through the stack** (:mod:`bastion.server.refusals`): parser errors (``400``;
  ``405`` with ``Allow`` for a method llhttp does not know, such as ``TRACK``), limits and
  timeouts are answered by the app's own request-id, access-log and security-headers layers,
  so they carry the contract's headers and body and are logged with a request id. After a
  refusal the connection is closed gently: the write side first, then up to
  :data:`LINGER_SECONDS` of reading and discarding, so that the client's unread bytes do not
  turn the close into a reset that would destroy the response before it is read.
* **No upgrade.** The service has no WebSocket route, so a handshake (or an ``h2c`` upgrade)
  is served as the same request without the upgrade (RFC 9110 §7.8 lets a server ignore
  ``Upgrade``): the app answers, then the connection closes. ``CONNECT`` (authority-form
  target) is a ``400``.

Responses are written by uvicorn's own request cycle. (bastion once had a cycle of its own
that wrote the usual response head in one pass; measured end to end it saved nothing — 66.0
against 64.3 µs of server CPU per request — so the coupling it cost was dropped; figures in
bench/README.md.)

uvicorn internals relied on are listed and checked in ``tests/server/test_uvicorn_internals.py``.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from bastion.server.connections import Connection
from bastion.server.head import (
    BAD_REQUEST,
    REQUEST_TIMEOUT,
    HeadBuffer,
    HeadRefused,
    Refusal,
)
from bastion.server.limits import TransportLimits
from bastion.server.refusals import REFUSAL_KEY, allow_of, refusal_app, request_line

__all__ = ["LINGER_BYTES", "LINGER_SECONDS", "BastionHttpProtocol", "Runtime"]

#: After a refusal, how long (and how many bytes) the server keeps reading and discarding.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20


class Runtime:
    """What every connection of one listener shares: its limits and its refusal app."""

    __slots__ = ("app", "limits", "refusals")

    def __init__(self, app: Any, limits: TransportLimits) -> None:
        self.app = app
        self.limits = limits
        self.refusals = refusal_app(app)

    @classmethod
    def of(cls, config: Config) -> Runtime:
        """The runtime of *config* (built once; limits from ``config.transport_limits``)."""
        runtime = getattr(config, "bastion_runtime", None)
        if runtime is None:
            limits = getattr(config, "transport_limits", None) or TransportLimits()
            runtime = cls(config.loaded_app, limits)
            config.bastion_runtime = runtime  # type: ignore[attr-defined]
        return runtime


_UNKNOWN = -1  # the body length has not been looked up yet


class _NextRequestInBody(Exception):
    """The parser met the start of another request in the same read as a body's end."""


class _LingeringClose:
    """The transport of a refusal's cycle: closing it closes the connection gently."""

    def __init__(self, protocol: BastionHttpProtocol) -> None:
        self._protocol = protocol
        self._transport = protocol.transport

    def close(self) -> None:
        self._protocol._linger()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class BastionHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the contract's limits, timeouts and refusals."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        connection: Connection | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        runtime = Runtime.of(config)
        limits = runtime.limits
        self._runtime = runtime
        self._limits = limits
        self._connection = connection
        self._head = HeadBuffer(
            max_bytes=limits.max_header_bytes,
            max_fields=limits.max_header_fields,
            max_uri=limits.max_uri_bytes,
        )
        now = connection.accepted_at if connection is not None else self.loop.time()
        self._exchange_end = now  # the head clock starts here: accept, then each response
        self._served = False  # whether a response has completed on this connection
        self._in_message = False  # the parser is past a head and inside its body
        self._feeding_body = False
        self._body_left: int | None = _UNKNOWN  # bytes of a Content-Length body still to come
        self._body_start = 0.0
        self._last_byte = 0.0
        self._held: Refusal | None = None  # a refusal waiting for the current response
        self._closing = False  # refused: input is discarded from now on
        self._refused_at = 0.0
        self._linger_until = math.inf
        self._linger_left = LINGER_BYTES
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    # --- connection ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._ensure_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._connection is not None:
            self._connection.release()

    def _should_upgrade(self) -> bool:
        return False  # no WebSocket route: the handshake is an ordinary request

    def _busy(self) -> bool:
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete

    # --- bytes in ------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._closing:
            self._discard(data)
        elif self._in_message:
            self._last_byte = self.loop.time()
            self._feed_body(data)
        elif not self._head.buffer and not self._busy() and self._head.whole(data):
            self._feed_head(data)  # the usual read: exactly one complete head within limits
        else:
            self._add_head(data)

    def _add_head(self, data: bytes) -> None:
        head = self._head
        try:
            size = head.add(data)
        except HeadRefused as refused:
            self._refuse_or_hold(refused.refusal)
            return
        if not size:
            return
        if self._busy():
            self.flow.pause_reading()  # a complete pipelined head waits for the response
            return
        self._feed_head(head.take(size))
        if self._closing:
            return
        if self._in_message:
            if head.buffer:
                self._last_byte = self.loop.time()
                self._feed_body(head.take_all())
        elif head.buffer:
            self._add_head(b"")  # the next request's bytes: checked, held until the response

    def _refuse_or_hold(self, refusal: Refusal) -> None:
        if self._busy():
            self._held = refusal  # answered in order, after the current response
            self.flow.pause_reading()
        else:
            self._refuse(refusal, self._head.buffer)

    def _feed_head(self, head: bytes) -> None:
        try:
            self.parser.feed_data(head)
        except httptools.HttpParserUpgrade:
            pass  # served as a plain request; on_headers_complete closes after the response
        except httptools.HttpParserError as exc:
            self._parser_error(exc, head)

    def _feed_body(self, data: bytes) -> None:
        left = self._body_left
        if left == _UNKNOWN:
            left = self._body_left = self._content_length()
        if left is not None:
            # Content-Length framing: the parser gets exactly the body, and what follows it
            # (the next request, sent once the client read an early response) is a head.
            if len(data) > left:
                body, rest = data[:left], data[left:]
                self._body_left = 0
                if body:
                    self._feed_body_bytes(body)
                if rest and not self._closing and not self._in_message:
                    self._add_head(rest)
                return
            self._body_left = left - len(data)
        self._feed_body_bytes(data)

    def _content_length(self) -> int | None:
        """The body length this message declared, or None (chunked: the parser finds the end).

        llhttp has already refused a repeated or malformed Content-Length, and one sent with
        Transfer-Encoding.
        """
        length = None
        for name, value in self.headers:
            if name == b"transfer-encoding":
                return None
            if name == b"content-length":
                length = int(value)
        return length

    def _feed_body_bytes(self, data: bytes) -> None:
        cycle = self.cycle
        if cycle.response_complete:
            # The response went out before the body ended: discard the rest, within a budget.
            self._linger_left -= len(data)
            if self._linger_left < 0:
                self.transport.abort()  # not a TLS close_notify wait while the flood goes on
                return
        self._feeding_body = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _NextRequestInBody):
                self._close_after_response()
            else:
                self._parser_error(exc, b"")
        finally:
            self._feeding_body = False

    def _discard(self, data: bytes) -> None:
        self._linger_left -= len(data)
        if self._linger_left < 0 and self._linger_until < math.inf:
            self.transport.abort()  # not a TLS close_notify wait while the flood goes on

    # --- parser callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._feeding_body:
            raise _NextRequestInBody
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()  # may raise (a target uvicorn cannot parse): a 400
        self._in_message = True
        self._body_left = _UNKNOWN  # read from the headers when the first body bytes come
        if self.parser.should_upgrade():
            self.cycle.keep_alive = False  # the Upgrade is not taken: close afterwards
        self._body_start = self._last_byte = self.loop.time()
        if self._timer is None:
            self._ensure_timer()

    def on_message_complete(self) -> None:
        self._in_message = False
        super().on_message_complete()
        if self.cycle.response_complete:
            self._end_exchange()  # the response went out before the body ended

    # --- responses -----------------------------------------------------------------------
    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing() or self._closing:
            return
        self.flow.resume_reading()
        if not self._in_message:
            self._end_exchange()

    def _end_exchange(self) -> None:
        """The request was read and answered: the next head's clock starts now."""
        self._exchange_end = self.loop.time()
        self._served = True
        self._linger_left = LINGER_BYTES  # the discard budget is per request
        if self._held is not None:
            self._refuse(self._held, self._head.buffer)
            return
        if self._head.buffer:
            self._add_head(b"")
        if not self._busy() and not self._in_message:
            self._ensure_timer(self._exchange_end + self._limits.keepalive_timeout)

    def _close_after_response(self) -> None:
        self._closing = True  # bytes after this request are not parsed (see module doc)
        self.flow.pause_reading()
        cycle = self.cycle
        if cycle.response_complete:
            self.transport.close()
        else:
            cycle.keep_alive = False

    def _parser_error(self, exc: httptools.HttpParserError, data: bytes | bytearray) -> None:
        cycle = self.cycle
        scope = None
        if self._in_message and cycle is not None and cycle.response_complete:
            self.transport.close()  # a broken body after the response: nothing left to say
            return
        if cycle is not None and not cycle.response_complete:  # the request being refused
            if cycle.response_started:
                self.transport.close()  # too late for a response of its own
                return
            cycle.disconnected = True  # the app's task sees a disconnect; its sends are dropped
            cycle.message_event.set()
            scope = cycle.scope
        refusal = BAD_REQUEST
        if isinstance(exc, httptools.HttpParserInvalidMethodError):
            line = request_line(data)
            allow = allow_of(self.app, line.path) if line is not None else b""
            refusal = Refusal(405, "Method not allowed", ((b"allow", allow),))
        self._refuse(refusal, data, scope)

    def _refuse(self, refusal: Refusal, data: bytes | bytearray, scope: Any = None) -> None:
        """Answer *refusal* through the stack's outer layers, then close gently."""
        self._closing = True
        self._in_message = False
        self.flow.pause_reading()
        line = request_line(data) if scope is None else None
        self._head.clear()
        refusal_scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "root_path": self.root_path,
            "method": scope["method"] if scope else (line.method if line else ""),
            "path": scope["path"] if scope else (line.path if line else ""),
            "raw_path": scope["raw_path"] if scope else (line.raw_path if line else b""),
            "query_string": scope["query_string"] if scope else (line.query if line else b""),
            "headers": [],
            "state": {},
            REFUSAL_KEY: refusal,
        }
        cycle = RequestResponseCycle(
            scope=refusal_scope,  # type: ignore[arg-type]
            transport=_LingeringClose(self),  # type: ignore[arg-type]
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=False,
            on_response=lambda: None,
        )
        cycle.more_body = False
        cycle.message_event.set()
        self.cycle = cycle
        self._refused_at = self.loop.time()
        self._start_asgi_task(cycle, self._runtime.refusals)  # type: ignore[arg-type]
        self._ensure_timer(self._refused_at + self._limits.header_timeout)

    def _linger(self) -> None:
        """Close after a refusal: write side first, then read and discard for a while."""
        transport = self.transport
        if transport.is_closing():
            return
        if transport.can_write_eof():
            transport.write_eof()  # FIN after the response: the client sees the end at once
        self._linger_until = self.loop.time() + LINGER_SECONDS
        self._linger_left = LINGER_BYTES
        self.flow.resume_reading()
        self._ensure_timer(self._linger_until)

    def shutdown(self) -> None:
        if self._closing and self._linger_until < math.inf:
            self.transport.close()
            return
        super().shutdown()

    # --- time ----------------------------------------------------------------------------
    def _ensure_timer(self, when: float | None = None) -> None:
        """Make sure the timer fires no later than *when* (default: the current deadline)."""
        if when is None:
            when = self._deadline()
        if when < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = when
            self._timer = self.loop.call_at(when, self._on_timer)

    def _deadline(self) -> float:
        """When the connection's current state times out (inf: the app's turn, no deadline)."""
        limits = self._limits
        if self._closing:
            if self._linger_until < math.inf:
                return self._linger_until
            return self._refused_at + limits.header_timeout  # the refusal must get written
        if self._in_message:
            return min(
                self._last_byte + limits.body_idle_timeout,
                self._body_start + limits.body_timeout,
            )
        if self._busy():
            return math.inf
        if self._head.buffer or not self._served:
            return self._exchange_end + limits.header_timeout
        return self._exchange_end + limits.keepalive_timeout

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        if self.transport is None or self.transport.is_closing():
            return
        now = self.loop.time()
        when = self._deadline()
        if when > now:
            if when < math.inf:
                self._ensure_timer(when)
            return
        if self._closing:
            # Lingering is over, or the refusal could not be written (a client not reading).
            if self._linger_until < math.inf:
                self.transport.close()
            else:
                self.transport.abort()
        elif self._in_message:
            if self.flow.read_paused:
                # The server paused reading (the app is slow to take the body): not the
                # client's fault. Give it body_idle_timeout again once reading resumes.
                limits = self._limits
                self._last_byte = now
                self._body_start = max(
                    self._body_start, now + limits.body_idle_timeout - limits.body_timeout
                )
                self._ensure_timer()
            elif self.cycle.response_started:
                self.transport.close()
            else:
                self._body_timed_out()
        elif self._head.buffer or not self._served:
            self._refuse(REQUEST_TIMEOUT, self._head.buffer)
        else:
            self.transport.close()  # idle kept-alive connection

    def _body_timed_out(self) -> None:
        """A body too slow: the app waiting for it sees a disconnect; the client a 408."""
        cycle = self.cycle
        cycle.disconnected = True
        cycle.message_event.set()
        self._refuse(REQUEST_TIMEOUT, b"", cycle.scope)
