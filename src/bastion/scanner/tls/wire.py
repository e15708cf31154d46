"""The TLS wire format, as far as the probe needs it: a ClientHello out, the first flight back.

The probe never completes these handshakes. The server's ServerHello (RFC 5246 §7.4.1.3,
RFC 8446 §4.1.3) already says everything a capability probe asks: which protocol version and
cipher suite it picked from what was offered, whether it agreed to compression, and which
extensions it echoed (secure renegotiation, extended master secret, OCSP stapling). For
TLS 1.2 and below the same flight carries the certificate chain and the ServerKeyExchange
(the ECDH group or the DH prime) in the clear. An alert or a closed connection means "no".

Because only bytes are exchanged, a suite or version the local OpenSSL has removed (SSLv2,
SSLv3, RC4, DES, 3DES, EXPORT) can still be offered and the server's answer read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "ALERTS",
    "VERSIONS",
    "Answer",
    "ServerHello",
    "build_client_hello",
    "build_sslv2_client_hello",
    "exchange",
    "parse_certificates",
    "parse_server_key_exchange",
]

VERSIONS: dict[str, int] = {
    "SSLv3": 0x0300,
    "TLSv1.0": 0x0301,
    "TLSv1.1": 0x0302,
    "TLSv1.2": 0x0303,
    "TLSv1.3": 0x0304,
}
VERSION_NAMES: dict[int, str] = {v: k for k, v in VERSIONS.items()} | {0x0002: "SSLv2"}

# Record content types (RFC 8446 §5.1)
_CHANGE_CIPHER_SPEC, _ALERT, _HANDSHAKE, _APPLICATION_DATA = 20, 21, 22, 23
# Handshake message types (RFC 8446 §4)
_SERVER_HELLO, _CERTIFICATE, _SERVER_KEY_EXCHANGE, _SERVER_HELLO_DONE = 2, 11, 12, 14

# Extension code points (IANA TLS ExtensionType Values)
EXT_SERVER_NAME = 0
EXT_STATUS_REQUEST = 5
EXT_SUPPORTED_GROUPS = 10
EXT_EC_POINT_FORMATS = 11
EXT_SIGNATURE_ALGORITHMS = 13
EXT_EXTENDED_MASTER_SECRET = 23
EXT_SESSION_TICKET = 35
EXT_SUPPORTED_VERSIONS = 43
EXT_PSK_MODES = 45
EXT_KEY_SHARE = 51
EXT_RENEGOTIATION_INFO = 0xFF01

# Signalling suites: RFC 5746 §3.3 (secure renegotiation) and RFC 7507 §4 (downgrade).
SCSV_RENEGOTIATION = 0x00FF
SCSV_FALLBACK = 0x5600

# SHA-256("HelloRetryRequest"): a ServerHello with this random is a HelloRetryRequest
# (RFC 8446 §4.1.3). It still names the cipher suite (and the group) the server chose.
HELLO_RETRY_RANDOM = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
)

ALERTS: dict[int, str] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    40: "handshake_failure",
    47: "illegal_parameter",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
}

# Groups every hello offers unless a probe asks about specific ones: the modern ones first,
# then the other RFC 8422 curves so that a server with only an old curve still answers.
DEFAULT_GROUPS: tuple[int, ...] = (29, 23, 24, 25, 30, 26, 27, 28, 22, 21, 19, 256, 257, 258)
# Signature schemes (RFC 8446 §4.2.3), SHA-1 ones included: a server with a SHA-1-only
# certificate should still answer, so that its certificate can be judged.
_SIGNATURE_SCHEMES: tuple[int, ...] = (
    0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x0804, 0x0805, 0x0806, 0x0809, 0x080A, 0x080B,
    0x0401, 0x0501, 0x0601, 0x0303, 0x0301, 0x0302, 0x0402, 0x0502, 0x0602,
    0x0203, 0x0201, 0x0202,
)  # fmt: skip

# SSLv2 CIPHER-SPECs (draft-hickman-netscape-ssl-00 Appendix A): RC4, RC2, IDEA, DES, 3DES.
_SSL2_CIPHER_SPECS: tuple[int, ...] = (
    0x010080, 0x020080, 0x030080, 0x040080, 0x050080, 0x060040, 0x0700C0,
)  # fmt: skip

_MAX_FLIGHT = 256 * 1024  # a certificate chain is rarely above 16 KiB; stop a runaway server


def _u8(data: bytes) -> bytes:
    return struct.pack("!B", len(data)) + data


def _u16(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def _u24(data: bytes) -> bytes:
    return struct.pack("!I", len(data))[1:] + data


def _ext(code: int, body: bytes) -> bytes:
    return struct.pack("!H", code) + _u16(body)


def _codes(values: Sequence[int]) -> bytes:
    return b"".join(struct.pack("!H", v) for v in values)


def build_client_hello(
    version: int,
    suites: Sequence[int],
    *,
    server_name: str | None,
    groups: Sequence[int] = DEFAULT_GROUPS,
    key_share: tuple[int, bytes] | None = None,
    offer_compression: bool = True,
    fallback_scsv: bool = False,
) -> bytes:
    """A ClientHello record offering ``suites`` at ``version`` (0x0300..0x0304).

    For TLS 1.3 (``version=0x0304``) the legacy version is TLS 1.2 and ``supported_versions``
    lists only 1.3 (RFC 8446 §4.2.1), so a server without 1.3 cannot answer with 1.3; with
    ``key_share=None`` the share list is empty and a 1.3 server answers with a
    HelloRetryRequest naming the group it wants (RFC 8446 §4.2.8), which is all a probe needs.
    Below TLS 1.3, DEFLATE is offered next to null compression (CRIME: RFC 9325 §3.3), and the
    renegotiation SCSV asks the server to show RFC 5746 support.
    """
    tls13 = version >= 0x0304
    legacy_version = 0x0303 if tls13 else version
    offered = list(suites)
    if not tls13:
        offered.append(SCSV_RENEGOTIATION)
    if fallback_scsv:
        offered.append(SCSV_FALLBACK)
    compression = b"\x01\x00" if (offer_compression and not tls13) else b"\x00"
    extensions = b""
    if version >= 0x0301:  # SSLv3 servers predate extensions; send a bare SSLv3 hello
        if server_name:
            host = server_name.encode("idna")
            extensions += _ext(EXT_SERVER_NAME, _u16(b"\x00" + _u16(host)))
        extensions += _ext(EXT_SUPPORTED_GROUPS, _u16(_codes(groups)))
        extensions += _ext(EXT_EC_POINT_FORMATS, _u8(b"\x00"))
        extensions += _ext(EXT_STATUS_REQUEST, b"\x01\x00\x00\x00\x00")  # OCSP, no ids/exts
        extensions += _ext(EXT_EXTENDED_MASTER_SECRET, b"")
        extensions += _ext(EXT_SESSION_TICKET, b"")
        if version >= 0x0303:
            extensions += _ext(EXT_SIGNATURE_ALGORITHMS, _u16(_codes(_SIGNATURE_SCHEMES)))
        if tls13:
            extensions += _ext(EXT_SUPPORTED_VERSIONS, _u8(_codes([0x0304])))
            extensions += _ext(EXT_PSK_MODES, _u8(b"\x01"))  # psk_dhe_ke
            shares = b""
            if key_share is not None:
                group, public = key_share
                shares = struct.pack("!H", group) + _u16(public)
            extensions += _ext(EXT_KEY_SHARE, _u16(shares))
    body = (
        struct.pack("!H", legacy_version)
        + os.urandom(32)
        + _u8(os.urandom(32) if tls13 else b"")  # TLS 1.3 middlebox compatibility (D.4)
        + _u16(_codes(offered))
        + _u8(compression)
        + (_u16(extensions) if extensions else b"")
    )
    handshake = b"\x01" + _u24(body)
    # The record version of an initial ClientHello is conventionally TLS 1.0 (RFC 8446 §5.1)
    record_version = 0x0300 if version == 0x0300 else 0x0301
    return struct.pack("!BH", _HANDSHAKE, record_version) + _u16(handshake)


def build_sslv2_client_hello() -> bytes:
    """An SSLv2 CLIENT-HELLO (2-byte record header with the high bit set, no padding)."""
    specs = b"".join(struct.pack("!I", s)[1:] for s in _SSL2_CIPHER_SPECS)
    challenge = os.urandom(16)
    body = (
        b"\x01"  # MSG-CLIENT-HELLO
        + struct.pack("!HHHH", 0x0002, len(specs), 0, len(challenge))
        + specs
        + challenge
    )
    return struct.pack("!H", 0x8000 | len(body)) + body


@dataclass(frozen=True)
class ServerHello:
    """The parts of a ServerHello (or HelloRetryRequest) the probe judges."""

    version: int  # negotiated: supported_versions when present, else the legacy field
    cipher: int
    compression: int
    extensions: dict[int, bytes]
    hello_retry: bool

    @property
    def key_share_group(self) -> int | None:
        """The group of a TLS 1.3 ServerHello's key share, or the group an HRR asks for."""
        data = self.extensions.get(EXT_KEY_SHARE)
        if data is None or len(data) < 2:
            return None
        return int(struct.unpack("!H", data[:2])[0])


