"""Response bodies read within a memory cap *after* decoding, whatever the target sends.

httpx decodes ``Content-Encoding`` one network chunk at a time with no output limit, so a cap
applied to what it yields comes too late: 26 KB of ``gzip, gzip`` expanding to 16 GiB took the
scanner to 10 GB before a ``MemoryError``. :class:`BodyDecoder` reads the *raw* stream and
decodes it itself, each layer a ``zlib.decompressobj`` asked for at most the bytes still wanted
(``decompress(data, max_length)``; the rest of the input waits in ``unconsumed_tail``), pulled
layer by layer from the outermost. Memory stays at the cap plus one network chunk per layer,
a few hundred KiB, however deep or however large the expansion.

* Codings: ``gzip``/``x-gzip`` (several members, RFC 1952 §2.2), ``deflate`` (zlib-wrapped as
  RFC 9110 §8.4.1.2 says, or raw deflate as some servers send), ``identity``; at most
  :data:`MAX_LAYERS` of them (curl stops at 5). Anything else (``br``, ``zstd``: the scanner
  never asks for them) is kept as the raw bytes and said so.
* The raw bytes read are capped too (:data:`RAW_FACTOR` times the cap), so a stream of empty
  gzip members cannot keep the scanner reading.
* A body that arrives in a flood of tiny chunks (1-byte chunked encoding, empty HTTP/2 DATA
  frames: each costs a parser event) is cut once the chunks outnumber
  ``FLOOD_BASE + bytes / FLOOD_BYTES_PER_CHUNK``.

A cut body is kept (``truncated`` with the reason in ``note``): controls judge what arrived, as
they judge a body cut at the cap.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

BODY_LIMIT = 256 * 1024
MAX_LAYERS = 5
RAW_FACTOR = 2
PULL = 64 * 1024  # bytes handed from one layer to the next at a time
FLOOD_BASE = 256
FLOOD_BYTES_PER_CHUNK = 64

_DECODABLE = frozenset({"gzip", "x-gzip", "deflate", "identity"})


class _Layer:
    """One ``Content-Encoding`` layer: a decompressor fed bounded pieces, asked for bounded
    output."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._gzip = coding in {"gzip", "x-gzip"}
        self._pending = b""
        self._prefix = b""  # input seen before the first output: a retry as raw deflate needs it
        self._started = False
        self._ended = False
        self._decompressor = self._new()

    def _new(self, raw_deflate: bool = False) -> zlib._Decompress:
        if self._gzip:
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        return zlib.decompressobj(-zlib.MAX_WBITS if raw_deflate else zlib.MAX_WBITS)

    @property
    def hungry(self) -> bool:
        return not self._pending and not self._ended

    def feed(self, data: bytes) -> None:
        self._pending += data

    def _decompress(self, data: bytes, limit: int) -> bytes:
        if self._started:
            return self._decompressor.decompress(data, limit)
        self._prefix += data
        try:
            out = self._decompressor.decompress(data, limit)
        except zlib.error:
            if self.coding != "deflate":
                raise
            # Not zlib-wrapped: the raw deflate many servers send for "deflate".
            self._decompressor = self._new(raw_deflate=True)
            self._started = True
            return self._decompressor.decompress(self._prefix, limit)
        if out or len(self._prefix) > 2:  # past the two-byte zlib header: the format is known
            self._started = True
            self._prefix = b""
        return out

    def read(self, limit: int) -> bytes:
        """Up to ``limit`` decoded bytes from the input fed so far (``b""``: feed more)."""
        while not self._ended:
            data, self._pending = self._pending, b""
            # With no new input, decompress(b"") still returns output zlib held back when the
            # previous call hit ``limit``.
            out = self._decompress(data, limit)
            self._pending = self._decompressor.unconsumed_tail
            if self._decompressor.eof:
                rest = self._decompressor.unused_data + self._pending
                if self._gzip:
                    # Another gzip member may follow (RFC 1952 §2.2), now or in a later chunk.
                    self._decompressor = self._new()
                    self._pending = rest if rest.strip(b"\0") else b""
                else:
                    self._ended = True
            if out:
                return out
            if not self._pending:
                return b""
        return b""


