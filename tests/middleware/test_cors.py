"""Strict CORS (bastion.middleware.cors): every decision, from the attacker's side.

Each test drives the layer as raw ASGI and asserts exact header bytes, so a leaked
``Access-Control-*`` header or a duplicated ``Vary`` cannot hide behind a client library.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from bastion.asgi import ASGIApp, Message, Receive, Scope, Send, send_error
from bastion.errors import ConfigError
from bastion.middleware.cors import CORSMiddleware, Origin, parse_origin, parse_origins

ALLOWED = "https://app.example.com"
EXPOSE = (
    b"X-RateLimit-Limit, X-RateLimit-Remaining, Retry-After, RateLimit, RateLimit-Policy, "
    b"X-Request-ID"
)
PREFLIGHT_VARY = b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    app_called: bool

    def get(self, name: str) -> bytes | None:
        """The single value of *name*; fails if it appears more than once."""
        values = self.all(name)
        assert len(values) <= 1, f"{name} appears {len(values)} times: {values}"
        return values[0] if values else None

    def all(self, name: str) -> list[bytes]:
        return [v for k, v in self.headers if k.lower() == name.lower().encode()]

    def cors_headers(self) -> list[tuple[bytes, bytes]]:
        return [(k, v) for k, v in self.headers if k.lower().startswith(b"access-control-")]

    def json(self) -> object:
        return json.loads(self.body)


def make_app(
    status: int = 200,
    headers: Sequence[tuple[bytes, bytes]] = (),
    body: bytes = b'{"ok":true}',
) -> tuple[ASGIApp, list[Scope]]:
    """The smallest inner app: records that it ran, answers *status* with *headers*."""
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *headers],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app, seen


async def call(
    mw: ASGIApp,
    method: str = "GET",
    path: str = "/api/v1/orders",
    headers: Sequence[tuple[str, str]] = (),
    seen: list[Scope] | None = None,
) -> Response:
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8443),
        "bastion.request_id": "req-1",
    }
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    before = len(seen) if seen is not None else 0
    await mw(scope, receive, send)
    start = messages[0]
    assert start["type"] == "http.response.start"
    body = b"".join(m.get("body", b"") for m in messages[1:])
    called = seen is not None and len(seen) > before
    return Response(start["status"], list(start["headers"]), body, called)


def cors(app: ASGIApp, origins: Sequence[str] = (ALLOWED,), **options: Any) -> CORSMiddleware:
    return CORSMiddleware(app, origins=origins, **options)


def preflight_headers(
    origin: str = ALLOWED, method: str = "POST", request_headers: str | None = "content-type"
) -> list[tuple[str, str]]:
    headers = [("Origin", origin), ("Access-Control-Request-Method", method)]
    if request_headers is not None:
        headers.append(("Access-Control-Request-Headers", request_headers))
    return headers


# --- actual (simple) requests -------------------------------------------------------------


async def test_allowed_origin_gets_exact_cors_headers() -> None:
    app, seen = make_app()
    r = await call(cors(app), headers=[("Origin", ALLOWED)], seen=seen)
    assert r.status == 200 and r.app_called
    assert r.cors_headers() == [
        (b"access-control-allow-origin", b"https://app.example.com"),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-expose-headers", EXPOSE),
    ]
    assert r.get("vary") == b"Origin"
    assert r.body == b'{"ok":true}'


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        # pitfall #13: suffix / prefix / substring look-alikes
        "https://app.example.com.evil.com",
        "https://evilapp.example.com",
        "https://evilexample.com",
        "https://example.com",
        "https://sub.app.example.com",
        "https://app.example.co",
        # scheme and port mismatches
        "http://app.example.com",
        "https://app.example.com:444",
        "https://app.example.com:8443",
        "wss://app.example.com",
        # not origins at all
        "null",
        "NULL",
        "*",
        "",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://user@app.example.com",
        "https://app.example.com https://evil.example",
        "https://app.example.com, https://evil.example",
        " https://app.example.com",
        "https://app.example.com.",
        "https://app%2eexample.com",
    ],
)
async def test_disallowed_origin_gets_no_access_control_headers(origin: str) -> None:
    """Pitfalls #12-#14: a refused origin sees no Allow-Origin, Credentials or Expose headers."""
    app, seen = make_app()
    r = await call(cors(app), headers=[("Origin", origin)], seen=seen)
    assert r.status == 200 and r.app_called  # CORS is not access control: the app still runs
    assert r.cors_headers() == []
    assert r.get("vary") == b"Origin"


