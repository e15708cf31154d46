"""An issuer's keys over real HTTP: discovery, caching, the refetch throttle, outages, bounds.

Every test talks to a real HTTP server on loopback (:class:`tests.support_issuer.LocalIssuer`
or a hand-made socket server for the hostile ones) and counts what reached it. Time is an
injected monotonic clock, so "31 seconds later" is exact and instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bastion.asgi import Scope
from bastion.auth import errors as E
from bastion.auth.bearer import BearerAuth, RefusedToken
from bastion.auth.jwks import (
    MAX_CACHE_SECONDS,
    MIN_CACHE_SECONDS,
    REFETCH_INTERVAL,
    FetchError,
    RemoteKeys,
    cache_lifetime,
    checked_url,
    discovery_url,
    fetch_json,
)
from bastion.auth.keys import public_jwk
from bastion.errors import ConfigError
from tests.support import free_port, wait_until
from tests.support_issuer import AUDIENCE, DISCOVERY, JWKS, REALM, LocalIssuer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    local = LocalIssuer()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def remote(
    issuer: LocalIssuer, clock: Clock, *, discovery: bool = True, **options: Any
) -> RemoteKeys:
    if discovery:
        return RemoteKeys(issuer=issuer.url, algorithms=["ES256", "RS256"], clock=clock, **options)
    jwks_url = f"http://127.0.0.1:{issuer.port}{JWKS}"
    return RemoteKeys(jwks_url=jwks_url, algorithms=["ES256", "RS256"], clock=clock, **options)


def auth_over(issuer: LocalIssuer, keys: RemoteKeys) -> BearerAuth:
    return BearerAuth(keys=keys, issuer=issuer.url, audience=AUDIENCE)


def settle(keys: RemoteKeys) -> None:
    """Wait until no fetch is in flight (a background refresh may have been started)."""
    wait_until(lambda: keys._inflight is None, timeout=10, what="the fetch to finish")


# --- discovery and the first fetch ------------------------------------------------------------


def test_discovery_then_jwks_then_cached(issuer: LocalIssuer, clock: Clock) -> None:
    keys = remote(issuer, clock)
    auth = auth_over(issuer, keys)
    for _ in range(50):
        assert auth.verify(issuer.token()).subject == "42"
    assert issuer.hits == {"discovery": 1, "jwks": 1}


def test_the_discovery_url_drops_a_trailing_slash_of_the_issuer() -> None:
    # OIDC Discovery §4.1 (Auth0's issuer ends with "/").
    assert (
        discovery_url("https://tenant.auth0.com/")
        == "https://tenant.auth0.com/.well-known/openid-configuration"
    )
    assert (
        discovery_url("https://kc.example/realms/a")
        == "https://kc.example/realms/a/.well-known/openid-configuration"
    )


def test_a_jwks_url_is_fetched_without_discovery(issuer: LocalIssuer, clock: Clock) -> None:
    auth = auth_over(issuer, remote(issuer, clock, discovery=False))
    auth.verify(issuer.token())
    assert issuer.hits == {"jwks": 1}


def test_a_discovery_document_naming_another_issuer_is_refused(
    issuer: LocalIssuer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    # OIDC Discovery §4.3: a document for another issuer (a look-alike, another tenant)
    # must not give us keys; its JWKS is never even fetched.
    issuer.discovery_issuer = issuer.url + "-evil"
    auth = auth_over(issuer, remote(issuer, clock))
    with caplog.at_level(logging.WARNING, logger="bastion.auth"), pytest.raises(E.UnknownKey):
        auth.verify(issuer.token())
    assert issuer.hits == {"discovery": 1}
    assert "names issuer" in caplog.text and "-evil" in caplog.text


def test_a_discovered_plain_http_jwks_uri_on_another_host_is_refused(
    issuer: LocalIssuer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    issuer.jwks_uri = "http://keys.example.com/jwks.json"
    auth = auth_over(issuer, remote(issuer, clock))
    with caplog.at_level(logging.WARNING, logger="bastion.auth"), pytest.raises(E.UnknownKey):
        auth.verify(issuer.token())
    assert issuer.hits == {"discovery": 1}
    assert "must use https" in caplog.text


@pytest.mark.parametrize(
    ("option", "kwargs"),
    [
        ("jwks_url", {"jwks_url": "http://idp.example.com/jwks.json"}),
        ("jwks_url", {"jwks_url": "http://10.0.0.1/jwks.json"}),
        ("jwks_url", {"jwks_url": "http://127.0.0.1.nip.io/jwks.json"}),
        ("jwks_url", {"jwks_url": "ftp://idp.example.com/jwks.json"}),
        ("jwks_url", {"jwks_url": "https://user:pw@idp.example.com/jwks.json"}),
        ("jwks_url", {"jwks_url": "/jwks.json"}),
        ("issuer", {"issuer": "http://idp.example.com"}),
        ("issuer", {"issuer": "idp.example.com"}),
    ],
)
def test_plain_http_to_another_host_is_refused_at_construction(
    option: str, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError) as caught:
        BearerAuth(audience=AUDIENCE, **{"issuer": "https://idp.example.com", **kwargs})
    assert caught.value.name == option


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.example.com/jwks.json",
        "http://127.0.0.1:8080/jwks.json",
        "http://127.9.9.9/jwks.json",
        "http://localhost:8080/jwks.json",
        "http://[::1]:8080/jwks.json",
    ],
)
def test_https_or_loopback_urls_are_accepted(url: str) -> None:
    assert checked_url(url, "jwks_url") == url


def test_construction_fetches_nothing(issuer: LocalIssuer) -> None:
    BearerAuth(issuer=issuer.url, audience=AUDIENCE)
    BearerAuth(jwks_url=f"http://127.0.0.1:{issuer.port}{JWKS}", issuer="x", audience="y")
    assert not issuer.hits


# --- the kid flood ------------------------------------------------------------------------------


def test_a_flood_of_forged_kids_costs_one_fetch_per_30_seconds(
    issuer: LocalIssuer, clock: Clock
) -> None:
    keys = remote(issuer, clock)
    auth = auth_over(issuer, keys)
    auth.verify(issuer.token())
    assert issuer.hits["jwks"] == 1
    forged = [issuer.token(header={"kid": f"forged-{i}"}) for i in range(300)]
    for second in range(29):  # 300 forged kids spread over the next 29 s: no fetch at all
        clock.advance(1)
        for value in forged[second * 10 : second * 10 + 10]:
            with pytest.raises(E.UnknownKey):
                auth.verify(value)
    assert issuer.hits["jwks"] == 1
    clock.advance(1.5)  # 30.5 s after the first fetch: one refetch, then quiet again
    for value in forged:
        with pytest.raises(E.UnknownKey):
            auth.verify(value)
    assert issuer.hits["jwks"] == 2
    clock.advance(REFETCH_INTERVAL - 1)
    for value in forged:
        with pytest.raises(E.UnknownKey):
            auth.verify(value)
    assert issuer.hits["jwks"] == 2
    assert issuer.hits["discovery"] == 1  # discovery is cached on its own


def test_a_rotated_key_is_picked_up_on_its_first_token(issuer: LocalIssuer, clock: Clock) -> None:
    keys = remote(issuer, clock)
    auth = auth_over(issuer, keys)
    auth.verify(issuer.token())
    clock.advance(REFETCH_INTERVAL)
    new_kid = issuer.rotate("RS256")
    assert auth.verify(issuer.token(kid=new_kid, sub="alice")).subject == "alice"
    assert issuer.hits["jwks"] == 2


def test_a_rotated_key_within_30_seconds_of_a_fetch_waits_for_the_next_window(
    issuer: LocalIssuer, clock: Clock
) -> None:
    keys = remote(issuer, clock)
    auth = auth_over(issuer, keys)
    auth.verify(issuer.token())
    clock.advance(10)
    new_kid = issuer.rotate()
    with pytest.raises(E.UnknownKey):
        auth.verify(issuer.token(kid=new_kid))
    clock.advance(REFETCH_INTERVAL - 10)
    auth.verify(issuer.token(kid=new_kid))


async def test_concurrent_requests_share_one_fetch(issuer: LocalIssuer, clock: Clock) -> None:
    keys = remote(issuer, clock, discovery=False)
    auth = auth_over(issuer, keys)
    issuer.delay = 0.5  # the JWKS answers slowly: every request arrives while it is in flight

    def scope(token: str) -> Scope:
        return {"type": "http", "headers": [(b"authorization", f"Bearer {token}".encode())]}

    scopes = [scope(issuer.token(sub=f"user-{i}")) for i in range(40)]
    principals = await asyncio.gather(*(auth.authenticate(s) for s in scopes))
    assert [p.subject for p in principals] == [f"user-{i}" for i in range(40)]
    assert issuer.hits["jwks"] == 1


async def test_waiting_for_keys_does_not_block_the_event_loop(
    issuer: LocalIssuer, clock: Clock
) -> None:
    keys = remote(issuer, clock, discovery=False)
    auth = auth_over(issuer, keys)
    issuer.delay = 0.5
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    scope = {"type": "http", "headers": [(b"authorization", f"Bearer {issuer.token()}".encode())]}
    await auth.authenticate(scope)
    task.cancel()
    assert ticks >= 20  # the loop kept running while the fetch waited 0.5 s


# --- the issuer going down ----------------------------------------------------------------------


def test_last_good_keys_keep_working_while_the_issuer_is_down(
    issuer: LocalIssuer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    keys = remote(issuer, clock)
    auth = auth_over(issuer, keys)
    auth.verify(issuer.token())
    issuer.stop()
    clock.advance(2 * MAX_CACHE_SECONDS)  # far past the cache lifetime
    with caplog.at_level(logging.WARNING, logger="bastion.auth"):
        assert auth.verify(issuer.token(sub="still-me")).subject == "still-me"
        settle(keys)  # the background refresh it started has failed
    assert "keys not refreshed" in caplog.text
    assert auth.verify(issuer.token()).subject == "42"


def test_a_new_kid_is_refused_until_the_issuer_is_back(issuer: LocalIssuer, clock: Clock) -> None:
    keys = remote(issuer, clock)
    auth = auth_over(issuer, keys)
    auth.verify(issuer.token())
    issuer.stop()
    clock.advance(REFETCH_INTERVAL)
    new_kid = issuer.rotate()
    with pytest.raises(E.UnknownKey):
        auth.verify(issuer.token(kid=new_kid))  # a fetch was tried, and failed
    issuer.start()
    clock.advance(REFETCH_INTERVAL - 1)  # the failed fetch counts: still throttled
    with pytest.raises(E.UnknownKey):
        auth.verify(issuer.token(kid=new_kid))
    clock.advance(1)
    assert auth.verify(issuer.token(kid=new_kid)).subject == "42"
    assert auth.verify(issuer.token()).subject == "42"  # the old key too


def test_an_issuer_down_at_start_is_retried_30_seconds_later(
    issuer: LocalIssuer, clock: Clock
) -> None:
    issuer.stop()
    keys = remote(issuer, clock)
    auth = auth_over(issuer, keys)
    with pytest.raises(E.UnknownKey):
        auth.verify(issuer.token())
    issuer.start()
    clock.advance(REFETCH_INTERVAL - 1)
    with pytest.raises(E.UnknownKey):
        auth.verify(issuer.token())
    clock.advance(1)
    auth.verify(issuer.token())


@pytest.mark.parametrize(
    "body",
    [
        b"<html>maintenance</html>",
        b'{"keys": "nope"}',
        b"[]",
        b'{"keys": [' + b"{}," * 200 + b"{}]}",
    ],
)
def test_a_broken_key_document_keeps_the_last_good_keys(
    issuer: LocalIssuer, clock: Clock, body: bytes
) -> None:
    keys = remote(issuer, clock)
    auth = auth_over(issuer, keys)
    auth.verify(issuer.token())
    issuer.jwks_body = body
    clock.advance(MAX_CACHE_SECONDS + 1)
    auth.verify(issuer.token())
    settle(keys)
    assert issuer.hits["jwks"] == 2  # the refresh happened and was not used
    auth.verify(issuer.token())


def test_a_key_removed_by_the_issuer_stops_verifying_after_the_refresh(
    issuer: LocalIssuer, clock: Clock
) -> None:
    keys = remote(issuer, clock)
    auth = auth_over(issuer, keys)
    old = issuer.token()
    auth.verify(old)
    issuer.published = [issuer.rotate()]  # the old key is withdrawn
    clock.advance(600)  # its max-age
    auth.verify(old)  # still the cached set: this request starts the refresh
    settle(keys)
    with pytest.raises(E.UnknownKey):
        auth.verify(old)  # the verifier's header cache was dropped with the old set


# --- Cache-Control ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cache_control", "age", "seconds"),
    [
        (None, None, MIN_CACHE_SECONDS),
        ("max-age=0", None, MIN_CACHE_SECONDS),
        ("max-age=60", None, MIN_CACHE_SECONDS),
        ("max-age=600", None, 600),
        ("public, max-age=3600, must-revalidate", None, 3600),
        ('max-age="3600"', None, 3600),
        ("MAX-AGE=3600", None, 3600),
        ("max-age=3600", "600", 3000),
        ("max-age=3600", "4000", MIN_CACHE_SECONDS),
        ("max-age=999999999", None, MAX_CACHE_SECONDS),
        ("max-age=99999999999999999999", None, MIN_CACHE_SECONDS),  # not a sane number
        ("no-store", None, MIN_CACHE_SECONDS),
        ("no-cache, max-age=3600", None, MIN_CACHE_SECONDS),
        ("s-maxage=3600", None, MIN_CACHE_SECONDS),
        ("max-age=-5", None, MIN_CACHE_SECONDS),
        ("max-age=abc", None, MIN_CACHE_SECONDS),
    ],
)
def test_cache_lifetime_is_bounded_between_5_minutes_and_24_hours(
    cache_control: str | None, age: str | None, seconds: float
) -> None:
    assert cache_lifetime(cache_control, age) == seconds


@pytest.mark.parametrize(
    ("cache_control", "fresh_for"),
    [
        ("max-age=60", MIN_CACHE_SECONDS),
        ("max-age=7200", 7200),
        ("max-age=31536000", 86400),
        (None, 300),
    ],
)
def test_the_keys_are_refreshed_when_their_bounded_lifetime_ends(
    issuer: LocalIssuer, clock: Clock, cache_control: str | None, fresh_for: int
) -> None:
    issuer.cache_control = cache_control
    keys = remote(issuer, clock, discovery=False)
    auth = auth_over(issuer, keys)
    auth.verify(issuer.token())
    clock.advance(fresh_for - 1)
    auth.verify(issuer.token())
    settle(keys)
    assert issuer.hits["jwks"] == 1
    clock.advance(1)
    auth.verify(issuer.token())  # starts the refresh in the background, verifies meanwhile
    settle(keys)
    assert issuer.hits["jwks"] == 2


# --- bounds on what the issuer may send ---------------------------------------------------------


def test_an_oversized_key_document_is_refused(issuer: LocalIssuer, clock: Clock) -> None:
    issuer.jwks_body = json.dumps({"keys": [], "padding": "x" * 300_000}).encode()
    auth = auth_over(issuer, remote(issuer, clock, discovery=False))
    with pytest.raises(E.UnknownKey):
        auth.verify(issuer.token())
    with pytest.raises(FetchError, match="announced"):
        fetch_json(f"http://127.0.0.1:{issuer.port}{JWKS}")


class RawServer:
    """A TCP server on loopback that answers every connection with *handler(conn)*."""

    def __init__(self, handler: Any) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                self.handler(conn, self.closed)
            except OSError:
                pass

    def close(self) -> None:
        self.closed.set()
        self.sock.close()


def test_a_server_trickling_its_answer_is_cut_off_at_the_timeout() -> None:
    def trickle(conn: socket.socket, closed: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: ")
        while not closed.is_set():
            conn.sendall(b"a")  # one byte every 50 ms: no single read ever times out
            time.sleep(0.05)

    server = RawServer(trickle)
    try:
        started = time.monotonic()
        with pytest.raises(FetchError, match="took longer"):
            fetch_json(f"http://127.0.0.1:{server.port}/jwks", timeout=0.5)
        assert time.monotonic() - started < 2
    finally:
        server.close()


def test_an_endless_body_is_cut_off_at_the_size_bound() -> None:
    def endless(conn: socket.socket, closed: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[")
        while not closed.is_set():
            conn.sendall(b"0," * 8192)

    server = RawServer(endless)
    try:
        with pytest.raises(FetchError, match="more than"):
            fetch_json(f"http://127.0.0.1:{server.port}/jwks", timeout=5)
    finally:
        server.close()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed(status: int) -> None:
    def redirect(conn: socket.socket, closed: threading.Event) -> None:
        conn.sendall(
            f"HTTP/1.1 {status} Moved\r\nLocation: http://169.254.169.254/latest/meta-data/\r\n"
            "Content-Length: 0\r\n\r\n".encode()
        )

    server = RawServer(redirect)
    try:
        with pytest.raises(FetchError, match=f"HTTP {status}"):
            fetch_json(f"http://127.0.0.1:{server.port}/jwks")
    finally:
        server.close()


def test_nothing_listening_is_a_fetch_error() -> None:
    with pytest.raises(FetchError):
        fetch_json(f"http://127.0.0.1:{free_port()}{REALM}{DISCOVERY}", timeout=1)


def test_bad_options_are_refused_at_construction() -> None:
    with pytest.raises(ConfigError) as caught:
        RemoteKeys(jwks_url="https://a.example/jwks", algorithms=["ES256"], timeout=0)
    assert caught.value.name == "timeout"
    with pytest.raises(ConfigError):
        RemoteKeys(algorithms=["ES256"])  # neither a URL nor an issuer
    with pytest.raises(ConfigError) as caught:
        BearerAuth(issuer="https://a.example", audience="x", ssl_context="yes")  # type: ignore[arg-type]
    assert caught.value.name == "ssl_context"


def test_a_refused_token_is_a_401_even_when_the_keys_are_unreachable(
    issuer: LocalIssuer, clock: Clock
) -> None:
    issuer.stop()
    auth = auth_over(issuer, remote(issuer, clock))
    scope = {"type": "http", "headers": [(b"authorization", f"Bearer {issuer.token()}".encode())]}
    with pytest.raises(RefusedToken) as caught:
        asyncio.run(auth.authenticate(scope))
    assert caught.value.status == 401
    assert caught.value.headers == [(b"www-authenticate", b'Bearer error="invalid_token"')]


# --- HTTPS: certificate checks and proxies ---------------------------------------------------


def self_signed(tmp_path: Path, hostname: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{hostname}.pem", tmp_path / f"{hostname}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class HTTPSJWKS:
    """A JWKS served over TLS on 127.0.0.1 with a certificate for *hostname*."""

    def __init__(self, tmp_path: Path, hostname: str, jwks: dict[str, Any]) -> None:
        self.cert, key = self_signed(tmp_path, hostname)
        body = json.dumps(jwks).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def trusting(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class ConnectProxy:
    """An HTTP CONNECT proxy on loopback that resolves every host to 127.0.0.1."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            line = head.split(b"\r\n", 1)[0].decode()
            self.requests.append(line)
            port = int(line.split()[1].rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port)) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
                back.start()
                _pipe(client, upstream)
                back.join(5)

    def close(self) -> None:
        self.sock.close()


