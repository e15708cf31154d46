"""Rate-limit bypass attempts against a real ``bastion serve``, one test per trick.

The attacker's goal in each: more than 5 failed login attempts per 15 minutes (the auth
rule) or more than the API budget. Requests go through ``http.client`` over real TLS with
the path exactly as written: httpx and browsers normalise ``/./``, ``..`` and escapes away,
which would hide the very spellings under test.

A variant may be handled two ways and both are safe: the path layer refuses it (``400``) so it
never reaches a handler, or it is canonicalised and charged to the same budget (``429`` once
spent). Anything else after the budget is spent — ``401``, ``404``, ``405`` — is a bypass.

The server trusts 127.0.0.1 as a proxy, so each test picks its own client address with
``X-Forwarded-For`` and gets its own budgets; the spoofing tests connect from 127.0.0.2, an
untrusted peer, whose forwarding headers must be ignored.
"""

from __future__ import annotations

import http.client
import itertools
import json
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import Server, start_server

pytestmark = pytest.mark.integration

AUTH_MESSAGE = "Too many authentication attempts"
LOGIN = "/api/v1/auth/login"
API_LIMIT = 30
_clients = itertools.count(1)


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def error(self) -> str | None:
        try:
            error: str | None = json.loads(self.body).get("error")
            return error
        except ValueError:
            return None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("ratelimit-bypass"),
        env={
            "BASTION_TRUSTED_PROXIES": "127.0.0.1",
            "BASTION_API_LIMIT": f"{API_LIMIT}/15m",
            "BASTION_API_SLOWDOWN_DELAY_MS": "0",
        },
    )
    yield srv
    srv.stop()


def new_client() -> str:
    """A client address of our own (documentation range), via the trusted proxy 127.0.0.1."""
    n = next(_clients)
    return f"198.51.{100 + n // 250}.{n % 250 + 1}"


def send(
    server: Server,
    method: str,
    raw_path: str,
    *,
    client: str | None = None,
    headers: dict[str, str] | None = None,
    source: str = "127.0.0.1",
    body: bytes | None = None,
) -> Reply:
    """One request with *raw_path* sent byte for byte, from *source*, over verified TLS."""
    ctx = ssl.create_default_context(cafile=str(server.cert_path))
    conn = http.client.HTTPSConnection(
        server.host, server.port, context=ctx, timeout=15, source_address=(source, 0)
    )
    all_headers = {"Connection": "close", **(headers or {})}
    if client is not None:
        all_headers["X-Forwarded-For"] = client
    if method == "POST":
        if body is None:
            credentials = {"email": "nobody@example.com", "password": "not-the-password-42"}
            body = json.dumps(credentials).encode()
        all_headers["Content-Type"] = "application/json"
    try:
        conn.request(method, raw_path, body=body, headers=all_headers)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def fail_login(server: Server, path: str = LOGIN, **kwargs: Any) -> Reply:
    """A failed login attempt (404 before the login endpoint exists, 401 after: both fail)."""
    reply = send(server, "POST", path, **kwargs)
    assert reply.status < 500, f"{path}: {reply.status} {reply.body!r}"
    return reply


def assert_locked_out(reply: Reply, what: str) -> None:
    assert reply.status == 429, f"{what}: bypass, got {reply.status} {reply.body!r}"
    assert reply.error() == AUTH_MESSAGE
    assert int(reply.headers["Retry-After"]) >= 1


VARIANTS = {
    "path-case": ["/API/v1/auth/login", "/Api/V1/Auth/LOGIN"],
    "trailing-slash": ["/api/v1/auth/login/", "/api/v1/auth/login//"],
    "double-slash": ["/api//v1/auth/login", "//api/v1/auth/login", "/api/v1//auth/login"],
    "dot-segments": [
        "/api/./v1/auth/login",
        "/api/v1/x/../auth/login",
        "/api/v1/auth/%2e/login",
        "/api/v1/auth/x/%2e%2e/login",
    ],
    "encoded-slash": ["/api%2Fv1/auth/login", "/api/v1/auth%2flogin", "/api%252Fv1/auth/login"],
    "encoded-letter-6C": ["/api/v1/auth/%6Cogin", "/api/v1/auth/%6cogin", "/%61pi/v1/auth/login"],
}