@pytest.mark.parametrize(
    "origin",
    ["HTTPS://APP.EXAMPLE.COM", "https://App.Example.Com", "https://app.example.com:443"],
)
async def test_equivalent_spellings_match_and_echo_the_canonical_origin(origin: str) -> None:
    """Scheme and host are case-insensitive and :443 is https's default port (RFC 6454 §4)."""
    app, seen = make_app()
    r = await call(cors(app), headers=[("Origin", origin)], seen=seen)
    assert r.get("access-control-allow-origin") == b"https://app.example.com"


async def test_configured_default_port_equals_omitted_port() -> None:
    app, _ = make_app()
    mw = cors(app, origins=["https://a.com:443", "http://b.com:80", "HTTP://C.COM:8080"])
    assert [o.serialize() for o in mw.origins] == [
        "https://a.com",
        "http://b.com",
        "http://c.com:8080",
    ]
    for origin, expected in [
        ("https://a.com", b"https://a.com"),
        ("http://b.com", b"http://b.com"),
        ("http://c.com:8080", b"http://c.com:8080"),
    ]:
        r = await call(mw, headers=[("Origin", origin)])
        assert r.get("access-control-allow-origin") == expected
    for origin in ["http://a.com", "https://b.com", "http://c.com", "https://a.com:80"]:
        r = await call(mw, headers=[("Origin", origin)])
        assert r.cors_headers() == []


async def test_several_origin_headers_are_refused() -> None:
    """Two Origin headers are ambiguous (a proxy may read the other one): no CORS at all."""
    app, _ = make_app()
    mw = cors(app)
    r = await call(mw, headers=[("Origin", ALLOWED), ("Origin", ALLOWED)])
    assert r.cors_headers() == []
    r = await call(mw, headers=[("Origin", "https://evil.example"), ("Origin", ALLOWED)])
    assert r.cors_headers() == []
    r = await call(
        mw, "OPTIONS", headers=[("Origin", "https://evil.example"), *preflight_headers()]
    )
    assert r.status == 403 and r.cors_headers() == []


async def test_request_without_origin_is_untouched_except_vary() -> None:
    """Same-origin and non-browser requests: no CORS headers, but the answer varies by Origin."""
    app, seen = make_app(headers=[(b"x-request-id", b"req-1")])
    r = await call(cors(app), seen=seen)
    assert r.app_called
    assert r.cors_headers() == []
    assert r.headers == [
        (b"content-type", b"application/json"),
        (b"x-request-id", b"req-1"),
        (b"vary", b"Origin"),
    ]


async def test_second_allowed_origin_does_not_leak_the_first() -> None:
    app, _ = make_app()
    mw = cors(app, origins=[ALLOWED, "https://admin.example.com"])
    a = await call(mw, headers=[("Origin", ALLOWED)])
    b = await call(mw, headers=[("Origin", "https://admin.example.com")])
    c = await call(mw, headers=[("Origin", ALLOWED)])
    assert a.all("access-control-allow-origin") == [b"https://app.example.com"]
    assert b.all("access-control-allow-origin") == [b"https://admin.example.com"]
    assert c.all("access-control-allow-origin") == [b"https://app.example.com"]


@pytest.mark.parametrize(
    ("status", "inner"),
    [
        (429, [(b"retry-after", b"60"), (b"x-ratelimit-remaining", b"0")]),
        (500, []),
        (404, []),
    ],
)
async def test_errors_from_inner_layers_carry_cors_headers(
    status: int, inner: list[tuple[bytes, bytes]]
) -> None:
    """Pitfall #15: a 429/500 without CORS headers shows up in the browser as a CORS error."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send_error(scope, send, status, "An internal error occurred", headers=inner)

    r = await call(cors(app), headers=[("Origin", ALLOWED)])
    assert r.status == status
    assert r.get("access-control-allow-origin") == b"https://app.example.com"
    assert r.get("access-control-allow-credentials") == b"true"
    assert r.get("access-control-expose-headers") == EXPOSE
    assert r.json() == {"error": "An internal error occurred", "requestId": "req-1"}
    for name, value in inner:
        assert r.get(name.decode()) == value


async def test_inner_access_control_headers_never_reach_a_refused_origin() -> None:
    """A route (or a misconfigured inner middleware) cannot override this layer's decision."""
    app, _ = make_app(
        headers=[
            (b"Access-Control-Allow-Origin", b"*"),
            (b"access-control-allow-credentials", b"true"),
        ]
    )
    mw = cors(app)
    r = await call(mw, headers=[("Origin", "https://evil.example")])
    assert r.cors_headers() == []
    r = await call(mw, headers=[("Origin", ALLOWED)])
    assert r.all("access-control-allow-origin") == [b"https://app.example.com"]
    assert r.all("access-control-allow-credentials") == [b"true"]


