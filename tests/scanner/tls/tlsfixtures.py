"""Local TLS servers and certificates for the TLS probe and control tests.

* :func:`issue` makes certificates with ``cryptography`` (a CA, a leaf with chosen dates,
  names, key, CA flag, must-staple), written to PEM files.
* :func:`tls_server` runs a real Python ``ssl`` server on a free loopback port with chosen
  protocol versions, cipher string, groups and options (thread per connection).
* :func:`fake_tls_server` answers ClientHellos with a hand-built ServerHello. It exists for
  what the local OpenSSL 3 cannot serve at all (SSLv2, SSLv3, RC4, DES, 3DES, EXPORT, TLS
  compression, no RFC 5746, ignoring TLS_FALLBACK_SCSV): a mock of a fault that cannot be
  caused for real here. Its ClientHello parser is written independently of the probe's.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support import require_program
from tests.support_tls import private_key_pem

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
NOW = dt.datetime.now(dt.UTC)


@functools.cache
def rsa_key(bits: int = 2048, index: int = 0) -> rsa.RSAPrivateKey:
    """Keys are cached per process: generating them dominates a test's run time."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.cache
def ec_key(index: int = 0) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Issued:
    cert: x509.Certificate
    key: PrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return private_key_pem(self.key)


def issue(
    cn: str = "localhost",
    *,
    dns: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1",),
    issuer: Issued | None = None,
    key: PrivateKey | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    is_ca: bool = False,
    must_staple: bool = False,
    server_auth: bool = True,
) -> Issued:
    """A certificate signed by ``issuer`` (self-signed without one), SHA-256."""
    key = key or rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(days=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:  # RFC 5280 §4.2.1.1; strict validators (sslyze 6) require it
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    elif server_auth:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    if must_staple:
        builder = builder.add_extension(
            x509.TLSFeature([x509.TLSFeatureType.status_request]), critical=False
        )
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def make_ca(cn: str = "bastion test root", index: int = 1) -> Issued:
    return issue(cn, dns=(), ips=(), is_ca=True, key=rsa_key(2048, index))


@dataclass
class Files:
    cert: Path  # the chain as the server sends it
    key: Path
    ca: Path | None = None  # what a --ca-file would contain


def write(
    directory: Path, name: str, chain: Sequence[Issued], *, ca: Issued | None = None
) -> Files:
    directory.mkdir(parents=True, exist_ok=True)
    cert = directory / f"{name}.pem"
    cert.write_bytes(b"".join(c.pem for c in chain))
    key = directory / f"{name}.key"
    key.write_bytes(chain[0].key_pem)
    ca_path = None
    if ca is not None:
        ca_path = directory / f"{name}-ca.pem"
        ca_path.write_bytes(ca.pem)
    return Files(cert, key, ca_path)


def openssl_sha1_cert(directory: Path) -> Files:
    """A SHA-1-signed self-signed leaf: ``cryptography`` refuses to sign with SHA-1, the
    OpenSSL command line still does."""
    openssl = require_program("openssl", "needed to sign a SHA-1 test certificate")
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "sha1.key"
    key.write_bytes(Issued(issue().cert, rsa_key()).key_pem)
    cert = directory / "sha1.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-new", "-key", str(key), "-sha1", "-days", "60",
            "-subj", "/CN=localhost", "-out", str(cert),
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext", "basicConstraints=critical,CA:FALSE",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Files(cert, key, cert)


def dh_params_1024(directory: Path) -> Path:
    """1024-bit DH parameters (Logjam-weak), fast with ``-dsaparam``."""
    openssl = require_program("openssl", "needed to make 1024-bit DH parameters")
    path = directory / "dh1024.pem"
    if not path.exists():
        subprocess.run(
            [openssl, "dhparam", "-dsaparam", "-out", str(path), "1024"],
            check=True,
            capture_output=True,
        )
    return path


def dh_params_ffdhe2048(directory: Path) -> Path:
    """The RFC 7919 ffdhe2048 group (Mozilla's recommendation), from OpenSSL's built-in copy."""
    openssl = require_program("openssl", "needed to write the ffdhe2048 DH parameters")
    path = directory / "ffdhe2048.pem"
    if not path.exists():
        subprocess.run(
            [openssl, "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048",
             "-out", str(path)],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return path


# -- a real OpenSSL server ---------------------------------------------------------------

V = ssl.TLSVersion


def local_openssl_can(version: ssl.TLSVersion) -> str | None:
    """None if a local server and client can negotiate ``version`` here, else why not."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server.set_ciphers("ALL:@SECLEVEL=0")
            server.minimum_version = version
            server.maximum_version = version
        except (ValueError, ssl.SSLError) as exc:
            return f"local OpenSSL ({ssl.OPENSSL_VERSION}) cannot enable {version.name}: {exc}"
    return None


@dataclass
class ServerConfig:
    files: Files
    minimum: ssl.TLSVersion = V.TLSv1_2
    maximum: ssl.TLSVersion = V.MAXIMUM_SUPPORTED
    ciphers: str = "ECDHE+AESGCM:ECDHE+CHACHA20"
    tls13_ciphersuites: str | None = None
    ecdh_curve: str | None = None
    dh_params: Path | None = None
    server_order: bool = True
    extra_options: int = 0
    clear_options: int = 0


@contextmanager
def tls_server(config: ServerConfig) -> Iterator[int]:
    """A real ``ssl`` server on 127.0.0.1; yields its port. Each connection gets a thread
    that completes (or fails) the handshake and closes."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = config.minimum
        context.maximum_version = config.maximum
    # the cipher string (with its @SECLEVEL) must precede loading a weak certificate
    context.set_ciphers(config.ciphers)
    context.load_cert_chain(config.files.cert, config.files.key)
    if config.ecdh_curve:
        context.set_ecdh_curve(config.ecdh_curve)
    if config.dh_params:
        context.load_dh_params(str(config.dh_params))
    if not config.server_order:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= config.extra_options
    context.options &= ~config.clear_options

    def handle(conn: socket.socket) -> None:
        conn.settimeout(5)
        with suppress(OSError), context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)
        with suppress(OSError):
            conn.close()

    with _listener(handle) as port:
        yield port


@contextmanager
def _listener(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    listener.settimeout(0.05)
    stop = threading.Event()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setblocking(True)
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        listener.close()


# -- a fake server for what OpenSSL 3 cannot serve ---------------------------------------


@dataclass
class FakeBehaviour:
    """What the fake server accepts. Versions are wire values (0x0300 = SSL 3.0)."""

    versions: Sequence[int] = (0x0301, 0x0302, 0x0303)
    suites: Sequence[int] = (0xC02F,)
    sslv2: bool = False
    compression: bool = False
    renegotiation_info: bool = True
    extended_master_secret: bool = True
    honour_fallback: bool = True
    seen: list[int] = field(default_factory=list)  # client versions, for assertions


def parse_client_hello(data: bytes) -> tuple[int, list[int], bytes, set[int]]:
    """(client_version, suites, compression methods, extension codes) of a ClientHello."""
    body = data[5 + 4 :]
    version = struct.unpack_from("!H", body, 0)[0]
    offset = 34
    offset += 1 + body[offset]
    (n,) = struct.unpack_from("!H", body, offset)
    suites = [struct.unpack_from("!H", body, offset + 2 + i)[0] for i in range(0, n, 2)]
    offset += 2 + n
    methods = body[offset + 1 : offset + 1 + body[offset]]
    offset += 1 + body[offset]
    extensions: set[int] = set()
    if offset + 2 <= len(body):
        (total,) = struct.unpack_from("!H", body, offset)
        offset += 2
        end = offset + total
        while offset + 4 <= end:
            code, length = struct.unpack_from("!HH", body, offset)
            extensions.add(code)
            offset += 4 + length
    return version, suites, methods, extensions


def _record(content_type: int, version: int, payload: bytes) -> bytes:
    return struct.pack("!BHH", content_type, version, len(payload)) + payload


def _server_hello(version: int, suite: int, compression: int, extensions: bytes) -> bytes:
    body = (
        struct.pack("!H", version)
        + os.urandom(32)
        + b"\x00"
        + struct.pack("!HB", suite, compression)
    )
    if extensions:
        body += struct.pack("!H", len(extensions)) + extensions
    handshake = b"\x02" + struct.pack("!I", len(body))[1:] + body
    return _record(22, version, handshake)


def _alert(version: int, description: int) -> bytes:
    return _record(21, version, bytes([2, description]))


def _read_hello(conn: socket.socket) -> bytes:
    data = b""
    while len(data) < 5:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    if data[0] & 0x80:  # SSLv2 CLIENT-HELLO (2-byte header)
        return data
    length = struct.unpack_from("!H", data, 3)[0]
    while len(data) < 5 + length:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def fake_answer(behaviour: FakeBehaviour, data: bytes) -> bytes:
    if data and data[0] & 0x80:
        if not behaviour.sslv2:
            return b""
        body = (
            b"\x04\x00\x01"
            + struct.pack("!HHHH", 0x0002, 0, 3, 16)
            + b"\x01\x00\x80"
            + os.urandom(16)
        )
        return struct.pack("!H", 0x8000 | len(body)) + body
    if len(data) < 9 or data[0] != 22:
        return b""
    client_version, suites, methods, extensions = parse_client_hello(data)
    behaviour.seen.append(client_version)
    best = max(behaviour.versions)
    version = min(client_version, best)
    if version not in behaviour.versions:
        return _alert(0x0301, 70)  # protocol_version
    if 0x5600 in suites and client_version < best and behaviour.honour_fallback:
        return _alert(version, 86)  # inappropriate_fallback (RFC 7507)
    common = [s for s in suites if s in behaviour.suites]
    if not common:
        return _alert(version, 40)  # handshake_failure
    answer_ext = b""
    if version >= 0x0301:
        if behaviour.renegotiation_info and (0x00FF in suites or 0xFF01 in extensions):
            answer_ext += struct.pack("!HHB", 0xFF01, 1, 0)
        if behaviour.extended_master_secret and 23 in extensions:
            answer_ext += struct.pack("!HH", 23, 0)
    compression = 1 if behaviour.compression and 1 in methods else 0
    return _server_hello(version, common[0], compression, answer_ext)


@contextmanager
def fake_tls_server(behaviour: FakeBehaviour) -> Iterator[int]:
    def handle(conn: socket.socket) -> None:
        conn.settimeout(5)
        with suppress(OSError), conn:
            answer = fake_answer(behaviour, _read_hello(conn))
            if answer:
                conn.sendall(answer)

    with _listener(handle) as port:
        yield port


def have_program(name: str) -> bool:
    return shutil.which(name) is not None
