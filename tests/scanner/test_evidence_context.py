"""Evidence redaction and the scan context: shared fetches, redirects kept on the target,
no cookie jar, byte-exact request targets, certificate trust in the preflight."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.scanner.context import ScanContext, ScanOptions
from bastion.scanner.evidence import REDACTED, Redactor
from tests.scanner.apps import App, Request, Response
from tests.scanner.servers import make_certs, running
from tests.support import free_port

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLWJ5dGVz"


def test_redactor_hides_credentials_but_keeps_their_shape() -> None:
    r = Redactor(["my-api-key-123"])
    assert r.request_header("Authorization", f"Bearer {JWT}") == f"Bearer {REDACTED}"
    assert r.request_header("Cookie", "sid=abc") == REDACTED
    assert r.response_header("Set-Cookie", "sid=abc; Secure; HttpOnly") == (
        f"sid={REDACTED}; Secure; HttpOnly"
    )
    assert r.text(f"token {JWT} here") == "token <redacted JWT> here"
    assert r.text("/x?access_token=abc&page=2") == f"/x?access_token={REDACTED}&page=2"
    assert r.text("key my-api-key-123 echoed") == f"key {REDACTED} echoed"
    assert (
        r.text("TRACE / HTTP/1.1\r\nCookie: sid=abc\r\n")
        == f"TRACE / HTTP/1.1\r\nCookie: {REDACTED}\r\n"
    )


def _counting_app(hits: list[str], responses: dict[str, Response]) -> App:
    def handle(request: Request) -> Response:
        hits.append(request.path + ("?" + "&".join(request.query) if request.query else ""))
        found = responses.get(request.path, Response(404, {"error": "Not found"}))
        cookie = request.headers.get("cookie")
        if cookie:
            return Response(200, {"cookie": cookie})
        return Response(found.status, found.body, list(found.headers))

    return App(handle, lambda request, response: None)


async def test_concurrent_fetches_share_one_request() -> None:
    hits: list[str] = []
    app = _counting_app(hits, {"/": Response(200, {"ok": True})})
    async with ScanContext("https://api.test/", transport=httpx.ASGITransport(app)) as ctx:
        results = await asyncio.gather(*(ctx.fetch("GET", "/") for _ in range(5)))
        assert {r.status for r in results} == {200}
        assert hits == ["/"]
        assert ctx.requests_sent == 1
        await ctx.request("GET", "/")  # request() is never cached
        assert hits == ["/", "/"]


async def test_redirects_are_followed_only_on_the_target_host() -> None:
    hits: list[str] = []
    app = _counting_app(
        hits,
        {
            "/": Response(302, b"", [("Location", "/next")]),
            "/next": Response(301, b"", [("Location", "https://elsewhere.example/x")]),
        },
    )
    async with ScanContext("https://api.test/", transport=httpx.ASGITransport(app)) as ctx:
        ex = await ctx.baseline()
    assert hits == ["/", "/next"]  # never /x on the other host
    assert ex.status == 301
    assert ex.url == "https://api.test/next"
    assert [h.summary for h in ex.history] == ["GET https://api.test/ -> 302"]


async def test_cookies_are_never_sent_back() -> None:
    hits: list[str] = []
    app = _counting_app(
        hits, {"/": Response(200, {"ok": True}, [("Set-Cookie", "sid=abc; Path=/")])}
    )
    async with ScanContext("https://api.test/", transport=httpx.ASGITransport(app)) as ctx:
        await ctx.request("GET", "/")
        second = await ctx.request("GET", "/")
    assert second.json() == {"ok": True}, "the server saw a Cookie header"


@pytest.mark.parametrize(
    ("target", "http_url", "expected"),
    [
        ("https://api.test/", None, "http://api.test"),
        ("https://127.0.0.1:8443/", None, "http://127.0.0.1:8080"),
        ("https://127.0.0.1:9443/", None, None),
        ("https://127.0.0.1:9443/", "http://127.0.0.1:9080/", "http://127.0.0.1:9080"),
        ("http://127.0.0.1:8000/api", None, "http://127.0.0.1:8000"),
        ("https://[::1]:443/", None, "http://[::1]"),
    ],
)
def test_plain_http_listener_is_derived_or_given(
    target: str, http_url: str | None, expected: str | None
) -> None:
    ctx = ScanContext(target, ScanOptions(http_url=http_url))
    try:
        assert ctx.http_origin() == expected
    finally:
        asyncio.run(ctx.aclose())


class _RawPathApp:
    def __init__(self) -> None:
        self.raw_paths: list[bytes] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.raw_paths.append(scope.get("raw_path", b""))
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b"bad"})


async def test_raw_request_target_is_sent_byte_for_byte() -> None:
    app = _RawPathApp()
    with running(app) as server:
        async with ScanContext(server.url) as ctx:
            ex = await ctx.request("GET", raw_target=b"/bastion-scan/%")
    assert app.raw_paths == [b"/bastion-scan/%"]
    assert ex.status == 400
    assert ex.url.endswith("/bastion-scan/%")


def _ok_app() -> App:
    return App(lambda request: Response(200, {"ok": True}), lambda request, response: None)


async def test_untrusted_certificate_does_not_stop_the_scan(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    with running(_ok_app(), certs=certs) as server:
        async with ScanContext(server.url) as ctx:
            ex = await ctx.preflight()
            assert ex.status == 200
            assert ctx.http_trust_error is not None
            assert "certificate" in ctx.http_trust_error
        async with ScanContext(server.url, ScanOptions(ca_file=str(certs.ca))) as ctx:
            await ctx.preflight()
            assert ctx.http_trust_error is None
        async with ScanContext(server.url, ScanOptions(insecure=True)) as ctx:
            await ctx.preflight()
            assert ctx.http_trust_error is None


async def test_user_headers_anonymous_probes_and_plain_http() -> None:
    """--header values go with ordinary probes; anonymous probes drop every one of them (an
    X-API-Key is as much a credential as Authorization); plain HTTP probes send none."""
    from bastion.scanner.context import ANONYMOUS

    seen: list[dict[str, str]] = []

    def handle(request: Request) -> Response:
        seen.append(request.headers)
        return Response(200, {"ok": True})

    app = App(handle, lambda request, response: None)
    options = ScanOptions(headers=(("Authorization", "Bearer user-secret"), ("X-Api-Key", "k-1")))
    async with ScanContext("https://api.test/", options, transport=httpx.ASGITransport(app)) as ctx:
        await ctx.request("GET", "/a")
        await ctx.request("GET", "/b", extra_headers=ANONYMOUS)
        await ctx.request("GET", "/c", extra_headers=False)
    assert (seen[0].get("authorization"), seen[0].get("x-api-key")) == ("Bearer user-secret", "k-1")
    assert (seen[1].get("authorization"), seen[1].get("x-api-key")) == (None, None)
    assert (seen[2].get("authorization"), seen[2].get("x-api-key")) == (None, None)


async def test_a_redirect_to_a_dead_port_is_judged_not_fatal() -> None:
    """The target answers with a redirect to a port where nothing listens: the redirect is the
    response judged, the target is not "unreachable"."""
    dead = free_port()
    app = App(
        lambda request: Response(301, b"", [("Location", f"http://127.0.0.1:{dead}/")]),
        lambda request, response: None,
    )
    with running(app) as server:
        async with ScanContext(server.url) as ctx:
            ex = await ctx.preflight()
    assert ex.status == 301
    assert ex.header("location") == f"http://127.0.0.1:{dead}/"