async def test_exception_in_inner_app_propagates() -> None:
    """Safe-errors (inside this layer) turns exceptions into 500s; this one never hides them."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await call(cors(app), headers=[("Origin", ALLOWED)])


async def test_credentials_and_expose_headers_can_be_turned_off() -> None:
    app, _ = make_app()
    mw = cors(app, allow_credentials=False, expose_headers=())
    r = await call(mw, headers=[("Origin", ALLOWED)])
    assert r.cors_headers() == [(b"access-control-allow-origin", b"https://app.example.com")]
    r = await call(mw, "OPTIONS", headers=preflight_headers())
    assert r.get("access-control-allow-credentials") is None


# --- Vary -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inner", "expected"),
    [
        ([(b"vary", b"Accept-Encoding")], [b"Accept-Encoding, Origin"]),
        ([(b"Vary", b"origin")], [b"origin"]),
        ([(b"vary", b"Accept-Encoding, Origin")], [b"Accept-Encoding, Origin"]),
        ([(b"vary", b"Accept"), (b"vary", b"Cookie")], [b"Accept, Cookie, Origin"]),
        ([(b"vary", b"*")], [b"*"]),
        ([], [b"Origin"]),
    ],
)
async def test_vary_is_merged_not_duplicated(
    inner: list[tuple[bytes, bytes]], expected: list[bytes]
) -> None:
    app, _ = make_app(headers=inner)
    for origin_headers in ([("Origin", ALLOWED)], [("Origin", "https://evil.example")], []):
        r = await call(cors(app), headers=origin_headers)
        assert r.all("vary") == expected


# --- preflights -----------------------------------------------------------------------------


async def test_allowed_preflight_gets_204_with_the_exact_lists() -> None:
    app, seen = make_app()
    r = await call(
        cors(app),
        "OPTIONS",
        headers=preflight_headers(method="DELETE", request_headers="authorization,content-type"),
        seen=seen,
    )
    assert r.status == 204 and not r.app_called and r.body == b""
    assert r.headers == [
        (b"access-control-allow-origin", b"https://app.example.com"),
        (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE"),
        (b"access-control-allow-headers", b"Content-Type, Authorization, X-Request-ID"),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-max-age", b"86400"),
        (b"vary", PREFLIGHT_VARY),
    ]
    assert r.get("content-length") is None  # RFC 9110 §8.6: never on a 204


@pytest.mark.parametrize(
    "request_headers", [None, "", "X-Request-ID", " Content-Type , AUTHORIZATION "]
)
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])
async def test_preflight_accepts_allowed_methods_and_headers(
    method: str, request_headers: str | None
) -> None:
    app, _ = make_app()
    r = await call(
        cors(app), "OPTIONS", headers=preflight_headers(ALLOWED, method, request_headers)
    )
    assert r.status == 204
    assert r.get("access-control-allow-origin") == b"https://app.example.com"


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "https://app.example.com.evil.com", "null", "http://app.example.com"],
)
async def test_disallowed_preflight_gets_403_without_access_control_headers(origin: str) -> None:
    app, seen = make_app()
    r = await call(cors(app), "OPTIONS", headers=preflight_headers(origin), seen=seen)
    assert r.status == 403 and not r.app_called
    assert r.cors_headers() == []
    assert r.json() == {"error": "CORS origin not allowed", "requestId": "req-1"}
    assert r.get("vary") == PREFLIGHT_VARY


@pytest.mark.parametrize(
    ("method", "request_headers", "message"),
    [
        ("TRACE", "content-type", "CORS method not allowed"),
        ("OPTIONS", None, "CORS method not allowed"),
        ("patch", None, "CORS method not allowed"),  # methods are case-sensitive (Fetch)
        ("PROPFIND", None, "CORS method not allowed"),
        ("POST", "x-api-key", "CORS header not allowed"),
        ("GET", "content-type, cookie", "CORS header not allowed"),
        ("GET", "authorization, x-forwarded-for", "CORS header not allowed"),
    ],
)
async def test_preflight_refuses_methods_and_headers_not_allowed(
    method: str, request_headers: str | None, message: str
) -> None:
    app, seen = make_app()
    r = await call(
        cors(app), "OPTIONS", headers=preflight_headers(ALLOWED, method, request_headers), seen=seen
    )
    assert r.status == 403 and not r.app_called
    assert r.cors_headers() == []
    assert r.json() == {"error": message, "requestId": "req-1"}


async def test_options_without_request_method_is_not_a_preflight() -> None:
    """An OPTIONS that is not a preflight reaches the app (whose router answers 405)."""
    app, seen = make_app(status=405, headers=[(b"allow", b"GET")])
    r = await call(cors(app), "OPTIONS", headers=[("Origin", ALLOWED)], seen=seen)
    assert r.status == 405 and r.app_called
    assert r.get("access-control-allow-origin") == b"https://app.example.com"
    assert r.get("access-control-allow-methods") is None
    r = await call(
        cors(app), "OPTIONS", headers=[("Access-Control-Request-Method", "GET")], seen=seen
    )
    assert r.status == 405 and r.app_called and r.cors_headers() == []


async def test_preflight_headers_are_not_shared_between_responses() -> None:
    """Outer layers append to the header list in place; the precomputed one must not grow."""
    app, _ = make_app()
    inner = cors(app)

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        async def append_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"].append((b"x-outer", b"1"))
            await send(message)

        await inner(scope, receive, append_header)

    await call(outer, "OPTIONS", headers=preflight_headers())
    second = await call(outer, "OPTIONS", headers=preflight_headers())
    assert second.all("x-outer") == [b"1"]
    third = await call(inner, "OPTIONS", headers=preflight_headers())
    assert third.get("x-outer") is None


# --- no origins configured ------------------------------------------------------------------


@pytest.mark.parametrize("origins", [(), []])
async def test_no_origins_means_no_cors_at_all(origins: Sequence[str]) -> None:
    app, seen = make_app(status=405)
    mw = cors(app, origins=origins)
    r = await call(mw, "OPTIONS", headers=preflight_headers(), seen=seen)
    assert r.status == 405 and r.app_called  # the preflight is not answered here
    assert r.headers == [(b"content-type", b"application/json")]
    app, seen = make_app()
    mw = cors(app, origins=origins)
    r = await call(mw, headers=[("Origin", ALLOWED)], seen=seen)
    assert r.headers == [(b"content-type", b"application/json")]  # not even Vary


# --- excluded paths (RFC 9700 §2.6) ---------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/oauth/authorize",
        "/oauth/authorize/",
        "/oauth//authorize",
        "//oauth/authorize",
        "/OAuth/Authorize",
        "/oauth/./authorize",
        "/oauth/x/../authorize",
        "/api/../oauth/authorize",
        "/oauth/authorize;jsessionid=1",
        "/oauth/authoriz%65",  # double-encoded: the scope path is decoded once already
        "/oauth%2Fauthorize",
        "/oauth/authorize/extra",
    ],
)
async def test_authorization_endpoint_never_answers_cors(path: str) -> None:
    app, seen = make_app(status=405)
    mw = cors(app)
    r = await call(mw, "OPTIONS", path, headers=preflight_headers(), seen=seen)
    assert r.status == 405 and r.app_called
    assert r.cors_headers() == [] and r.get("vary") is None
    r = await call(mw, "GET", path, headers=[("Origin", ALLOWED)], seen=seen)
    assert r.cors_headers() == []


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/authorized", "/oauth", "/api/v1/me"])
async def test_paths_near_the_authorization_endpoint_still_answer_cors(path: str) -> None:
    app, _ = make_app()
    r = await call(cors(app), "GET", path, headers=[("Origin", ALLOWED)])
    assert r.get("access-control-allow-origin") == b"https://app.example.com"


async def test_exclusions_are_configurable() -> None:
    app, _ = make_app()
    mw = cors(app, exclude_paths=["/internal"])
    r = await call(mw, "GET", "/internal/x", headers=[("Origin", ALLOWED)])
    assert r.cors_headers() == []
    r = await call(mw, "GET", "/oauth/authorize", headers=[("Origin", ALLOWED)])
    assert r.get("access-control-allow-origin") == b"https://app.example.com"


# --- non-HTTP scopes ------------------------------------------------------------------------


async def test_non_http_scopes_pass_through() -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        raise AssertionError("nothing should be sent")

    await cors(app)({"type": "lifespan"}, receive, send)
    assert seen == [{"type": "lifespan"}]


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("*", "a wildcard is not an origin"),
        ("null", "'null' is the origin of sandboxed frames"),
        ("Null", "'null' is the origin of sandboxed frames"),
        (
            "https://app.example.com/",
            "it has a path; an origin is scheme://host[:port] (not even a trailing '/')",
        ),
        ("https://app.example.com/app", "it has a path"),
        ("https://app.example.com?x=1", "it has a query"),
        ("https://app.example.com#top", "it has a fragment"),
        ("https://user:pw@app.example.com", "it has user information"),
        ("https://app.example.com:0", "the port 0 is outside 1-65535"),
        ("https://app.example.com:65536", "the port 65536 is outside 1-65535"),
        ("https://app.example.com:http", "the port 'http' is not a number"),
        ("https://app.example.com:", "the port after ':' is empty"),
        ("https://app.example.com:-1", "the port '-1' is not a number"),
        ("ftp://app.example.com", "the scheme must be http or https, not 'ftp'"),
        ("app.example.com", "write scheme://host[:port]"),
        ("https://", "it has no host"),
        ("https://*.example.com", "wildcards are not allowed"),
        ("https://exa mple.com", "whitespace"),
        ("https://app..example.com", "has an empty label"),
        ("https://-app.example.com", "invalid label '-app'"),
        ("https://999.1.1.1", "'999.1.1.1' is not a valid IPv4 address"),
        ("https://[::1", "is not a valid IPv6 literal"),
        ("https://[zz::1]", "is not a valid IPv6 literal"),
        ("https://bücher.example", "write it as browsers send it: xn--bcher-kva.example"),
    ],
)
def test_bad_origins_stop_construction_naming_the_option_and_entry(
    entry: str, problem: str
) -> None:
    """Configured in code, the error names the constructor's option (not an env variable)."""
    app, _ = make_app()
    with pytest.raises(ConfigError) as info:
        cors(app, origins=[ALLOWED, entry])
    assert info.value.name == "CORSMiddleware(origins=...)"
    prefix = f"CORSMiddleware(origins=...): {entry!r} is not an exact origin: "
    assert str(info.value).startswith(prefix)
    assert problem in info.value.problem
    assert "BASTION_" not in str(info.value)


