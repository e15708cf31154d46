"""BodyDecoder: bodies decoded incrementally within a cap *after* decoding, stacked codings
included, so memory stays flat whatever the target sends (decompression bombs, CWE-409)."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import Callable

import pytest

from bastion.scanner.body import (
    BODY_LIMIT,
    FLOOD_BASE,
    MAX_LAYERS,
    RAW_FACTOR,
    BodyDecoder,
)
from tests.scanner.hostile import gzip_of_zeros

LIMIT = 1024


def _decode(chunks: list[bytes], encoding: str = "", limit: int = LIMIT) -> BodyDecoder:
    decoder = BodyDecoder([encoding] if encoding else [], limit)
    for chunk in chunks:
        if decoder.feed(chunk):
            break
    return decoder


def _bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def test_identity_body_under_at_and_over_the_cap() -> None:
    under = _decode([b"a" * 100, b"b" * 100])
    assert (under.result(), under.truncated, under.note) == (b"a" * 100 + b"b" * 100, False, "")
    exact = _decode([b"x" * LIMIT])
    assert (len(exact.result()), exact.truncated) == (LIMIT, False)  # exactly full is not cut
    over = _decode([b"x" * LIMIT, b"y"])
    assert (len(over.result()), over.truncated) == (LIMIT, True)
    assert over.note == "cut at 1 KiB after decoding"


@pytest.mark.parametrize("chunking", ["whole", "bytewise"])
@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),  # zlib-wrapped, as RFC 9110 §8.4.1.2 says
        ("deflate", _raw_deflate),  # raw deflate, as many servers send
    ],
)
def test_codings_decode_whatever_the_chunking(
    encoding: str, encode: Callable[[bytes], bytes], chunking: str
) -> None:
    plain = b"the quick brown fox " * 20
    encoded = encode(plain)
    chunks = [encoded] if chunking == "whole" else _bytewise(encoded)
    decoder = _decode(chunks, encoding)
    assert decoder.result() == plain
    assert not decoder.truncated


def test_stacked_codings_are_undone_last_first() -> None:
    """``Content-Encoding: deflate, gzip`` means deflate was applied first (RFC 9110 §8.4)."""
    plain = b"stacked " * 50
    encoded = gzip.compress(zlib.compress(plain))
    assert _decode([encoded], "deflate, gzip").result() == plain
    assert BodyDecoder(["deflate", "gzip"], LIMIT).feed(encoded) is False  # list form too


def test_gzip_members_are_all_decoded_even_across_chunks() -> None:
    first, second = gzip.compress(b"one "), gzip.compress(b"two")
    assert _decode([first + second], "gzip").result() == b"one two"
    assert _decode([first, second], "gzip").result() == b"one two"
    assert _decode(_bytewise(first + second), "gzip").result() == b"one two"


def test_a_stacked_bomb_stops_at_the_cap_with_flat_memory() -> None:
    """1 GiB of zeros under two gzip layers (~2 KB): decoded only as far as the cap, with a
    few hundred KiB of Python allocations at most (zlib's own buffers included)."""
    bomb = gzip.compress(gzip_of_zeros(1 << 30, chunk=1 << 24))
    assert len(bomb) < 4096
    tracemalloc.start()
    try:
        decoder = _decode([bomb], "gzip, gzip", limit=BODY_LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoder.result() == b"\0" * BODY_LIMIT
    assert decoder.truncated and decoder.note == "cut at 256 KiB after decoding"
    assert peak < 2 * BODY_LIMIT + (1 << 20), peak


def test_corrupt_data_keeps_what_was_decoded() -> None:
    good = gzip.compress(b"x" * 600)
    decoder = _decode([good[:-8], b"\xff" * 8 + b"garbage"], "gzip")  # a bad CRC-32
    assert decoder.result() == b"x" * 600
    assert decoder.truncated
    assert decoder.note.startswith("gzip data is corrupt")


@pytest.mark.parametrize("coding", ["br", "zstd", "compress"])
def test_codings_never_asked_for_are_kept_raw_and_said_so(coding: str) -> None:
    decoder = _decode([b"\x1b\x03opaque" * 300], coding)
    assert decoder.note == f"Content-Encoding {coding!r} not decoded (never asked for)"
    assert len(decoder.result()) == LIMIT and decoder.truncated


def test_more_layers_than_any_client_accepts_are_not_decoded() -> None:
    encoded = b"plain"
    for _ in range(MAX_LAYERS + 1):
        encoded = gzip.compress(encoded)
    decoder = _decode([encoded], ", ".join(["gzip"] * (MAX_LAYERS + 1)))
    assert decoder.result() == encoded
    assert "6 Content-Encoding layers (more than 5)" in decoder.note
    assert _decode([gzip.compress(b"ok")], "gzip").result() == b"ok"


def test_a_flood_of_tiny_chunks_is_cut() -> None:
    """1-byte chunked encoding costs the parser an event per byte: reading stops once the
    chunks far outnumber the bytes they carry."""
    decoder = _decode([b"x"] * 100_000, limit=BODY_LIMIT)
    assert decoder.truncated
    assert decoder.note.startswith("body sent in a flood of")
    assert FLOOD_BASE < len(decoder.result()) < 2 * FLOOD_BASE
    normal = _decode([b"y" * 100] * 2000, limit=BODY_LIMIT)  # 100-byte chunks are fine
    assert not normal.truncated and len(normal.result()) == 200_000


def test_encoded_input_that_decodes_to_nothing_is_bounded() -> None:
    empty_member = gzip.compress(b"")
    decoder = _decode([empty_member * 200] * 1000, "gzip")
    assert decoder.truncated
    assert decoder.note == f"more than {RAW_FACTOR * LIMIT // 1024} KiB of encoded data read"