def parse_server_hello(body: bytes) -> ServerHello:
    """Parse a ServerHello handshake body; ValueError when malformed."""
    try:
        (legacy_version,) = struct.unpack_from("!H", body, 0)
        random = body[2:34]
        sid_len = body[34]
        offset = 35 + sid_len
        (cipher,) = struct.unpack_from("!H", body, offset)
        compression = body[offset + 2]
        offset += 3
        extensions: dict[int, bytes] = {}
        if offset < len(body):
            (total,) = struct.unpack_from("!H", body, offset)
            offset += 2
            end = offset + total
            while offset + 4 <= end:
                code, length = struct.unpack_from("!HH", body, offset)
                extensions[code] = body[offset + 4 : offset + 4 + length]
                offset += 4 + length
    except (struct.error, IndexError) as exc:
        raise ValueError(f"malformed ServerHello: {exc}") from exc
    version = legacy_version
    selected = extensions.get(EXT_SUPPORTED_VERSIONS)
    if selected is not None and len(selected) == 2:
        version = struct.unpack("!H", selected)[0]
    return ServerHello(version, cipher, compression, extensions, random == HELLO_RETRY_RANDOM)


def parse_certificates(body: bytes) -> list[bytes]:
    """The DER certificates of a TLS 1.2-and-below Certificate message, in sent order."""
    certs: list[bytes] = []
    if len(body) < 3:
        return certs
    total = int.from_bytes(body[:3], "big")
    offset, end = 3, min(3 + total, len(body))
    while offset + 3 <= end:
        length = int.from_bytes(body[offset : offset + 3], "big")
        certs.append(body[offset + 3 : offset + 3 + length])
        offset += 3 + length
    return certs