def test_wildcard_origin_in_code_names_the_option() -> None:
    """The issue's report: CORSMiddleware(origins=['*']) named BASTION_CORS_ORIGINS."""
    app, _ = make_app()
    with pytest.raises(ConfigError) as info:
        CORSMiddleware(app, origins=["*"])
    assert str(info.value).startswith("CORSMiddleware(origins=...): '*' is not an exact origin")


def test_origins_must_be_a_list_not_a_string() -> None:
    app, _ = make_app()
    with pytest.raises(ConfigError, match=r"CORSMiddleware\(origins=...\): give a list of origins"):
        cors(app, origins=ALLOWED)  # iterating it would give one-letter "origins"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://APP.example.com:443", Origin("https", "app.example.com", 443)),
        ("http://localhost:8080", Origin("http", "localhost", 8080)),
        ("http://127.0.0.1", Origin("http", "127.0.0.1", 80)),
        ("https://[0:0::1]:8443", Origin("https", "[::1]", 8443)),
        (" https://a_b.example.com ", Origin("https", "a_b.example.com", 443)),
    ],
)
def test_parse_origin_normalises(text: str, expected: Origin) -> None:
    assert parse_origin(text) == expected


def test_parse_origins_deduplicates_equivalent_entries() -> None:
    assert parse_origins(["https://a.com", "HTTPS://A.COM:443"]) == (Origin("https", "a.com", 443),)
    assert Origin("https", "[::1]", 8443).serialize() == "https://[::1]:8443"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"allow_methods": ["*"]}, "CORSMiddleware(allow_methods=...): '*' is not allowed"),
        ({"allow_methods": []}, "CORSMiddleware(allow_methods=...): the list is empty"),
        ({"allow_methods": ["get"]}, "methods are case-sensitive; write 'GET'"),
        ({"allow_methods": ["TRACE"]}, "TRACE must never be allowed"),
        ({"allow_methods": "GET"}, "give a list, not one string"),
        ({"allow_headers": ["*"]}, "CORSMiddleware(allow_headers=...): '*' is not allowed"),
        ({"allow_headers": ["Bad Header"]}, "'Bad Header' is not a valid name"),
        ({"expose_headers": ["*"]}, "CORSMiddleware(expose_headers=...): '*' is not allowed"),
        ({"max_age": -1}, "CORSMiddleware(max_age=...): -1 is not 0..86400 seconds"),
        ({"max_age": 86401}, "86401 is not 0..86400 seconds"),
        ({"max_age": True}, "True is not 0..86400 seconds"),
        (
            {"allow_credentials": "yes"},
            "CORSMiddleware(allow_credentials=...): must be True or False",
        ),
        ({"exclude_paths": ["oauth/authorize"]}, "'oauth/authorize' must start with /"),
        ({"exclude_paths": "/oauth/authorize"}, "give a list, not one string"),
    ],
)
def test_bad_options_stop_construction(options: dict[str, Any], message: str) -> None:
    app, _ = make_app()
    with pytest.raises(ConfigError) as info:
        cors(app, **options)
    assert message in str(info.value)


