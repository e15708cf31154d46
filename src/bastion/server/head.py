"""A request head collected as its bytes arrive, and refused the moment it crosses a limit.

Why not let the HTTP parser see the bytes as they come: httptools hands a header value or a
URL to Python piece by piece, one piece per read, and uvicorn joins the pieces with ``+=``.
The cost of a head sent in small pieces is then quadratic in its size (200 MB of one header
took 82 s of CPU and stalled every other client), and nothing stops it growing. Here the
bytes of a head are kept in one buffer, scanned once each (the blank line that ends the
head, the line count, the request line), and the parser gets the complete head in one call,
so every span reaches Python in one piece. A head is refused as soon as what has arrived
proves it too large — never after buffering more than the limit:

* request line and header fields together, up to and including the blank line, over
  ``max_bytes`` → ``431``;
* more than ``max_fields`` header fields → ``431``;
* a request target over ``max_uri_bytes`` → ``414`` (checked as soon as the request line is
  complete, or as soon as an unfinished request line is longer than any line with a target
  within the limit could be).

Empty lines before a request line are skipped (RFC 9112 §2.2). A head ends at the first
``CRLF CRLF``; a bare ``LF LF`` also ends it, so that a head the parser will refuse (llhttp
refuses bare LF, RFC 9112 §2.2 allows that) is refused at once instead of waiting for a
terminator that never comes. Everything else — methods, tokens, obs-fold, framing headers —
is the parser's to judge.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BAD_REQUEST",
    "HEADER_FIELDS_TOO_LARGE",
    "REQUEST_TIMEOUT",
    "URI_TOO_LONG",
    "HeadBuffer",
    "HeadRefused",
    "Refusal",
]

_END = b"\r\n\r\n"
_BARE_END = b"\n\n"
# Longest request line around a target: a method (llhttp's longest is 15 characters), two
# spaces, "HTTP/1.1" and CRLF fit in 32 bytes.
_REQUEST_LINE_SLACK = 32


@dataclass(frozen=True, slots=True)
class Refusal:
    """A response the server gives before (or instead of) the app: status and public message."""

    status: int
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


HEADER_FIELDS_TOO_LARGE = Refusal(431, "Request header fields too large")
URI_TOO_LONG = Refusal(414, "URI too long")
REQUEST_TIMEOUT = Refusal(408, "Request timeout")
BAD_REQUEST = Refusal(400, "Bad request")


class HeadRefused(Exception):
    """The head crossed a limit; :attr:`refusal` says how to answer."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class HeadBuffer:
    """The bytes of the next request head, checked against the limits as they arrive."""

    __slots__ = (
        "_line_end",
        "_lines",
        "_scanned",
        "_size",
        "buffer",
        "max_bytes",
        "max_fields",
        "max_uri",
    )

    def __init__(self, *, max_bytes: int, max_fields: int, max_uri: int) -> None:
        self.max_bytes = max_bytes
        self.max_fields = max_fields
        self.max_uri = max_uri
        self.buffer = bytearray()
        self._reset_scan()

    def _reset_scan(self) -> None:
        self._scanned = 0  # bytes of the buffer already searched for the end of the head
        self._lines = 0  # LFs among them
        self._line_end = -1  # index of the request line's LF, once seen
        self._size = 0  # length of the complete head at the start, once found

    def __len__(self) -> int:
        return len(self.buffer)

    def clear(self) -> None:
        self.buffer.clear()
        self._reset_scan()

    def add(self, data: bytes) -> int:
        """Append *data*; the length of the complete head at the start, or 0 while incomplete.

        Raises :class:`HeadRefused` as soon as the bytes received prove a limit crossed.
        Bytes after the head (a body, the next request) stay in the buffer.
        """
        self.buffer += data
        return self.scan()

    def scan(self) -> int:
        """Look at the bytes not yet scanned; see :meth:`add`."""
        if self._size:
            return self._size  # found before, while the response to the previous was pending
        buffer = self.buffer
        limit = self.max_bytes
        start = self._scanned
        if start == 0 and buffer.startswith((b"\r", b"\n")):  # empty lines before a request line
            del buffer[: len(buffer) - len(buffer.lstrip(b"\r\n"))]
        stop = min(len(buffer), limit)
        # The terminator may straddle the previous scan's end: look back 3 bytes.
        end = buffer.find(_END, max(start - 3, 0), stop)
        bare = buffer.find(_BARE_END, max(start - 1, 0), stop if end < 0 else end)
        if bare >= 0:
            end, size = bare, bare + 2
        else:
            size = end + 4
        if end < 0:
            self._lines += buffer.count(b"\n", start, stop)
            self._scanned = stop
            self._check_request_line(stop)
            if self._lines - 1 > self.max_fields:
                raise HeadRefused(HEADER_FIELDS_TOO_LARGE)
            if len(buffer) > limit:
                raise HeadRefused(URI_TOO_LONG if self._line_end < 0 else HEADER_FIELDS_TOO_LARGE)
            return 0
        self._lines += buffer.count(b"\n", start, size)
        self._scanned = size
        self._check_request_line(size)
        if self._lines - 2 > self.max_fields:
            raise HeadRefused(HEADER_FIELDS_TOO_LARGE)
        self._size = size
        return size

    def _check_request_line(self, stop: int) -> None:
        if self._line_end < 0:
            line_end = self.buffer.find(b"\n", 0, stop)
            if line_end < 0:
                if stop > self.max_uri + _REQUEST_LINE_SLACK:
                    raise HeadRefused(URI_TOO_LONG)
                return
            self._line_end = line_end
            if target_length(self.buffer, line_end) > self.max_uri:
                raise HeadRefused(URI_TOO_LONG)

    def take(self, size: int) -> bytes:
        """Remove and return the first *size* bytes (a complete head); the rest stays."""
        head = bytes(self.buffer[:size])
        del self.buffer[:size]
        self._reset_scan()
        return head

    def take_all(self) -> bytes:
        data = bytes(self.buffer)
        self.clear()
        return data

    def whole(self, data: bytes) -> bool:
        """Whether *data* is exactly one complete head within every limit (the usual read).

        The fast path: no buffer, no copy. Anything else — a partial head, a head followed
        by a body or another request, leading empty lines, any limit crossed — is False and
        goes through :meth:`add`, which gives the exact verdict.
        """
        size = len(data)
        return (
            size <= self.max_bytes
            and data.find(_END) == size - 4
            and data[:1] not in (b"\r", b"\n")
            and data.count(b"\n") - 2 <= self.max_fields
            and (size <= self.max_uri or target_length(data, data.find(b"\n")) <= self.max_uri)
        )


def target_length(data: bytes | bytearray, line_end: int) -> int:
    """Length of the request target in the request line ending at *line_end* (RFC 9112 §3).

    ``method SP request-target SP HTTP-version``; without a version (``GET /``) the target
    runs to the end of the line. A line that is not of this form is the parser's to refuse.
    """
    first = data.find(b" ", 0, line_end)
    if first < 0:
        return 0
    last = data.rfind(b" ", first + 1, line_end)
    if last < 0:
        last = line_end - 1 if data[line_end - 1 : line_end] == b"\r" else line_end
    return max(last - first - 1, 0)
