"""The protective layer as a client meets it on a real `bastion serve`: every status, headers."""

from __future__ import annotations

import json
import re
import socket
import ssl
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server, start_server

pytestmark = pytest.mark.integration

SECURITY_HEADERS = {
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("layer"),
        env={"BASTION_API_LIMIT": "100000/15m", "BASTION_AUTH_LIMIT": "100000/15m"},
    )
    yield srv
    srv.stop()


def assert_protected(response: httpx.Response, *, error: str | None = None) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status_code)
    assert "server" not in response.headers
    assert "x-powered-by" not in response.headers
    rid = response.headers["x-request-id"]
    assert REQUEST_ID.match(rid)
    if error is not None:
        assert response.json() == {"error": error, "requestId": rid}


def raw_request(server: Server, head: bytes) -> bytes:
    """Send bytes exactly as written (httpx would normalise the path) and return the reply."""
    ctx = ssl.create_default_context(cafile=str(server.cert_path))
    with (
        socket.create_connection((server.host, server.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(head)
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_200(server: Server) -> None:
    with server.client() as client:
        assert_protected(client.get("/healthz"))


def test_404_for_paths_outside_the_contract(server: Server) -> None:
    with server.client() as client:
        for path in ("/nope", "/docs", "/openapi.json", "/metrics", "/admin", "/.env"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert_protected(response, error="Not found")


def test_405_lists_every_method_of_the_path(server: Server) -> None:
    with server.client() as client:
        response = client.put("/api/v1/orders/7a1e1f5e-3b8c-4f2a-9d3e-1b2c3d4e5f60", json={})
    assert response.status_code == 405
    assert_protected(response, error="Method not allowed")
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "HEAD", "DELETE"} <= allowed
    assert "PUT" not in allowed and "TRACE" not in allowed


@pytest.mark.parametrize("method", ["TRACE", "TRACK"])
def test_trace_and_track_are_refused_everywhere(server: Server, method: str) -> None:
    with server.client() as client:
        for path in ("/", "/healthz", "/api/v1/orders"):
            response = client.request(method, path)
            assert response.status_code == 405, (method, path)
            assert_protected(response)


def test_options_is_not_served_without_cors(server: Server) -> None:
    with server.client() as client:
        response = client.options("/api/v1/orders", headers={"Origin": "https://evil.example"})
    assert response.status_code == 405
    assert not [h for h in response.headers if h.startswith("access-control-")]


def test_413_while_streaming(server: Server) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"a":"' + b"x" * 70_000 + b'"}'

    with server.client() as client:
        response = client.post(
            "/api/v1/orders", content=body(), headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 413
    assert_protected(response, error="Request body too large")


def test_415_without_json(server: Server) -> None:
    with server.client() as client:
        response = client.post("/api/v1/orders", data={"productId": "x"})
    assert response.status_code == 415
    assert_protected(response, error="Unsupported media type")


@pytest.mark.parametrize(
    ("body", "message"),
    [(b'{"a": ', "Malformed JSON"), (b"[" * 40 + b"]" * 40, "JSON nested too deeply")],
)
def test_400_for_malformed_or_deep_json(server: Server, body: bytes, message: str) -> None:
    with server.client() as client:
        response = client.post(
            "/api/v1/orders", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert_protected(response, error=message)


@pytest.mark.parametrize(
    "path",
    [b"/api%2Fv1/orders", b"/api//v1/orders", b"/api/v1/./orders", b"/api/v1/x/../orders"],
)
def test_path_variants_are_refused_not_routed(server: Server, path: bytes) -> None:
    reply = raw_request(
        server, b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert reply.startswith(b"HTTP/1.1 400 "), reply[:80]
    assert b'"error":"Invalid path"' in reply


def test_trailing_slash_is_the_same_resource_not_a_redirect(server: Server) -> None:
    with server.client() as client:
        response = client.get("/healthz/")
    assert response.status_code == 200
    assert "location" not in response.headers


def test_client_request_id_is_echoed_only_when_safe(server: Server) -> None:
    with server.client() as client:
        good = client.get("/healthz", headers={"X-Request-ID": "trace-123.abc_DEF"})
        long = client.get("/healthz", headers={"X-Request-ID": "a" * 65})
        spaced = client.get("/healthz", headers={"X-Request-ID": "<script>alert(1)</script>"})
    assert good.headers["x-request-id"] == "trace-123.abc_DEF"
    for response in (long, spaced):
        assert REQUEST_ID.match(response.headers["x-request-id"])
        assert response.headers["x-request-id"] not in ("a" * 65, "<script>alert(1)</script>")


def _parse_reply(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    ("request_line", "status", "message"),
    [
        (b"TRACK /healthz HTTP/1.1", 405, "Method not allowed"),  # llhttp does not know TRACK
        (b"BREW /api/v1/orders?x=1 HTTP/1.1", 405, "Method not allowed"),
        (b"GET /\x01 HTTP/1.1", 400, "Bad request"),
    ],
)
def test_requests_the_parser_refuses_still_get_the_contract(
    server: Server, request_line: bytes, status: int, message: str
) -> None:
    reply = raw_request(server, request_line + b"\r\nHost: localhost\r\n\r\n")
    code, headers, body = _parse_reply(reply)
    assert code == status
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    assert REQUEST_ID.match(headers["x-request-id"])
    assert json.loads(body) == {"error": message, "requestId": headers["x-request-id"]}
    if status == 405:  # RFC 9110 §15.5.6: a 405 lists what the path does serve
        path = request_line.split()[1].split(b"?")[0]
        expected = {b"/healthz": "GET, HEAD", b"/api/v1/orders": "GET, HEAD, POST"}[path]
        assert headers["allow"] == expected


def test_access_log_never_holds_credentials(server: Server) -> None:
    secret = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"
    with server.client() as client:
        client.get(
            f"/api/v1/orders?access_token={secret}",
            headers={"Authorization": f"Bearer {secret}", "Cookie": f"refresh_token={secret}"},
        )
        client.get("/healthz")  # the log line of the first request is written before this one
    log = server.log()
    assert "/api/v1/orders" in log
    assert secret not in log
    assert "c2lnbmF0dXJl" not in log
