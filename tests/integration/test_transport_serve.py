"""Transport limits of a real `bastion serve`, from the attacker's side, on both listeners.

Every test runs against the HTTPS listener (real TLS) and the plain-HTTP redirect listener
of one subprocess started with short timeouts (1 s head, 1 s body idle, 2.5 s body, 1 s
keep-alive) and small caps, so that closing "within a bounded window" is checked with socket
timeouts in seconds. Memory and CPU come from /proc.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, start_server
from tests.support import free_port, wait_until
from tests.support_http import (
    Listener,
    Response,
    cpu_seconds,
    exchange,
    listeners,
    parse_response,
    read_until_closed,
    rss_kib,
)

pytestmark = pytest.mark.integration

HEADER_TIMEOUT, BODY_IDLE, BODY_TOTAL, KEEPALIVE = 1.0, 1.0, 2.5, 1.0
PER_CLIENT = 8
# After a refusal the server reads and discards for up to 2 s before the last close.
LINGER = 2.0
SLACK = 1.5

CONTRACT_HEADERS = {
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("transport"),
        env={
            "BASTION_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
            "BASTION_BODY_IDLE_TIMEOUT": str(BODY_IDLE),
            "BASTION_BODY_TIMEOUT": str(BODY_TOTAL),
            "BASTION_KEEPALIVE_TIMEOUT": str(KEEPALIVE),
            "BASTION_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT),
            "BASTION_MAX_CONNECTIONS": "64",
        },
    )
    yield srv
    srv.stop()


@pytest.fixture(params=["https", "redirect"])
def listener(request: pytest.FixtureRequest, server: Server) -> Listener:
    return listeners(server)[request.param]


def assert_refusal(
    server: Server, listener: Listener, data: bytes, status: int, error: str
) -> tuple[Response, dict[str, Any]]:
    """The contract's shape: status, every header, the body, the close, a log line."""
    response, rest = parse_response(data)
    assert response.status == status, data[:300]
    for name, value in CONTRACT_HEADERS.items():
        assert response.header(name) == value, name
    assert response.header("strict-transport-security") == (HSTS if listener.tls else None)
    assert response.header("content-type") == "application/json"
    assert response.header("connection") == "close"
    assert response.header("server") is None
    rid = response.header("x-request-id")
    assert rid is not None and len(rid) == 32
    assert json.loads(response.body) == {"error": error, "requestId": rid}
    assert rest == b""
    line = wait_until(
        lambda: next(
            (ln for ln in server.log().splitlines() if f'"request_id":"{rid}"' in ln), None
        ),
        timeout=5,
        what="the refusal's access-log line",
    )
    logged = json.loads(str(line))
    assert logged["event"] == "access" and logged["status"] == status
    return response, logged