def parse_server_key_exchange(body: bytes, kex: str) -> tuple[str, int] | None:
    """``("ecdh", group)`` or ``("dh", prime_bits)`` from a ServerKeyExchange, else None.

    ECDHE params start with curve_type 3 (named_curve) and the group (RFC 8422 §5.4); DHE
    params start with the prime ``dh_p`` (RFC 5246 §7.4.3), whose length is the Logjam measure.
    """
    try:
        if kex == "ECDHE":
            if body[0] == 3:
                return "ecdh", int(struct.unpack_from("!H", body, 1)[0])
            return None
        if kex == "DHE":
            (length,) = struct.unpack_from("!H", body, 0)
            prime = body[2 : 2 + length].lstrip(b"\x00")
            return "dh", int.from_bytes(prime, "big").bit_length()
    except (struct.error, IndexError):
        return None
    return None


@dataclass
class Answer:
    """What came back for one hello: a ServerHello, an alert, or nothing usable."""

    kind: str  # hello, alert, sslv2, closed, timeout, refused, garbage
    hello: ServerHello | None = None
    alert: int | None = None
    certificates: list[bytes] = field(default_factory=list)
    server_key_exchange: bytes | None = None
    sslv2_cipher_specs: int = 0
    detail: str = ""

    def describe(self) -> str:
        if self.kind == "hello" and self.hello is not None:
            version = VERSION_NAMES.get(self.hello.version, f"0x{self.hello.version:04x}")
            kind = "HelloRetryRequest" if self.hello.hello_retry else "ServerHello"
            return f"{kind} {version} suite 0x{self.hello.cipher:04x}"
        if self.kind == "alert":
            name = ALERTS.get(self.alert or 0, str(self.alert))
            return f"alert {name}"
        if self.kind == "sslv2":
            return f"SSLv2 SERVER-HELLO with {self.sslv2_cipher_specs} cipher specs"
        return self.kind + (f" ({self.detail})" if self.detail else "")


