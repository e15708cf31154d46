"""uvicorn's request/response cycle, with the response head checked and written in one pass.

Why: every response of the stack carries about sixteen headers (the contract's security
headers, the rate-limit headers, ``Vary``, ``X-Request-ID``), and uvicorn's httptools cycle
spends two regular-expression searches, a ``lower()`` and a list extension *per header* on
them: the stack's 13 extra headers cost that loop about 9% of a bare request, this pass 6–8%
(``bench/bench_layers.py --ceiling``). The checks are per-byte properties, so one pass over
the joined names and one over the joined values give the same verdict: a header name must
hold none of the bytes uvicorn's ``HEADER_RE`` refuses, a value none of ``HEADER_VALUE_RE``'s
(no CR, LF or other control byte: no response splitting). The head is then assembled by C
joins instead of a Python loop.

Only the regular case takes this path: a first ``http.response.start`` on a connection that
is not paused, closed or logged by uvicorn, with lower-case names (the ASGI specification
requires them), a ``Content-Length``, no ``Transfer-Encoding`` or ``Connection`` header, and
keep-alive. Anything else — including every invalid name or value — goes to uvicorn's own
``send`` unchanged, which writes or refuses exactly as it always does; the fast path writes
the same bytes (``tests/server/test_cycle.py`` compares both on generated heads).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

__all__ = ["FastHeadCycle"]

# The bytes uvicorn's HEADER_RE and HEADER_VALUE_RE look for (httptools_impl, 0.54).
_NOT_IN_NAMES = bytes(range(0x20)) + b'\x7f()<>@,;:[]={} \t\\"'
_NOT_IN_VALUES = bytes(range(0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"
_CONTENT_LENGTH = b"content-length"
_TRANSFER_ENCODING = b"transfer-encoding"
_CONNECTION = b"connection"


class FastHeadCycle(RequestResponseCycle):
    """A :class:`RequestResponseCycle` whose usual response head costs no per-header Python."""

    async def send(self, message: Any) -> None:
        if (
            self.response_started
            or self.disconnected
            or self.flow.write_paused
            or self.access_log
            or message["type"] != "http.response.start"
        ):
            return await super().send(message)
        head = self._regular_head(message)
        if head is None:
            return await super().send(message)
        self.response_started = True
        self.waiting_for_100_continue = False
        self.transport.write(head)

    def _regular_head(self, message: Any) -> bytes | None:
        """The bytes uvicorn would write for this response start, or None: let uvicorn do it.

        Sets the body framing (``expected_content_length``) as uvicorn does; touches nothing
        when it returns None.
        """
        if not self.keep_alive:
            return None  # uvicorn adds "connection: close"
        status_line = STATUS_LINE.get(message.get("status"))
        given = message.get("headers", ())
        if status_line is None or type(given) not in (list, tuple):
            return None  # a one-shot iterable must reach uvicorn unread
        headers = [*self.default_headers, *given]
        if not headers:
            return None
        try:
            names = [name for name, _ in headers]
            values = [value for _, value in headers]
            joined_names = b"".join(names)
            joined_values = b"".join(values)
        except (TypeError, ValueError):
            return None  # not pairs of bytes: uvicorn raises its own error
        if (
            len(joined_names.translate(None, _NOT_IN_NAMES)) != len(joined_names)
            or len(joined_values.translate(None, _NOT_IN_VALUES)) != len(joined_values)
            or joined_names.lower() != joined_names
            or _TRANSFER_ENCODING in names
            or _CONNECTION in names
            or _CONTENT_LENGTH not in names
        ):
            return None
        try:
            length = int(values[names.index(_CONTENT_LENGTH)].decode())
        except (AttributeError, ValueError):  # UnicodeDecodeError is a ValueError
            return None  # uvicorn raises its own error
        self.expected_content_length = length
        self.chunked_encoding = False
        lines = b"\r\n".join(map(b": ".join, headers))
        return b"".join((status_line, lines, b"\r\n\r\n"))
