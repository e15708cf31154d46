"""The hand-built ClientHello and the ServerHello/Certificate/ServerKeyExchange parsers.

ClientHellos are checked by parsing them back independently (the fake server's parser) and
by the strictest judge available: the local OpenSSL server, which must answer them.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from pathlib import Path

import pytest

from bastion.scanner.tls import wire
from bastion.scanner.tls.suites import LEGACY_SUITES, TLS13_SUITES
from tests.scanner.tls.tlsfixtures import (
    FakeBehaviour,
    fake_answer,
    issue,
    parse_client_hello,
    write,
)


def test_client_hello_offers_what_was_asked_and_the_renegotiation_scsv() -> None:
    hello = wire.build_client_hello(0x0302, [0x002F, 0xC013], server_name="api.example")
    assert hello[0] == 22  # handshake record
    assert struct.unpack_from("!H", hello, 1)[0] == 0x0301  # initial record version
    assert struct.unpack_from("!H", hello, 3)[0] == len(hello) - 5
    version, suites, methods, extensions = parse_client_hello(hello)
    assert version == 0x0302
    assert suites == [0x002F, 0xC013, 0x00FF]  # RFC 5746 §3.3 SCSV appended
    assert methods == b"\x01\x00"  # DEFLATE offered next to null: the CRIME probe
    assert {0, 5, 10, 11, 23} <= extensions
    assert 13 not in extensions  # signature_algorithms exists from TLS 1.2 on (RFC 5246)
    assert b"api.example" in hello


def test_client_hello_for_tls13_uses_supported_versions_and_no_compression() -> None:
    hello = wire.build_client_hello(
        0x0304, [s.code for s in TLS13_SUITES], server_name=None, key_share=(29, b"k" * 32)
    )
    version, suites, methods, extensions = parse_client_hello(hello)
    assert version == 0x0303  # legacy_version (RFC 8446 §4.1.2)
    assert suites == [0x1302, 0x1303, 0x1301, 0x1304, 0x1305]  # no SCSV in a 1.3-only hello
    assert methods == b"\x00"
    assert {10, 13, 43, 45, 51} <= extensions
    assert 0 not in extensions  # no SNI without a name (IP literals: RFC 6066 §3)
    assert b"\x00\x1d\x00\x20" + b"k" * 32 in hello  # x25519 key share entry


def test_sslv3_hello_has_no_extensions_and_fallback_scsv_is_last() -> None:
    hello = wire.build_client_hello(0x0300, [0x002F], server_name="x", fallback_scsv=True)
    version, suites, _methods, extensions = parse_client_hello(hello)
    assert version == 0x0300
    assert struct.unpack_from("!H", hello, 1)[0] == 0x0300
    assert extensions == set()
    assert suites[-1] == 0x5600  # RFC 7507 TLS_FALLBACK_SCSV


def test_sslv2_client_hello_layout() -> None:
    hello = wire.build_sslv2_client_hello()
    length = struct.unpack_from("!H", hello, 0)[0]
    assert length & 0x8000 and (length & 0x7FFF) == len(hello) - 2
    assert hello[2] == 1  # MSG-CLIENT-HELLO
    assert struct.unpack_from("!HHHH", hello, 3) == (0x0002, 21, 0, 16)  # 7 specs x 3 bytes


def _server_hello_body(
    version: int, suite: int, *, random: bytes | None = None, extensions: bytes = b""
) -> bytes:
    body = (
        struct.pack("!H", version) + (random or b"r" * 32) + b"\x00" + struct.pack("!HB", suite, 0)
    )
    if extensions:
        body += struct.pack("!H", len(extensions)) + extensions
    return body


def test_server_hello_parse_reads_supported_versions_and_key_share() -> None:
    ext = struct.pack("!HHH", 43, 2, 0x0304) + struct.pack("!HHHH", 51, 4, 23, 0)
    hello = wire.parse_server_hello(_server_hello_body(0x0303, 0x1301, extensions=ext))
    assert hello.version == 0x0304  # the selected version, not the legacy field
    assert hello.cipher == 0x1301
    assert hello.key_share_group == 23
    assert not hello.hello_retry


def test_hello_retry_request_is_recognised_by_its_random() -> None:
    assert hashlib.sha256(b"HelloRetryRequest").digest() == wire.HELLO_RETRY_RANDOM
    ext = struct.pack("!HHH", 43, 2, 0x0304) + struct.pack("!HHH", 51, 2, 24)
    body = _server_hello_body(0x0303, 0x1302, random=wire.HELLO_RETRY_RANDOM, extensions=ext)
    hello = wire.parse_server_hello(body)
    assert hello.hello_retry and hello.key_share_group == 24


def test_malformed_server_hello_raises_value_error() -> None:
    with pytest.raises(ValueError, match="malformed ServerHello"):
        wire.parse_server_hello(b"\x03\x03short")


def test_certificate_message_and_server_key_exchange_parsing() -> None:
    a, b = b"\x30" + b"a" * 10, b"\x30" + b"b" * 20
    entries = b"".join(struct.pack("!I", len(c))[1:] + c for c in (a, b))
    body = struct.pack("!I", len(entries))[1:] + entries
    assert wire.parse_certificates(body) == [a, b]
    assert wire.parse_server_key_exchange(b"\x03\x00\x1d\x20" + b"k" * 32, "ECDHE") == ("ecdh", 29)
    prime = b"\x00" + b"\xff" * 128  # a leading zero byte is not part of the prime's size
    dhe = struct.pack("!H", len(prime)) + prime + b"\x00\x01\x02"
    assert wire.parse_server_key_exchange(dhe, "DHE") == ("dh", 1024)
    assert wire.parse_server_key_exchange(b"\x01", "ECDHE") is None  # explicit curve: unknown


async def test_exchange_reports_refused_and_timeout_as_answers() -> None:
    from tests.support import free_port

    refused = await wire.exchange("127.0.0.1", free_port(), b"x", deadline_s=1)
    assert refused.kind == "refused"

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads until the client gives up; never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        answer = await wire.exchange("127.0.0.1", port, b"\x16\x03\x01\x00\x00", deadline_s=0.2)
    assert answer.kind == "timeout"
    assert answer.describe() == "timeout (no answer within 0.2s)"


async def test_exchange_reads_an_alert_and_garbage() -> None:
    replies = iter([b"\x15\x03\x03\x00\x02\x02\x46", b"HTTP/1.1 400 Bad Request\r\n\r\n"])

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(5)
        writer.write(next(replies))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hello = wire.build_client_hello(0x0301, [0x002F], server_name=None)
    async with server:
        alert = await wire.exchange("127.0.0.1", port, hello, deadline_s=2)
        garbage = await wire.exchange("127.0.0.1", port, hello, deadline_s=2)
    assert (alert.kind, alert.alert, alert.describe()) == ("alert", 70, "alert protocol_version")
    assert garbage.kind == "garbage"


def test_fake_server_and_probe_agree_on_the_wire_format() -> None:
    """The probe's hello, parsed by the independent fake-server parser, gets the suite the
    fake accepts: the two halves of the test agree on the format."""
    behaviour = FakeBehaviour(versions=(0x0303,), suites=(0x000A,))
    codes = [s.code for s in LEGACY_SUITES]
    answer = fake_answer(behaviour, wire.build_client_hello(0x0303, codes, server_name="x"))
    hello = wire.parse_server_hello(answer[9:])
    assert (hello.version, hello.cipher) == (0x0303, 0x000A)


async def test_real_openssl_server_answers_the_hand_built_hellos(tmp_path: Path) -> None:
    """The strictest check of the ClientHello: OpenSSL parses it and answers with the whole
    first flight (ServerHello, Certificate, ServerKeyExchange, ServerHelloDone)."""
    from tests.scanner.tls.tlsfixtures import ServerConfig, tls_server

    files = write(tmp_path, "leaf", [issue()])
    with tls_server(ServerConfig(files)) as port:
        codes = [s.code for s in LEGACY_SUITES]
        hello = wire.build_client_hello(0x0303, codes, server_name="localhost")
        answer = await wire.exchange("127.0.0.1", port, hello, deadline_s=3, want_flight=True)
        assert answer.kind == "hello" and answer.hello is not None
        assert answer.hello.cipher == 0xC030  # ECDHE-RSA-AES256-GCM-SHA384: server order
        assert len(answer.certificates) == 1
        assert answer.server_key_exchange is not None
        assert wire.EXT_RENEGOTIATION_INFO in answer.hello.extensions
        assert wire.EXT_EXTENDED_MASTER_SECRET in answer.hello.extensions
        tls13 = wire.build_client_hello(
            0x0304, [s.code for s in TLS13_SUITES], server_name="localhost"
        )
        retry = await wire.exchange("127.0.0.1", port, tls13, deadline_s=3)
        assert retry.hello is not None and retry.hello.hello_retry  # empty key_share -> HRR
        assert retry.hello.version == 0x0304
