"""The origin policy: credentials only to the exact scanned origin (scheme, host and port);
redirects and target-named URLs followed only there; nothing sent anywhere else but the
plain-HTTP listener, and that without credentials."""

from __future__ import annotations

import httpx
import pytest

from bastion.scanner.context import ANONYMOUS, ScanContext, ScanOptions
from bastion.scanner.origin import OffOrigin, Origin, OriginPolicy
from tests.scanner.apps import App, Request, Response


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://API.Example.com/x", Origin("https", "api.example.com", 443)),
        ("https://api.example.com:443/", Origin("https", "api.example.com", 443)),
        ("http://api.example.com", Origin("http", "api.example.com", 80)),
        ("HTTPS://api.example.com:8443", Origin("https", "api.example.com", 8443)),
        ("https://user:pw@api.example.com/", Origin("https", "api.example.com", 443)),
        ("https://[::1]:9443/", Origin("https", "::1", 9443)),
        ("https://bücher.example/", Origin("https", "xn--bcher-kva.example", 443)),
        ("ftp://api.example.com/", None),
        ("/relative/path", None),
        ("javascript:alert(1)", None),
    ],
)
def test_origins_are_normalised(url: str, expected: Origin | None) -> None:
    assert Origin.of(url) == expected


def test_same_origin_means_scheme_host_and_port() -> None:
    policy = OriginPolicy("https://127.0.0.1:8443/api", plain_http="http://127.0.0.1:8080")
    assert policy.same_origin("https://127.0.0.1:8443/other?q=1")
    for other in (
        "http://127.0.0.1:8443/",  # another scheme
        "https://127.0.0.1:9443/",  # another port
        "https://127.0.0.2:8443/",  # another loopback address
        "https://localhost:8443/",  # another name for the same machine
        "http://127.0.0.1:8080/",  # the plain-HTTP listener
    ):
        assert not policy.same_origin(other), other
        assert not policy.may_follow(other), other
    assert policy.may_contact("http://127.0.0.1:8080/x")  # contacted, never with credentials
    assert not policy.may_contact("http://127.0.0.1:9999/")
    assert "http://127.0.0.1:9999 is outside the scanned origin https://127.0.0.1:8443" in (
        policy.why_not("http://127.0.0.1:9999/jwks")
    )


def test_credentials_are_stripped_off_origin() -> None:
    policy = OriginPolicy(
        "https://api.test/",
        secrets=["key-123456", "tok.en.value"],
        credential_headers=["X-API-Key"],
    )
    headers = {
        "Authorization": "Bearer tok.en.value",
        "Cookie": "a=b",
        "Proxy-Authorization": "Basic x",
        "X-Api-Key": "key-123456",
        "X-Forwarded-Note": "carries key-123456 inside",
        "Origin": "https://evil.example",
        "Accept": "application/json",
    }
    assert policy.outgoing_headers("https://api.test/x", headers) == headers
    assert policy.outgoing_headers("https://api.test:444/x", headers) == {
        "Origin": "https://evil.example",
        "Accept": "application/json",
    }


def _recording_app(seen: list[tuple[str, dict[str, str]]], responses: dict[str, Response]) -> App:
    def handle(request: Request) -> Response:
        seen.append((request.path, request.headers))
        return responses.get(request.path, Response(200, {"ok": True}))

    return App(handle, lambda request, response: None)


@pytest.mark.parametrize(
    "location",
    [
        "http://api.test/next",  # HTTPS to HTTP on the same host
        "https://api.test:8443/next",  # same host, another port
        "https://127.0.0.2/next",
        "//evil.example/next",  # scheme-relative
    ],
)
async def test_redirects_are_followed_only_within_the_exact_origin(location: str) -> None:
    seen: list[tuple[str, dict[str, str]]] = []
    app = _recording_app(seen, {"/": Response(302, b"", [("Location", location)])})
    options = ScanOptions(headers=(("X-Api-Key", "key-123456"),))
    async with ScanContext("https://api.test/", options, transport=httpx.ASGITransport(app)) as ctx:
        ex = await ctx.request("GET", "/", follow=True)
    assert ex.status == 302 and not ex.history
    assert [path for path, _ in seen] == ["/"]


async def test_a_same_origin_redirect_is_followed_with_the_credentials() -> None:
    seen: list[tuple[str, dict[str, str]]] = []
    app = _recording_app(seen, {"/": Response(301, b"", [("Location", "https://api.test/v1/")])})
    options = ScanOptions(headers=(("X-Api-Key", "key-123456"),))
    async with ScanContext("https://api.test/", options, transport=httpx.ASGITransport(app)) as ctx:
        ex = await ctx.request("GET", "/", follow=True)
    assert ex.status == 200 and len(ex.history) == 1
    assert [(path, h.get("x-api-key")) for path, h in seen] == [
        ("/", "key-123456"),
        ("/v1/", "key-123456"),
    ]


async def test_a_url_outside_the_policy_is_refused_unsent() -> None:
    seen: list[tuple[str, dict[str, str]]] = []
    app = _recording_app(seen, {})
    async with ScanContext("https://api.test/", transport=httpx.ASGITransport(app)) as ctx:
        with pytest.raises(OffOrigin, match="outside the scanned origin"):
            await ctx.request("GET", "https://internal.example/metadata")
        with pytest.raises(OffOrigin):
            await ctx.fetch("GET", "http://api.test:9000/")
        assert ctx.requests_sent == 0
    assert seen == []


async def test_the_token_and_anonymous_probes() -> None:
    """``--token`` goes where a control puts it, on the origin; anonymous probes carry none of
    the user's headers (an API key is as much a credential as Authorization)."""
    seen: list[tuple[str, dict[str, str]]] = []
    app = _recording_app(seen, {})
    options = ScanOptions(token="tok-abcdef", headers=(("X-Api-Key", "key-123456"),))
    async with ScanContext("https://api.test/", options, transport=httpx.ASGITransport(app)) as ctx:
        await ctx.request("GET", "/me", headers=ctx.auth_headers(), extra_headers=ANONYMOUS)
        await ctx.request("GET", "/anon", extra_headers=ANONYMOUS)
    assert seen[0][1].get("authorization") == "Bearer tok-abcdef"
    assert "x-api-key" not in seen[0][1]
    assert "x-api-key" not in seen[1][1] and "authorization" not in seen[1][1]
