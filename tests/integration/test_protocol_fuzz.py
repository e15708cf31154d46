"""Malformed HTTP at the socket level against a real `bastion serve`, on both listeners.

A curated corpus (broken request lines, invalid UTF-8, Content-Length / Transfer-Encoding
tricks, obs-fold, chunk-size overflow, bare LF and CR, partial requests, pipelining) plus
seeded random mutations of valid requests. Every case must end, within the server's own
timeouts, in a 4xx or a closed connection — never a 5xx, never a hang — and the server must
keep serving with bounded memory and no traceback in its log.

``BASTION_FUZZ_EXAMPLES`` sets the number of random mutations per listener (small in the
suite; ``make fuzz`` runs 2000).
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import Server, start_server
from tests.support_http import (
    Listener,
    exchange,
    listeners,
    parse_response,
    read_until_closed,
    rss_kib,
)

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("BASTION_FUZZ_EXAMPLES", "24"))
HEADER_TIMEOUT, BODY_IDLE, BODY_TOTAL = 1.0, 1.0, 2.0
# Longest a case may take: a body trickle to the body timeout, the linger, some slack.
CASE_LIMIT = HEADER_TIMEOUT + BODY_TOTAL + 2.0 + 3.0

H = b"Host: localhost\r\n"
LOGIN = b"POST /api/v1/auth/login HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\n"

#: Malformed requests: each must get a 4xx or a closed connection (after any valid
#: responses before it, for the pipelined cases).
CORPUS: dict[str, bytes] = {
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(40)),
    "no-method": b" / HTTP/1.1\r\n" + H + b"\r\n",
    "no-target": b"GET  HTTP/1.1\r\n" + H + b"\r\n",
    "bad-version": b"GET / HTTP/9.9\r\n" + H + b"\r\n",
    "version-garbage": b"GET / HTTP/1.1x\r\n" + H + b"\r\n",
    "lowercase-method": b"get / HTTP/1.1\r\n" + H + b"\r\n",
    "unknown-method": b"FROBNICATE / HTTP/1.1\r\n" + H + b"\r\n",
    "track": b"TRACK / HTTP/1.1\r\n" + H + b"\r\n",
    "trace": b"TRACE / HTTP/1.1\r\n" + H + b"\r\n",
    "nul-in-target": b"GET /\x00 HTTP/1.1\r\n" + H + b"\r\n",
    "invalid-utf8-target": b"GET /\xc3\x28 HTTP/1.1\r\n" + H + b"\r\n",
    "invalid-utf8-header": b"GET /x HTTP/1.1\r\n" + H + b"X-A: \xff\xfe\x00\r\n\r\n",
    "overlong-utf8": b"GET /\xc0\xaf HTTP/1.1\r\n" + H + b"\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost : localhost\r\n\r\n",
    "no-colon": b"GET / HTTP/1.1\r\n" + H + b"NoColonHere\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n",
    "bare-lf": b"GET / HTTP/1.1\n" + H.replace(b"\r\n", b"\n") + b"\n",
    "bare-cr": b"GET / HTTP/1.1\r" + H.replace(b"\r\n", b"\r") + b"\r",
    "cr-in-value": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n",
    "duplicate-content-length": LOGIN + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
    "conflicting-content-length": LOGIN + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}x",
    "content-length-list": LOGIN + b"Content-Length: 2, 2\r\n\r\n{}",
    "negative-content-length": LOGIN + b"Content-Length: -1\r\n\r\n",
    "plus-content-length": LOGIN + b"Content-Length: +2\r\n\r\n{}",
    "huge-content-length": LOGIN + b"Content-Length: 99999999999999999999999\r\n\r\n",
    "cl-and-te": LOGIN + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-and-cl": LOGIN + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
    "te-gzip": LOGIN + b"Transfer-Encoding: gzip\r\n\r\n",
    "te-chunked-twice": LOGIN + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
    b"\r\n0\r\n\r\n",
    "te-obfuscated": LOGIN + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te-space": LOGIN + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "chunk-size-overflow": LOGIN + b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n",
    "chunk-size-garbage": LOGIN + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
    "chunk-bare-lf": LOGIN + b"Transfer-Encoding: chunked\r\n\r\n2\n{}\n0\n\n",
    "chunk-missing-crlf": LOGIN + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}0\r\n\r\n",
    "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "connect": b"CONNECT localhost:443 HTTP/1.1\r\n" + H + b"\r\n",
    "partial-request-line": b"GET /healthz HT",
    "partial-headers": b"GET /healthz HTTP/1.1\r\n" + H,
    "partial-body": LOGIN + b"Content-Length: 50\r\n\r\n{",
    "partial-chunk": LOGIN + b"Transfer-Encoding: chunked\r\n\r\n10\r\nabc",
    "only-crlfs": b"\r\n" * 64,
    "head-too-large": b"GET / HTTP/1.1\r\n" + H + b"X-A: " + b"a" * 20000 + b"\r\n\r\n",
    "too-many-fields": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n" * 150 + b"\r\n",
    "uri-too-long": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n",
    "pipelined-then-garbage": b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n\x00\x01garbage\r\n\r\n",
    "pipelined-then-partial": b"GET /healthz HTTP/1.1\r\n" + H + b"\r\nGET /healthz HTTP/1.1\r\n",
    "pipelined-after-body": LOGIN + b"Content-Length: 2\r\n\r\n{}GET /x\x00 HTTP/1.1\r\n\r\n",
    "smuggle-cl-te-pipelined": LOGIN + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /admin HTTP/1.1\r\n" + H + b"\r\n",
    "smuggle-te-cl-pipelined": LOGIN + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
    b"8\r\nSMUGGLED\r\n0\r\n\r\n",
}

VALID = [
    b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /api/v1/orders?limit=5 HTTP/1.1\r\n" + H + b"Authorization: Bearer x\r\n\r\n",
    LOGIN + b"Content-Length: 2\r\n\r\n{}",
    LOGIN + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
]
_NASTY = [b"\r", b"\n", b"\x00", b"\xff", b" ", b":", b"\t", b"\r\n", b"\r\n\r\n", b"%", b"\x7f"]


def _mutations(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        data = bytearray(rng.choice(VALID))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) + 1)
            kind = rng.randrange(5)
            if kind == 0:
                data[at:at] = rng.choice(_NASTY)
            elif kind == 1 and data:
                data[min(at, len(data) - 1)] = rng.randrange(256)
            elif kind == 2:
                del data[at : at + rng.randint(1, 8)]
            elif kind == 3:
                data = data[:at]  # truncated: a partial request
            else:
                data[at:at] = data[: rng.randint(0, len(data))]  # duplicated prefix
        out.append(bytes(data))
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("fuzz"),
        env={
            "BASTION_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
            "BASTION_BODY_IDLE_TIMEOUT": str(BODY_IDLE),
            "BASTION_BODY_TIMEOUT": str(BODY_TOTAL),
            "BASTION_KEEPALIVE_TIMEOUT": "1",
            "BASTION_AUTH_LIMIT": "100000/15m",  # refusals of login bodies must not turn 429
            "BASTION_API_LIMIT": "100000/15m",
            "BASTION_API_SLOWDOWN_AFTER": "100000",
        },
    )
    yield srv
    srv.stop()


def _send(listener: Listener, data: bytes) -> tuple[list[int], float]:
    """Statuses of every response received, and the seconds until the server closed."""
    with listener.connect(timeout=CASE_LIMIT) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError, ssl.SSLError):
            sock.sendall(data)
        received, elapsed = read_until_closed(sock, CASE_LIMIT)
    statuses = []
    rest = received
    while rest:
        response, rest = parse_response(rest)
        statuses.append(response.status)
    return statuses, elapsed


def _run(server: Server, cases: dict[str, bytes]) -> dict[str, dict[str, tuple[list[int], float]]]:
    results: dict[str, dict[str, tuple[list[int], float]]] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for name, listener in listeners(server).items():
            futures = {case: pool.submit(_send, listener, data) for case, data in cases.items()}
            results[name] = {case: future.result() for case, future in futures.items()}
    return results


def _alive(server: Server) -> None:
    for listener in listeners(server).values():
        with listener.connect() as sock:
            response = exchange(sock, b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n")
        assert response.status == (200 if listener.tls else 301)


def test_fuzz_corpus_every_malformed_request_gets_a_4xx_or_a_close(server: Server) -> None:
    rss_before = rss_kib(server.process.pid)
    results = _run(server, CORPUS)
    for listener_name, by_case in results.items():
        for case, (statuses, elapsed) in by_case.items():
            where = f"{listener_name}/{case}: {statuses} in {elapsed:.1f}s"
            assert all(status < 500 for status in statuses), where
            assert not statuses or 400 <= statuses[-1] < 500, where
            assert elapsed < CASE_LIMIT, where
    _alive(server)
    assert rss_kib(server.process.pid) - rss_before < 20 * 1024
    log = server.log()
    assert "Traceback" not in log and "Exception in ASGI application" not in log


def test_fuzz_request_smuggling_never_reaches_a_second_request(server: Server) -> None:
    """CL+TE in either order is refused outright (llhttp), so no smuggled request is served."""
    results = _run(
        server,
        {
            "cl-te": CORPUS["smuggle-cl-te-pipelined"],
            "te-cl": CORPUS["smuggle-te-cl-pipelined"],
        },
    )
    for by_case in results.values():
        for statuses, _ in by_case.values():
            assert statuses == [400]


def test_fuzz_random_mutations_never_get_a_5xx_or_hang(server: Server) -> None:
    cases = {f"mutation-{i}": data for i, data in enumerate(_mutations(12, EXAMPLES))}
    rss_before = rss_kib(server.process.pid)
    results = _run(server, cases)
    for listener_name, by_case in results.items():
        for case, (statuses, elapsed) in by_case.items():
            where = f"{listener_name}/{case} {cases[case][:80]!r}: {statuses} in {elapsed:.1f}s"
            assert all(status < 500 for status in statuses), where
            assert elapsed < CASE_LIMIT, where
    _alive(server)
    assert rss_kib(server.process.pid) - rss_before < 20 * 1024
    assert "Traceback" not in server.log()


def test_fuzz_a_connection_pool_of_half_open_sockets_does_not_block_others(
    server: Server,
) -> None:
    """Clients that connect and vanish mid-request: the server keeps serving the rest."""
    https = listeners(server)["https"]
    for data in (b"GET /healthz HT", LOGIN + b"Content-Length: 10\r\n\r\n{"):
        for _ in range(20):
            with https.connect() as sock:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_RDWR)
    _alive(server)