def _healthy(server: Server, listener: Listener) -> None:
    with listener.connect() as sock:
        response = exchange(sock, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert response.status == (200 if listener.tls else 301)


# --- 1. sizes ---------------------------------------------------------------------------------
def _head(size: int | None = None, *, fields: int = 1, target: bytes = b"/healthz") -> bytes:
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: localhost"]
    lines += [b"X-F%d: v" % i for i in range(fields - 1)]
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    if size is not None:
        head = head[:-4] + b"\r\nX-Pad: " + b"a" * (size - len(head) - 9) + b"\r\n\r\n"
        assert len(head) == size
    return head


def test_a_head_of_16_kib_is_served_and_one_byte_more_is_431(
    server: Server, listener: Listener
) -> None:
    with listener.connect() as sock:
        assert exchange(sock, _head(16384)).status in (200, 301)
    with listener.connect() as sock:
        sock.sendall(_head(16385))
        data, _ = read_until_closed(sock, 10)
    assert_refusal(server, listener, data, 431, "Request header fields too large")


def test_100_fields_are_served_and_101_get_431(server: Server, listener: Listener) -> None:
    with listener.connect() as sock:
        assert exchange(sock, _head(fields=100)).status in (200, 301)
    with listener.connect() as sock:
        sock.sendall(_head(fields=101))
        data, _ = read_until_closed(sock, 10)
    assert_refusal(server, listener, data, 431, "Request header fields too large")


def test_a_target_of_8_kib_is_served_and_one_byte_more_is_414(
    server: Server, listener: Listener
) -> None:
    at_limit = b"/healthz?" + b"a" * (8192 - 9)
    with listener.connect() as sock:
        assert exchange(sock, _head(target=at_limit)).status in (200, 301)
    with listener.connect() as sock:
        sock.sendall(_head(target=at_limit + b"a"))
        data, _ = read_until_closed(sock, 10)
    _, logged = assert_refusal(server, listener, data, 414, "URI too long")
    assert logged["method"] == "GET" and logged["path"] == "/healthz"


def test_a_head_streamed_forever_is_refused_at_the_limit_without_memory_or_cpu(
    server: Server, listener: Listener
) -> None:
    """The 400 MB header of the issue: refused after 16 KiB; nothing buffered, nothing burnt."""
    pid = server.process.pid
    rss_before, cpu_before = rss_kib(pid), cpu_seconds(pid)
    sent = 0
    piece = b"a" * 65536
    with listener.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        sock.settimeout(10)
        start = time.monotonic()
        try:
            while sent < 400 * 2**20:
                sock.sendall(piece)
                sent += len(piece)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, TimeoutError):
            pass
        data, _ = read_until_closed(sock, 10)
        elapsed = time.monotonic() - start
    assert sent < 32 * 2**20  # stopped reading: linger budget 1 MiB + kernel socket buffers
    assert elapsed < 5
    if data:  # the 431 reaches a client that stops sending and reads; a reset may beat it
        assert parse_response(data)[0].status == 431
    assert rss_kib(pid) - rss_before < 8 * 1024
    assert cpu_seconds(pid) - cpu_before < 1.0
    _healthy(server, listener)


# --- 2. timeouts ------------------------------------------------------------------------------
def test_a_connection_that_sends_nothing_gets_408_at_the_header_timeout(
    server: Server, listener: Listener
) -> None:
    with listener.connect() as sock:  # TLS: the handshake is done, then nothing
        data, elapsed = read_until_closed(sock, HEADER_TIMEOUT + LINGER + SLACK + 2)
    assert HEADER_TIMEOUT - 0.3 < elapsed < HEADER_TIMEOUT + LINGER + SLACK
    assert_refusal(server, listener, data, 408, "Request timeout")


def test_a_tls_handshake_never_started_is_closed_at_the_header_timeout(server: Server) -> None:
    with listeners(server)["https"].connect(handshake=False) as raw:
        data, elapsed = read_until_closed(raw, HEADER_TIMEOUT + SLACK + 2)
    assert data == b""
    assert HEADER_TIMEOUT - 0.3 < elapsed < HEADER_TIMEOUT + SLACK


def test_a_tls_handshake_left_half_done_is_closed_at_the_header_timeout(server: Server) -> None:
    # A ClientHello, then silence: the server's flight is read, the handshake never finishes.
    ctx = ssl.create_default_context(cafile=str(server.cert_path))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(outgoing.read())
        data, elapsed = read_until_closed(raw, HEADER_TIMEOUT + SLACK + 2)
    assert data  # the server's hello
    assert elapsed < HEADER_TIMEOUT + SLACK