@pytest.mark.parametrize("trick", list(VARIANTS))
def test_path_variant_cannot_open_a_fresh_auth_budget(server: Server, trick: str) -> None:
    """Pitfall #5 (outline #13504, coder #27273, parse-server #10501): variants of the login
    path must not reach the handler with budget left, in either order."""
    for variant in VARIANTS[trick]:
        # Budget spent with the canonical spelling: the variant is refused or locked out.
        client = new_client()
        for _ in range(5):
            fail_login(server, client=client)
        reply = send(server, "POST", variant, client=client)
        if reply.status != 400:
            assert_locked_out(reply, f"{variant} after 5 canonical failures")

        # Budget spent with the variant: every variant attempt that was not refused counted.
        client = new_client()
        charged = sum(fail_login(server, variant, client=client).status != 400 for _ in range(5))
        for _ in range(5 - charged):
            fail_login(server, client=client)
        assert_locked_out(fail_login(server, client=client), f"canonical after 5× {variant}")


def test_head_and_get_share_the_api_budget(server: Server) -> None:
    client = new_client()
    for i in range(API_LIMIT):
        reply = send(server, "GET" if i % 2 else "HEAD", "/api/v1/no-such-thing", client=client)
        assert reply.status == 404
    for method in ("HEAD", "GET"):
        reply = send(server, method, "/api/v1/no-such-thing", client=client)
        assert reply.status == 429, f"{method} after {API_LIMIT} mixed HEAD/GET"
        assert reply.headers["X-RateLimit-Remaining"] == "0"


def test_head_and_get_on_the_login_path_count_as_auth_failures(server: Server) -> None:
    client = new_client()
    for method in ("HEAD", "GET", "HEAD", "GET", "HEAD"):
        reply = send(server, method, LOGIN, client=client)
        assert reply.status in (404, 405), reply.status
    assert_locked_out(fail_login(server, client=client), "POST after 5 HEAD/GET failures")


def test_unrouted_api_paths_count(server: Server) -> None:
    """Pitfall #7: 404s under /api/ are charged (a scanner cannot probe for free)."""
    client = new_client()
    for i in range(API_LIMIT):
        assert send(server, "GET", f"/api/scan-{i}", client=client).status == 404
    refused = send(server, "GET", "/api/scan-final", client=client)
    assert refused.status == 429
    assert refused.headers["RateLimit"] == f'"api";r=0;t={refused.headers["Retry-After"]}'


def test_spoofed_x_forwarded_for_from_an_untrusted_peer_is_ignored(server: Server) -> None:
    """Pitfall #1/#3: from 127.0.0.2 (not a trusted proxy) every forged header is ignored."""
    for i in range(5):
        spoof = {"X-Forwarded-For": f"203.0.113.{i + 1}", "Forwarded": f"for=192.0.2.{i + 1}"}
        fail_login(server, headers=spoof, source="127.0.0.2")
    spoof = {"X-Forwarded-For": "203.0.113.99", "X-Real-IP": "203.0.113.98"}
    assert_locked_out(fail_login(server, headers=spoof, source="127.0.0.2"), "6th with new XFF")


def test_client_controlled_left_part_of_x_forwarded_for_is_ignored(server: Server) -> None:
    """Pitfall #2: behind a trusted proxy only the rightmost untrusted hop is the client."""
    real = new_client()
    for i in range(5):
        fail_login(server, client=f"10.66.{i}.1, {real}")
    assert_locked_out(fail_login(server, client=f"10.66.99.1, {real}"), "6th, new left part")


def test_rate_headers_over_the_wire(server: Server) -> None:
    client = new_client()
    reply = fail_login(server, client=client)
    assert reply.headers["RateLimit-Policy"] == '"api";q=30;w=900, "auth";q=5;w=900'
    assert reply.headers["RateLimit"] == '"api";r=29;t=900, "auth";r=4;t=900'
    assert reply.headers["X-RateLimit-Limit"] == "5"
    assert reply.headers["X-RateLimit-Remaining"] == "4"


def test_parallel_wrong_passwords_and_free_successes_end_to_end(server: Server) -> None:
    """Pitfall #10 against the real login: successes are never counted, 20 parallel wrong
    passwords get at most 5 answers from the handler, then even the right password is 429."""
    client = new_client()
    email = f"rl-{next(_clients)}@example.com"
    password = "correct horse battery staple 42!"
    account = json.dumps({"email": email, "password": password}).encode()
    assert send(server, "POST", "/api/v1/auth/register", client=client, body=account).status == 202
    for _ in range(8):  # more than the budget of 5: successes give their charge back
        ok = send(server, "POST", LOGIN, client=client, body=account)
        assert ok.status == 200, ok.body
        assert ok.headers["RateLimit"].endswith('"auth";r=5;t=0')

    wrong = json.dumps({"email": email, "password": "wrong horse battery staple 42!"}).encode()
    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(
            pool.map(lambda _: send(server, "POST", LOGIN, client=client, body=wrong), range(20))
        )
    statuses = sorted(r.status for r in replies)
    assert statuses == [401] * 5 + [429] * 15, statuses
    assert_locked_out(send(server, "POST", LOGIN, client=client, body=account), "right password")