ES_KEY = ec.generate_private_key(ec.SECP256R1())
ES_JWKS = {"keys": [{**public_jwk(ES_KEY.public_key()), "kid": "k", "alg": "ES256"}]}


def test_https_keys_need_a_trusted_certificate(tmp_path: Path, clock: Clock) -> None:
    server = HTTPSJWKS(tmp_path, "localhost", ES_JWKS)
    try:
        url = f"https://localhost:{server.port}/jwks"
        trusted = RemoteKeys(
            jwks_url=url, algorithms=["ES256"], ssl_context=server.trusting(), clock=clock
        )
        fetched = trusted.refetch()
        assert fetched is not None and fetched.result() is True
        assert trusted.get("k", "ES256") is not None
        with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch_json(url)  # the system's CAs do not know this certificate
    finally:
        server.close()


def test_https_keys_go_through_the_configured_proxy(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = HTTPSJWKS(tmp_path, "idp.test", ES_JWKS)  # a name no resolver knows
    proxy = ConnectProxy()
    for name in ("https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy.port}")
    try:
        url = f"https://idp.test:{server.port}/jwks"
        keys = RemoteKeys(
            jwks_url=url, algorithms=["ES256"], ssl_context=server.trusting(), clock=clock
        )
        fetched = keys.refetch()
        assert fetched is not None and fetched.result() is True
        assert [r.rsplit(" ", 1)[0] for r in proxy.requests] == [f"CONNECT idp.test:{server.port}"]
        monkeypatch.setenv("no_proxy", "idp.test")  # now direct: the name does not resolve
        with pytest.raises(FetchError):
            fetch_json(url, ssl_context=server.trusting(), timeout=2)
        assert len(proxy.requests) == 1
    finally:
        proxy.close()
        server.close()
