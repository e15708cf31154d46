"""HTTPSOnlyMiddleware and redirect_app: 301 for GET/HEAD, 403 otherwise, no open redirect."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bastion.errors import ConfigError
from bastion.middleware.https import HTTPSOnlyMiddleware, redirect_app
from tests.middleware.rawasgi import Message, call, recorder


async def plain(
    method: str = "GET",
    raw_path: bytes | str = b"/",
    *,
    host: str | None = "127.0.0.1:8080",
    port: int = 8443,
    **kwargs: Any,
) -> Any:
    headers = kwargs.pop("headers", [])
    if host is not None:
        headers = [("host", host), *headers]
    app = redirect_app(port, allowed_hosts=kwargs.pop("allowed_hosts", None))
    return await call(
        app, method, raw_path, headers=headers, scheme="http", default_host=False, **kwargs
    )


async def test_contract_example_redirect() -> None:
    result = await plain("GET", b"/api/v1/orders", query=b"limit=5&cursor=abc")
    assert result.status == 301
    assert result.header("location") == "https://127.0.0.1:8443/api/v1/orders?limit=5&cursor=abc"
    assert result.header("content-length") == "0"
    assert result.body == b""
    assert result.header("strict-transport-security") is None  # RFC 6797 §7.2


async def test_head_is_redirected_too() -> None:
    result = await plain("HEAD", b"/healthz")
    assert result.status == 301
    assert result.header("location") == "https://127.0.0.1:8443/healthz"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"])
async def test_body_methods_refused_with_403(method: str) -> None:
    """A redirect would make the client re-send its (already exposed) body."""
    result = await plain(method, b"/api/v1/auth/login", body=b'{"password":"x"}')
    assert result.status == 403
    assert result.json() == {"error": "HTTPS required", "requestId": ""}
    assert result.header("location") is None


async def test_raw_path_percent_encoding_preserved() -> None:
    result = await plain("GET", b"/a%2Fb/%6Cogin%20x", query=b"q=%26")
    assert result.header("location") == "https://127.0.0.1:8443/a%2Fb/%6Cogin%20x?q=%26"


async def test_default_port_omitted_and_host_port_replaced() -> None:
    result = await plain("GET", b"/x", host="Example.COM:80", port=443)
    assert result.header("location") == "https://example.com/x"
    result = await plain("GET", b"/x", host="localhost", port=9443)
    assert result.header("location") == "https://localhost:9443/x"


async def test_ipv6_host() -> None:
    result = await plain("GET", b"/x", host="[::1]:8080")
    assert result.header("location") == "https://[::1]:8443/x"


async def test_double_slash_path_cannot_become_a_protocol_relative_redirect() -> None:
    result = await plain("GET", b"//evil.example/x")
    assert result.header("location") == "https://127.0.0.1:8443//evil.example/x"


async def test_unsafe_bytes_in_path_are_escaped() -> None:
    result = await plain("GET", b"/a b\xff", query=b"x=\r\n")
    assert result.header("location") == "https://127.0.0.1:8443/a%20b%FF?x=%0D%0A"


@pytest.mark.parametrize(
    "host",
    [
        None,  # absent
        "",
        "evil.example@127.0.0.1",  # userinfo
        "127.0.0.1/evil",
        "127.0.0.1:8080/x",
        "a b",
        "host:port",
        "host:99999",
        "[::1",
        "[not:v6:::::]",
        "exa_mple.com",
        "-bad.com",
        "\u00e9vil.com",
        "evil.com:80:80",
    ],
)
async def test_invalid_host_refused_not_redirected(host: str | None) -> None:
    result = await plain("GET", b"/x", host=host)
    assert result.status == 400
    assert result.json() == {"error": "Invalid Host header", "requestId": ""}
    assert result.header("location") is None


async def test_two_host_headers_refused() -> None:
    result = await plain("GET", b"/x", headers=[("host", "evil.example")])
    assert result.status == 400


async def test_allowed_hosts() -> None:
    allowed = ["localhost", "127.0.0.1", "[::1]"]
    result = await plain("GET", b"/x", host="evil.example", allowed_hosts=allowed)
    assert result.status == 400
    result = await plain("GET", b"/x", host="LOCALHOST:8080", allowed_hosts=allowed)
    assert result.header("location") == "https://localhost:8443/x"
    result = await plain("GET", b"/x", host="[::1]:8080", allowed_hosts=allowed)
    assert result.status == 301


async def test_middleware_passes_https_and_refuses_proxy_resolved_http() -> None:
    inner, seen = recorder()
    app = HTTPSOnlyMiddleware(inner, https_port=8443)
    result = await call(app, "POST", b"/api/v1/orders", scheme="https")
    assert result.status == 200 and len(seen) == 1
    result = await call(app, "GET", b"/api/v1/orders", scheme="http", headers=[("host", "a.b")])
    assert result.status == 301
    assert result.header("location") == "https://a.b:8443/api/v1/orders"
    result = await call(app, "POST", b"/api/v1/orders", scheme="http")
    assert result.status == 403
    assert len(seen) == 1  # the app never saw the plain-HTTP requests


async def test_redirect_app_over_httpx() -> None:
    transport = httpx.ASGITransport(app=redirect_app(8443))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
        response = await client.get("/healthz?x=1")
        assert response.status_code == 301
        assert response.headers["location"] == "https://127.0.0.1:8443/healthz?x=1"
        response = await client.post("/api/v1/auth/login", json={"password": "p"})
        assert response.status_code == 403


async def test_redirect_app_lifespan_and_websocket() -> None:
    app = redirect_app()
    incoming: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    sent.clear()
    await app({"type": "websocket"}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


@pytest.mark.parametrize(
    "options",
    [
        {"https_port": 0},
        {"https_port": 70000},
        {"https_port": "8443"},
        {"https_port": True},
        {"allowed_hosts": "localhost"},
        {"allowed_hosts": ["localhost:8080"]},
        {"allowed_hosts": ["a b"]},
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any]) -> None:
    inner, _ = recorder()
    with pytest.raises(ConfigError):
        HTTPSOnlyMiddleware(inner, **options)