async def _read_flight(reader: asyncio.StreamReader, *, want_flight: bool, sslv2: bool) -> Answer:
    buffer = b""
    answer = Answer("closed")
    received = 0
    while received < _MAX_FLIGHT:
        try:
            header = await reader.readexactly(2 if sslv2 else 5)
        except asyncio.IncompleteReadError as exc:
            if answer.hello is not None:
                return answer
            return Answer("closed", detail="connection closed" if not exc.partial else "short")
        if sslv2:
            return await _read_sslv2(reader, header)
        content_type, major, _minor, length = struct.unpack("!BBBH", header)
        if content_type not in (20, 21, 22, 23) or major != 3 or length > 18432:
            return Answer("garbage", detail=f"not a TLS record: {header.hex()}")
        try:
            payload = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            return answer if answer.hello is not None else Answer("closed", detail="short record")
        received += length
        if content_type == _ALERT:
            if answer.hello is not None:
                return answer
            return Answer("alert", alert=payload[1] if len(payload) > 1 else None)
        if content_type != _HANDSHAKE:
            return answer if answer.hello is not None else Answer("garbage", detail="no hello")
        buffer += payload
        while len(buffer) >= 4:
            msg_type = buffer[0]
            msg_len = int.from_bytes(buffer[1:4], "big")
            if len(buffer) < 4 + msg_len:
                break
            body, buffer = buffer[4 : 4 + msg_len], buffer[4 + msg_len :]
            if msg_type == _SERVER_HELLO:
                try:
                    hello = parse_server_hello(body)
                except ValueError as exc:
                    return Answer("garbage", detail=str(exc))
                answer = Answer("hello", hello=hello)
                if not want_flight or hello.version >= 0x0304 or hello.hello_retry:
                    return answer
            elif answer.hello is None:
                return Answer("garbage", detail=f"handshake message {msg_type} before hello")
            elif msg_type == _CERTIFICATE:
                answer.certificates = parse_certificates(body)
            elif msg_type == _SERVER_KEY_EXCHANGE:
                answer.server_key_exchange = body
            elif msg_type == _SERVER_HELLO_DONE:
                return answer
    return answer


async def _read_sslv2(reader: asyncio.StreamReader, header: bytes) -> Answer:
    if not header[0] & 0x80:
        # A TLS alert or record: the server answered, but not in SSLv2
        return Answer("closed", detail="answered with a TLS record, not SSLv2")
    length = ((header[0] & 0x7F) << 8) | header[1]
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return Answer("closed", detail="short SSLv2 record")
    # SERVER-HELLO: type 4, session-id-hit, cert type, version, cert len, specs len, conn-id len
    if len(body) < 11 or body[0] != 4:
        return Answer("closed", detail=f"SSLv2 message type {body[0] if body else None}")
    specs_len = struct.unpack_from("!H", body, 7)[0]
    return Answer("sslv2", sslv2_cipher_specs=specs_len // 3)


async def exchange(
    host: str,
    port: int,
    hello: bytes,
    *,
    deadline_s: float,
    want_flight: bool = False,
    sslv2: bool = False,
) -> Answer:
    """Connect, send one hello, read the first flight (until ServerHelloDone if
    ``want_flight``), close. Never raises for network trouble: that is an Answer too."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(deadline_s):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(hello)
            await writer.drain()
            return await _read_flight(reader, want_flight=want_flight, sslv2=sslv2)
    except TimeoutError:
        return Answer("timeout", detail=f"no answer within {deadline_s:g}s")
    except ConnectionRefusedError as exc:
        return Answer("refused", detail=str(exc))
    except ConnectionResetError:
        return Answer("closed", detail="connection reset")
    except OSError as exc:
        return Answer("refused", detail=str(exc))
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