def test_a_head_trickled_byte_by_byte_still_times_out(server: Server, listener: Listener) -> None:
    """Slowloris: progress does not extend the head's deadline."""
    head = _head()
    line_end = head.index(b"\n") + 1
    with listener.connect() as sock:
        start = time.monotonic()
        sock.sendall(head[:line_end])
        sock.settimeout(0.25)
        received = b""
        for byte in head[line_end:-1]:
            try:
                sock.sendall(bytes([byte]))
                received += sock.recv(65536)  # waits up to 0.25 s: paces the trickle
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                break
            if received:
                break
        rest, _ = read_until_closed(sock, LINGER + SLACK + 2)
        elapsed = time.monotonic() - start
    assert elapsed < HEADER_TIMEOUT + LINGER + SLACK
    _, logged = assert_refusal(server, listener, received + rest, 408, "Request timeout")
    assert logged["path"] == "/healthz"  # the request line had arrived: it is logged


def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout(
    server: Server, listener: Listener
) -> None:
    with listener.connect() as sock:
        exchange(sock, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data, elapsed = read_until_closed(sock, KEEPALIVE + SLACK + 2)
    assert data == b""  # no 408 on an idle connection: it simply closes
    assert KEEPALIVE - 0.3 < elapsed < KEEPALIVE + SLACK


def test_a_partial_head_after_a_response_gets_408_counted_from_that_response(
    server: Server, listener: Listener
) -> None:
    with listener.connect() as sock:
        exchange(sock, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        data, elapsed = read_until_closed(sock, HEADER_TIMEOUT + LINGER + SLACK + 2)
    assert elapsed < HEADER_TIMEOUT + LINGER + SLACK
    assert_refusal(server, listener, data, 408, "Request timeout")


def _post_head(length: int) -> bytes:
    return (
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % length
    )


def test_a_body_that_stops_arriving_gets_408_after_the_body_idle_timeout(server: Server) -> None:
    https = listeners(server)["https"]
    with https.connect() as sock:
        sock.sendall(_post_head(100) + b'{"email":')
        data, elapsed = read_until_closed(sock, BODY_IDLE + LINGER + SLACK + 2)
    assert BODY_IDLE - 0.3 < elapsed < BODY_IDLE + LINGER + SLACK
    _, logged = assert_refusal(server, https, data, 408, "Request timeout")
    assert logged["method"] == "POST" and logged["path"] == "/api/v1/auth/login"


def test_a_body_trickled_too_slowly_gets_408_at_the_body_timeout(server: Server) -> None:
    https = listeners(server)["https"]
    with https.connect() as sock:
        sock.sendall(_post_head(1000))
        start = time.monotonic()
        sock.settimeout(0.4)
        received = b""
        while time.monotonic() - start < BODY_TOTAL + SLACK:
            try:
                sock.sendall(b" ")
                received += sock.recv(65536)  # paces the trickle: one byte per 0.4 s
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                break
            if received:
                break
        rest, _ = read_until_closed(sock, LINGER + SLACK + 2)
        elapsed = time.monotonic() - start
    assert BODY_TOTAL - 0.3 < elapsed < BODY_TOTAL + LINGER + SLACK
    assert_refusal(server, https, received + rest, 408, "Request timeout")


def test_on_the_redirect_port_a_stalled_body_closes_after_the_answer(server: Server) -> None:
    """The redirect listener answers 403 at once; the body that never comes ends in a close."""
    redirect = listeners(server)["redirect"]
    with redirect.connect() as sock:
        response = exchange(sock, _post_head(100))
        assert response.status == 403
        data, elapsed = read_until_closed(sock, BODY_IDLE + SLACK + 2)
    assert data == b""  # a response was sent: no 408 after it
    assert elapsed < BODY_IDLE + SLACK


# --- 3. connection caps -----------------------------------------------------------------------
def _hold(listener: Listener, count: int, source: str) -> list[socket.socket]:
    return [listener.connect(source=source, timeout=5) for _ in range(count)]


def test_a_client_holding_its_cap_is_refused_while_another_address_is_served(
    server: Server, listener: Listener
) -> None:
    # One hostile address per listener: the caps are per process, and a closed connection
    # is released when the server has seen the close, a moment after the client's close.
    hostile = {"https": "127.0.0.1", "redirect": "127.0.0.5"}[listener.name]
    held = _hold(listener, PER_CLIENT, hostile)
    try:
        start = time.monotonic()
        for _ in range(5):
            with listener.connect(source=hostile, handshake=False) as extra:
                data, _ = read_until_closed(extra, 3)
            assert data == b""
        assert time.monotonic() - start < 3  # closed at once, not after a timeout
        # The hostile client's neighbour on another address is served meanwhile.
        with listener.connect(source="127.0.0.2") as other:
            other_response = exchange(other, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert other_response.status in (200, 301)
    finally:
        for sock in held:
            sock.close()
    warnings = [
        ln for ln in server.log().splitlines() if "BASTION_MAX_CONNECTIONS_PER_CLIENT" in ln
    ]
    assert warnings and len(warnings) <= 2  # rate-limited: not one line per connection
    # Once they close, the address is served again.
    wait_until(lambda: _served_from(listener, hostile), timeout=HEADER_TIMEOUT + 5)


def _served_from(listener: Listener, source: str) -> bool:
    try:
        with listener.connect(source=source) as sock:
            return exchange(sock, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").status in (
                200,
                301,
            )
    except (OSError, AssertionError):
        return False


def test_the_process_cap_closes_connections_over_it_from_any_address(tmp_path: Path) -> None:
    srv = start_server(tmp_path, env={"BASTION_MAX_CONNECTIONS": "4"})
    try:
        https = listeners(srv)["https"]
        held = [https.connect(source=f"127.0.0.{n}") for n in range(2, 6)]
        try:
            with https.connect(source="127.0.0.9", handshake=False) as extra:
                data, elapsed = read_until_closed(extra, 3)
            assert data == b"" and elapsed < 1
        finally:
            for sock in held:
                sock.close()
        wait_until(lambda: _served_from(https, "127.0.0.9"), timeout=10)
        assert "BASTION_MAX_CONNECTIONS)" in srv.log()
    finally:
        srv.stop()


def test_1100_idle_connections_from_one_client_no_longer_starve_https(
    server: Server,
) -> None:
    """The issue's attack: a flood of idle connections; the cap keeps descriptors free."""
    https = listeners(server)["https"]
    opened: list[socket.socket] = []
    try:
        for _ in range(1100):
            try:
                opened.append(https.connect(source="127.0.0.3", handshake=False, timeout=2))
            except OSError:
                break
        with httpx.Client(verify=server.verify, timeout=5) as client:
            assert client.get(f"{server.url}/healthz").status_code == 200
        open_fds = len(list(Path(f"/proc/{server.process.pid}/fd").iterdir()))
        assert open_fds < 200
    finally:
        for sock in opened:
            sock.close()


def test_the_open_file_limit_is_raised_to_what_the_cap_needs(server: Server) -> None:
    limits = Path(f"/proc/{server.process.pid}/limits").read_text()
    soft = next(ln for ln in limits.splitlines() if ln.startswith("Max open files")).split()[3]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert int(soft) >= min(64 + 128, hard)


def test_a_hard_open_file_limit_too_low_is_said_at_start(tmp_path: Path) -> None:
    def low_limit() -> None:  # runs in the child before exec: its hard limit, not ours
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env["BASTION_DATA_DIR"] = str(tmp_path / "data")
    log_path = tmp_path / "low.log"
    command = [sys.executable, "-m", "bastion", "serve", "--port", str(free_port())]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--http-port", "0"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            preexec_fn=low_limit,
        )
    try:
        wait_until(lambda: "open-file limit" in log_path.read_text(), timeout=30)
        line = next(ln for ln in log_path.read_text().splitlines() if "open-file limit" in ln)
        assert "BASTION_MAX_CONNECTIONS=4096" in line and "at most 128 connections" in line
        assert "ulimit -Hn" in line
        assert process.poll() is None  # it says so, and serves
    finally:
        process.terminate()
        process.wait(15)


# --- 4. refusals through the stack --------------------------------------------------------
def test_track_gets_405_with_allow_and_every_header(server: Server, listener: Listener) -> None:
    with listener.connect() as sock:
        sock.sendall(b"TRACK /api/v1/orders HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data, _ = read_until_closed(sock, 10)
    response, logged = assert_refusal(server, listener, data, 405, "Method not allowed")
    assert logged["method"] == "TRACK" and logged["path"] == "/api/v1/orders"
    if listener.tls:
        assert response.header("allow") == "GET, HEAD, POST"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost : localhost\r\n\r\n",  # space before the colon
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX: a\r\n b\r\n\r\n",  # obs-fold
        b"GET / HTTP/1.1\nHost: localhost\n\n",  # bare LF
        b"GET /\xff HTTP/1.1\r\nHost: localhost\r\n\r\n",  # invalid UTF-8 in the target
    ],
    ids=["space-before-colon", "obs-fold", "bare-lf", "invalid-utf8"],
)
def test_malformed_requests_get_400_in_the_contracts_shape(
    server: Server, listener: Listener, request_bytes: bytes
) -> None:
    with listener.connect() as sock:
        sock.sendall(request_bytes)
        data, _ = read_until_closed(sock, 10)
    assert_refusal(server, listener, data, 400, "Bad request")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/api/v1/orders", 401), ("GET", "/no-such-path", 404), ("PUT", "/healthz", 405)],
)
def test_a_websocket_handshake_is_answered_as_the_same_request_without_it(
    server: Server, method: str, path: str, status: int
) -> None:
    https = listeners(server)["https"]
    handshake = (
        f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    with https.connect() as sock:
        sock.sendall(handshake)
        data, _ = read_until_closed(sock, 10)
    response: Response = parse_response(data)[0]
    assert response.status == status
    for name, value in CONTRACT_HEADERS.items():
        assert response.header(name) == value
    assert response.header("strict-transport-security") == HSTS
    rid = response.header("x-request-id")
    assert json.loads(response.body)["requestId"] == rid
    assert response.header("connection") == "close"  # the upgrade is not taken; then close
    if status == 401:
        assert response.header("www-authenticate") == "Bearer"
    if status == 405:
        assert response.header("allow") == "GET, HEAD"
    wait_until(lambda: f'"request_id":"{rid}"' in server.log(), timeout=5, what="its log line")


def test_a_websocket_handshake_on_the_redirect_port_is_redirected(server: Server) -> None:
    redirect = listeners(server)["redirect"]
    with redirect.connect() as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\n"
            b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        data, _ = read_until_closed(sock, 10)
    response = parse_response(data)[0]
    assert response.status == 301 and response.header("x-request-id")


# --- pipelining ---------------------------------------------------------------------------
def test_pipelined_requests_are_answered_in_order(server: Server, listener: Listener) -> None:
    one = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: first\r\n\r\n"
    two = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: second\r\n\r\n"
    with listener.connect() as sock:
        sock.sendall(one + two + _head(16385))
        data, _ = read_until_closed(sock, 10)
    first, rest = parse_response(data)
    second, rest = parse_response(rest)
    third, rest = parse_response(rest)
    assert [first.header("x-request-id"), second.header("x-request-id")] == ["first", "second"]
    assert third.status == 431 and rest == b""


def test_a_request_right_after_a_body_is_answered_in_order(
    server: Server, listener: Listener
) -> None:
    post = _post_head(2) + b"{}"
    get = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    with listener.connect() as sock:
        sock.sendall(post + get)
        data, _ = read_until_closed(sock, 10)
    first, rest = parse_response(data)
    second, rest = parse_response(rest)
    assert first.status == (400 if listener.tls else 403)  # an empty login; plain HTTP
    assert second.status == (200 if listener.tls else 301) and rest == b""