class BodyDecoder:
    """Feed raw chunks with :meth:`feed`; :meth:`result` gives the decoded, capped body."""

    def __init__(self, content_encoding: Sequence[str] = (), limit: int = BODY_LIMIT) -> None:
        self.limit = limit
        codings = [
            c.strip().lower() for value in content_encoding for c in value.split(",") if c.strip()
        ]
        codings = [c for c in codings if c != "identity"]
        self.note = ""
        self.truncated = False
        self._raw_seen = 0
        self._chunks = 0
        self._raw: list[bytes] = []
        self._out: list[bytes] = []
        self._size = 0
        self._layers: list[_Layer] = []
        self._opaque = False
        if len(codings) > MAX_LAYERS:
            self._opaque = True
            self.note = (
                f"{len(codings)} Content-Encoding layers (more than {MAX_LAYERS}): not decoded"
            )
        elif any(c not in _DECODABLE for c in codings):
            unknown = next(c for c in codings if c not in _DECODABLE)
            self._opaque = True
            self.note = f"Content-Encoding {unknown!r} not decoded (never asked for)"
        else:
            # The last coding listed was applied last, so it is undone first (RFC 9110 §8.4).
            self._layers = [_Layer(c) for c in reversed(codings)]

    @property
    def done(self) -> bool:
        """Nothing more is wanted (cap reached, flood, or a decoding error)."""
        return self.truncated

    def feed(self, chunk: bytes) -> bool:
        """Take one raw chunk; True once no more are wanted."""
        if self.truncated:
            return True
        self._chunks += 1
        self._raw_seen += len(chunk)
        if self._chunks > FLOOD_BASE + self._raw_seen // FLOOD_BYTES_PER_CHUNK:
            self._cut(f"body sent in a flood of {self._chunks} tiny chunks: reading stopped")
            return True
        if self._raw_seen > RAW_FACTOR * self.limit and not self._opaque:
            self._cut(f"more than {RAW_FACTOR * self.limit // 1024} KiB of encoded data read")
            return True
        if not chunk:
            return False
        if self._opaque or not self._layers:
            self._append(chunk)
            return self.truncated
        self._raw.append(chunk)
        try:
            self._drain()
        except zlib.error as exc:
            self._cut(f"{self._layers[0].coding} data is corrupt ({exc}); decoded part kept")
        return self.truncated

    def _append(self, data: bytes) -> None:
        room = self.limit - self._size
        if len(data) > room:
            self._out.append(data[:room])
            self._size = self.limit
            self._cut(f"cut at {self.limit // 1024} KiB after decoding")
            return
        self._out.append(data)
        self._size += len(data)

    def _pull(self, index: int, limit: int) -> bytes:
        """Up to ``limit`` decoded bytes out of layer ``index`` (0 is the outermost)."""
        layer = self._layers[index]
        while True:
            out = layer.read(limit)
            if out or not layer.hungry:
                return out
            if index == 0:
                if not self._raw:
                    return b""
                layer.feed(self._raw.pop(0))
            else:
                upstream = self._pull(index - 1, PULL)
                if not upstream:
                    return b""
                layer.feed(upstream)

    def _drain(self) -> None:
        last = len(self._layers) - 1
        while not self.truncated:
            room = self.limit - self._size
            out = self._pull(last, room + 1)  # one byte more tells "cut" from "exactly full"
            if not out:
                return
            self._append(out)

    def _cut(self, why: str) -> None:
        self.truncated = True
        self.note = self.note or why
        self._raw.clear()
        self._layers = []

    def cut(self, why: str) -> None:
        """Stop here (e.g. the request's deadline passed); keep what was decoded."""
        if not self.truncated:
            self._cut(why)

    def result(self) -> bytes:
        return b"".join(self._out)