async def test_custom_lists_are_sent_as_configured() -> None:
    app, _ = make_app()
    mw = cors(
        app,
        allow_methods=["GET", "get", "POST"],
        allow_headers=["X-Custom", "x-custom"],
        expose_headers=["X-Total"],
        max_age=600,
    )
    r = await call(mw, "OPTIONS", headers=preflight_headers(request_headers="x-custom"))
    assert r.get("access-control-allow-methods") == b"GET, POST"
    assert r.get("access-control-allow-headers") == b"X-Custom"
    assert r.get("access-control-max-age") == b"600"
    r = await call(mw, "OPTIONS", headers=preflight_headers(request_headers="content-type"))
    assert r.status == 403
    r = await call(mw, headers=[("Origin", ALLOWED)])
    assert r.get("access-control-expose-headers") == b"X-Total"


# --- in the real stack (`bastion serve`) ----------------------------------------------------


@pytest.mark.integration
def test_live_stack_answers_cors_as_the_contract_says(serve: Any) -> None:
    """The layer in place: outside method policy (preflights are answered, other OPTIONS are
    405) and outside the request-id and header layers' reach (refusals carry both)."""
    server = serve(env={"BASTION_CORS_ORIGINS": "https://app.example.com:443"})
    preflight = {"Origin": ALLOWED, "Access-Control-Request-Method": "POST"}
    with server.client() as client:
        r = client.options("/api/v1/orders", headers=preflight)
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == ALLOWED
        assert r.headers["access-control-max-age"] == "86400"
        assert r.headers["x-content-type-options"] == "nosniff"

        r = client.options(
            "/api/v1/orders", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert r.status_code == 403
        assert r.json() == {
            "error": "CORS origin not allowed",
            "requestId": r.headers["x-request-id"],
        }
        assert not [k for k in r.headers if k.lower().startswith("access-control-")]

        r = client.options("/api/v1/orders", headers={"Origin": ALLOWED})
        assert r.status_code == 405  # not a preflight: the method policy answers

        # Every answer under /api/ (here a 404) carries CORS and the rate-limit headers.
        r = client.get("/api/v1/no-such-thing", headers={"Origin": ALLOWED})
        assert r.status_code == 404
        assert r.headers["access-control-allow-origin"] == ALLOWED
        assert r.headers["access-control-expose-headers"] == EXPOSE.decode()
        assert "x-ratelimit-remaining" in r.headers
        assert r.headers["vary"] == "Origin"

        # RFC 9700 §2.6: the authorization endpoint never answers CORS, in any spelling.
        for path in [
            "/oauth/authorize",
            "/oauth/authorize/",
            "/oauth//authorize",
            "/OAUTH/authorize",
        ]:
            for method, headers in [("OPTIONS", preflight), ("GET", {"Origin": ALLOWED})]:
                r = client.request(method, path, headers=headers)
                assert r.status_code != 204, (method, path)
                assert not [k for k in r.headers if k.lower().startswith("access-control-")], (
                    method,
                    path,
                    r.headers,
                )


@pytest.mark.integration
@pytest.mark.parametrize(
    "value", ["*", "https://app.example.com/", "null", "https://*.example.com"]
)
def test_bad_origin_setting_stops_the_start_with_one_line(serve: Any, value: str) -> None:
    server = serve(env={"BASTION_CORS_ORIGINS": f"https://ok.example.com,{value}"}, wait=False)
    assert server.process.wait(60) != 0
    log = server.log()
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if "BASTION_CORS_ORIGINS" in line]
    assert len(lines) == 1 and repr(value) in lines[0], log
