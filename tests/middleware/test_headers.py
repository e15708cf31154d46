"""SecurityHeadersMiddleware: exact values on every response, HSTS only over HTTPS."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bastion.errors import ConfigError
from bastion.middleware.headers import SecurityHeadersMiddleware
from tests.middleware.rawasgi import (
    Message,
    Receive,
    Result,
    Scope,
    Send,
    call,
    never_receive,
    recorder,
)

CONTRACT = {
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"


def assert_contract_headers(result: Result, *, hsts: str | None) -> None:
    for name, value in CONTRACT.items():
        assert result.header(name) == value, name
    assert result.header("strict-transport-security") == hsts
    assert result.header("server") is None
    assert result.header("x-powered-by") is None


@pytest.mark.parametrize("status", [200, 204, 301, 400, 404, 405, 413, 415, 429, 500, 503])
async def test_every_status_gets_exact_headers_over_https(status: int) -> None:
    inner, _ = recorder(status=status)
    result = await call(SecurityHeadersMiddleware(inner), scheme="https")
    assert result.status == status
    assert_contract_headers(result, hsts=HSTS)
    assert result.header("content-type") == "text/plain"  # the app's own headers stay


async def test_no_hsts_over_plain_http_even_if_the_app_sets_it() -> None:
    """RFC 6797 §7.2: HSTS MUST NOT be sent over non-secure transport."""
    inner, _ = recorder(headers=[(b"Strict-Transport-Security", b"max-age=1")])
    result = await call(SecurityHeadersMiddleware(inner), scheme="http")
    assert_contract_headers(result, hsts=None)


async def test_scheme_read_when_response_starts() -> None:
    """The proxy layer (inside) may resolve the scheme to https after this layer was called."""
    inner, _ = recorder()

    async def proxy(scope: Scope, receive: Receive, send: Send) -> None:
        scope["scheme"] = "https"
        await inner(scope, receive, send)

    result = await call(SecurityHeadersMiddleware(proxy), scheme="http")
    assert result.header("strict-transport-security") == HSTS


async def test_app_duplicates_replaced_and_fingerprints_stripped() -> None:
    inner, _ = recorder(
        headers=[
            (b"Server", b"uvicorn/0.54"),
            (b"x-powered-by", b"Starlette"),
            (b"X-Frame-Options", b"ALLOWALL"),
            (b"cache-control", b"public, max-age=3600"),
            (b"content-security-policy", b"default-src *"),
            (b"strict-transport-security", b"max-age=0"),
            (b"x-custom", b"kept"),
        ]
    )
    result = await call(SecurityHeadersMiddleware(inner))
    assert_contract_headers(result, hsts=HSTS)
    assert result.header("x-custom") == "kept"


async def test_preload_opt_in() -> None:
    inner, _ = recorder()
    result = await call(SecurityHeadersMiddleware(inner, hsts_preload=True))
    assert result.header("strict-transport-security") == HSTS + "; preload"


async def test_off_and_custom_values() -> None:
    inner, _ = recorder(headers=[(b"cache-control", b"max-age=60"), (b"x-frame-options", b"DENY")])
    app = SecurityHeadersMiddleware(
        inner,
        cache_control=None,  # off: the app's value passes through
        frame_options="sameorigin",
        referrer_policy="strict-origin, no-referrer",
        content_security_policy="default-src 'self'",
        hsts="max-age=600",
    )
    result = await call(app)
    assert result.header("cache-control") == "max-age=60"
    assert result.header("x-frame-options") == "SAMEORIGIN"
    assert result.header("referrer-policy") == "strict-origin, no-referrer"
    assert result.header("content-security-policy") == "default-src 'self'"
    assert result.header("strict-transport-security") == "max-age=600"


async def test_hsts_off() -> None:
    inner, _ = recorder()
    result = await call(SecurityHeadersMiddleware(inner, hsts=None))
    assert result.header("strict-transport-security") is None
    assert result.header("x-frame-options") == "DENY"


async def test_starlette_404_and_500_get_headers() -> None:
    async def boom(request: Request) -> PlainTextResponse:
        raise RuntimeError("x")

    app = SecurityHeadersMiddleware(Starlette(routes=[Route("/boom", boom)]))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        for path, status in (("/missing", 404), ("/boom", 500)):
            response = await client.get(path)
            assert response.status_code == status
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["strict-transport-security"] == HSTS
            assert "server" not in response.headers


async def test_non_http_scope_untouched() -> None:
    messages: list[Message] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.accept", "headers": []})

    async def send(message: Message) -> None:
        messages.append(message)

    await SecurityHeadersMiddleware(inner)({"type": "websocket"}, never_receive, send)
    assert messages == [{"type": "websocket.accept", "headers": []}]


@pytest.mark.parametrize(
    "options",
    [
        {"cache_control": "no-store\r\nSet-Cookie: a=b"},  # header injection
        {"content_security_policy": "default-src 'none'\n"},
        {"content_security_policy": ""},
        {"hsts": "includeSubDomains"},  # no max-age
        {"hsts": "max-age=600; includeSubDomains", "hsts_preload": True},  # too short to preload
        {"hsts": "max-age=31536000", "hsts_preload": True},  # preload needs includeSubDomains
        {"hsts": None, "hsts_preload": True},
        {"hsts_preload": "yes"},
        {"frame_options": "ALLOW-FROM https://a.example"},
        {"referrer_policy": "never"},
        {"cross_origin_resource_policy": "anyone"},
        {"content_type_options": "sniff"},
        {"strip": "Server"},
        {"cache_control": 3},
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any]) -> None:
    inner, _ = recorder()
    with pytest.raises(ConfigError):
        SecurityHeadersMiddleware(inner, **options)


# --- app_csp_paths: a page that brings its own policy (the OAuth login form) ---------------

PAGE_CSP = b"default-src 'none'; style-src 'sha256-abc'; form-action 'self'; frame-ancestors 'none'"


@pytest.mark.parametrize("scheme", ["https", "http"])
async def test_app_csp_kept_on_a_listed_path(scheme: str) -> None:
    inner, _ = recorder(headers=[(b"Content-Security-Policy", PAGE_CSP)])
    app = SecurityHeadersMiddleware(inner, app_csp_paths=["/oauth/authorize"])
    result = await call(app, "GET", "/oauth/authorize", scheme=scheme)
    assert result.header("content-security-policy") == PAGE_CSP.decode()
    # Every other header is the contract's, as anywhere else.
    for name, value in CONTRACT.items():
        if name != "content-security-policy":
            assert result.header(name) == value, name
    assert result.header("strict-transport-security") == (HSTS if scheme == "https" else None)


async def test_listed_path_without_an_app_csp_gets_the_default() -> None:
    inner, _ = recorder()
    app = SecurityHeadersMiddleware(inner, app_csp_paths=["/oauth/authorize"])
    result = await call(app, "GET", "/oauth/authorize")
    assert result.header("content-security-policy") == CONTRACT["content-security-policy"]


@pytest.mark.parametrize(
    "path",
    ["/oauth/token", "/oauth/authorize/x", "/OAUTH/authorize", "/oauth/authorizex", "/"],
)
async def test_app_csp_replaced_on_every_other_path(path: str) -> None:
    """A route elsewhere cannot loosen the policy (exact, case-sensitive match)."""
    inner, _ = recorder(headers=[(b"content-security-policy", b"default-src *")])
    app = SecurityHeadersMiddleware(inner, app_csp_paths=["/oauth/authorize"])
    result = await call(app, "GET", path)
    assert result.header("content-security-policy") == CONTRACT["content-security-policy"]


async def test_path_is_read_when_the_response_starts() -> None:
    """The canonicalisation layer (inside) rewrites the path in place: a listed path reached
    by another spelling is matched on its canonical form."""
    inner, _ = recorder(headers=[(b"content-security-policy", PAGE_CSP)])

    async def canonicalise(scope: Scope, receive: Receive, send: Send) -> None:
        scope["path"] = "/oauth/authorize"
        await inner(scope, receive, send)

    app = SecurityHeadersMiddleware(canonicalise, app_csp_paths=["/oauth/authorize"])
    result = await call(app, "GET", "/oauth/authorize/")
    assert result.header("content-security-policy") == PAGE_CSP.decode()


@pytest.mark.parametrize(
    "paths",
    [
        "/oauth/authorize",  # one string, not a list
        ["oauth/authorize"],
        ["/oauth//authorize"],
        ["/oauth/../authorize"],
        ["/oauth/authorize/"],  # not canonical: the path layer strips the slash
        ["/oauth/%61uthorize"],
        ["/oauth/authorize\n"],
        [3],
    ],
)
def test_bad_app_csp_paths_fail_at_construction(paths: Any) -> None:
    inner, _ = recorder()
    with pytest.raises(ConfigError, match="app_csp_paths"):
        SecurityHeadersMiddleware(inner, app_csp_paths=paths)
