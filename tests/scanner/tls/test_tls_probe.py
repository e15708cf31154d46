"""The probe against real loopback servers: what it reports must be what the server was
configured to do, and what it cannot establish must say so."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from bastion.scanner.tls import TLSFacts, Untested, is_untested, probe_tls
from tests.scanner.tls.tlsfixtures import (
    FakeBehaviour,
    ServerConfig,
    V,
    fake_tls_server,
    issue,
    local_openssl_can,
    tls_server,
    write,
)
from tests.support import free_port


async def probe(host: str, port: int, **options: Any) -> TLSFacts:
    """probe_tls with a patient per-connection timeout: the test servers share this process."""
    return await probe_tls(host, port, handshake_timeout=10.0, **options)


def _names(facts: TLSFacts, protocol: str) -> set[str]:
    return {a.suite.name for a in facts.suites(protocol)}


async def test_enumeration_is_exactly_the_configured_suites(tmp_path: Path) -> None:
    files = write(tmp_path, "leaf", [issue()])
    config = ServerConfig(
        files,
        maximum=V.TLSv1_2,
        ciphers="ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA:ECDHE-RSA-AES256-SHA:@SECLEVEL=0",
    )
    with tls_server(config) as port:
        facts = await probe("localhost", port)
        serial = await probe("localhost", port, concurrency=1)
    assert _names(facts, "TLSv1.2") == {
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    }
    assert facts.offered_protocols() == ("TLSv1.2",)
    assert facts.protocol("TLSv1.3") is False
    assert facts.enumeration_gaps == ()
    assert serial.accepted == facts.accepted  # one connection at a time: same answer
    assert facts.server_cipher_order is True  # Python servers set OP_CIPHER_SERVER_PREFERENCE


async def test_old_protocols_where_the_local_openssl_allows(tmp_path: Path) -> None:
    reason = local_openssl_can(V.TLSv1)
    if reason:
        pytest.skip(reason)
    files = write(tmp_path, "leaf", [issue()])
    config = ServerConfig(
        files, minimum=V.TLSv1, maximum=V.TLSv1_2, ciphers="ECDHE+AES:@SECLEVEL=0"
    )
    with tls_server(config) as port:
        facts = await probe("localhost", port)
    assert facts.offered_protocols() == ("TLSv1.0", "TLSv1.1", "TLSv1.2")
    assert facts.protocol("SSLv3") is False  # asked on the wire, refused by the server
    assert "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA" in _names(facts, "TLSv1.0")
    assert not any(a.suite.aead for a in facts.suites("TLSv1.0"))  # AEAD is TLS 1.2+
    assert facts.fallback_scsv is True  # OpenSSL answers inappropriate_fallback


async def test_sni_is_sent_for_names_and_never_for_ip_literals(tmp_path: Path) -> None:
    seen: list[str | None] = []
    files = write(tmp_path, "leaf", [issue()])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    context.sni_callback = lambda _sock, name, _ctx: seen.append(name)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(2)
            with suppress(OSError), context.wrap_socket(conn, server_side=True):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        await probe("localhost", port, concurrency=1)
        by_name = list(seen)
        seen.clear()
        await probe("127.0.0.1", port, concurrency=1)
        by_ip = list(seen)
    finally:
        stop.set()
        thread.join(2)
        listener.close()
    assert by_name and set(by_name) == {"localhost"}
    assert by_ip and set(by_ip) == {None}  # RFC 6066 §3: no IP literal in server_name


async def test_fake_sslv3_server_is_detected_without_local_sslv3_support() -> None:
    assert not ssl.HAS_SSLv3  # the local OpenSSL cannot speak SSL 3.0 ...
    behaviour = FakeBehaviour(versions=(0x0300,), suites=(0x000A,))
    with fake_tls_server(behaviour) as port:
        facts = await probe("127.0.0.1", port)
    assert facts.protocol("SSLv3") is True  # ... yet the probe found it
    assert _names(facts, "SSLv3") == {"TLS_RSA_WITH_3DES_EDE_CBC_SHA"}
    assert 0x0300 in behaviour.seen
    # no full handshake was possible, so trust is unknown, not "trusted" and not "untrusted"
    assert is_untested(facts.trust.trusted)
    assert facts.chain == ()


async def test_compression_and_missing_rfc5746_are_reported() -> None:
    behaviour = FakeBehaviour(
        versions=(0x0303,), suites=(0xC02F,), compression=True, renegotiation_info=False
    )
    with fake_tls_server(behaviour) as port:
        facts = await probe("127.0.0.1", port)
    assert facts.compression is True
    assert facts.secure_renegotiation is False
    assert isinstance(facts.fallback_scsv, Untested)  # one version: nothing to downgrade to


async def test_tls13_only_server_hides_the_chain_and_says_so(tmp_path: Path) -> None:
    files = write(tmp_path, "leaf", [issue()])
    with tls_server(ServerConfig(files, minimum=V.TLSv1_3)) as port:
        facts = await probe("localhost", port)
    assert facts.offered_protocols() == ("TLSv1.3",)
    assert len(_names(facts, "TLSv1.3")) == 3  # OpenSSL's default TLS 1.3 suites
    assert facts.leaf is not None and facts.leaf.dns_names == ("localhost",)
    assert isinstance(facts.chain_complete, Untested)
    assert "TLS 1.3 encrypts" in facts.chain_complete.reason
    assert isinstance(facts.secure_renegotiation, Untested)
    assert facts.compression is False


async def test_unreachable_not_tls_and_bad_ca_file(tmp_path: Path) -> None:
    refused = await probe("127.0.0.1", free_port())
    assert refused.failure and refused.failure.startswith("could not connect")
    assert all(is_untested(v) for _p, v in refused.protocols)

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http, "127.0.0.1", 0)
    async with server:
        plain = await probe("127.0.0.1", server.sockets[0].getsockname()[1])
    assert plain.failure and "does not speak TLS" in plain.failure

    files = write(tmp_path, "leaf", [issue()])
    with tls_server(ServerConfig(files)) as port:
        facts = await probe("localhost", port, ca_file=str(tmp_path / "missing.pem"))
    assert facts.failure is None
    assert isinstance(facts.trust.trusted, Untested)
    assert "--ca-file could not be loaded" in facts.trust.trusted.reason


def test_untested_cannot_pass_as_a_boolean() -> None:
    unknown = Untested("no answer")
    with pytest.raises(TypeError, match="could not test: no answer"):
        bool(unknown)
    assert str(unknown) == "could not test: no answer"
