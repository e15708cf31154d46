"""secure(app, **options): every option validated at once, the HTTPS policy from the
attacker's side, per-header overrides, CORS extras, rate-limit rules and stores as options."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion import ConfigError, MemoryStore, Rule, SwaggerUI, secure
from bastion.config import Settings
from bastion.middleware.https import is_local_development
from bastion.stack import options_from_settings
from tests.middleware.rawasgi import call

STRICT_CSP = "default-src 'none'; frame-ancestors 'none'"


def starlette_app() -> Starlette:
    async def hello(request: Request) -> Response:
        return JSONResponse({"client": request.client.host if request.client else None})

    async def form(request: Request) -> Response:
        return JSONResponse(await request.json())

    return Starlette(
        routes=[
            Route("/api/hello", hello),
            Route("/hello", hello),
            Route("/api/form", form, methods=["POST"]),
        ]
    )


# --- validation: a bad value names its option --------------------------------------------
@pytest.mark.parametrize(
    ("options", "name", "problem"),
    [
        ({"https": "on"}, "https", "'on' is not one of auto, redirect, refuse, off"),
        ({"https": True}, "https", "True is not one of"),
        ({"https_port": 0}, "https_port", "0 is not a port number"),
        ({"https_port": "443"}, "https_port", "'443' is not a port number"),
        ({"allowed_hosts": "api.example.com"}, "allowed_hosts", "not one string"),
        ({"allowed_hosts": ["api.example.com:443"]}, "allowed_hosts", "is not a host name"),
        ({"trusted_proxies": "10.0.0.0/8"}, "trusted_proxies", "not one string"),
        ({"trusted_proxies": ["10.0.0.300"]}, "trusted_proxies", "is not an IP address or CIDR"),
        ({"proxy_headers": "x-real-ip"}, "proxy_headers", "is not one of auto"),
        ({"cors_origins": ["*"]}, "cors_origins", "'*' is not an exact origin"),
        ({"cors_origins": ["null"]}, "cors_origins", "'null' is not an exact origin"),
        ({"cors_origins": "https://a.example"}, "cors_origins", "not one string"),
        ({"cors_origins": ["https://a.example/"]}, "cors_origins", "it has a path"),
        ({"cors_allow_headers": ["X Bad"]}, "cors_allow_headers", "is not a valid name"),
        ({"cors_expose_headers": ["*"]}, "cors_expose_headers", "'*' is not allowed"),
        ({"headers": {"X-Powered-By": "me"}}, "headers", "not a security header bastion sets"),
        ({"headers": ["X-Frame-Options"]}, "headers", "mapping"),
        ({"headers": {"X-Frame-Options": "ALLOW-FROM x"}}, "headers['X-Frame-Options']", "DENY"),
        (
            {"headers": {"Content-Security-Policy": "default-src 'none'\r\nX-Evil: 1"}},
            "headers['Content-Security-Policy']",
            "not a header value",
        ),
        (
            {"headers": {"strict-transport-security": "includeSubDomains"}},
            "headers['Strict-Transport-Security']",
            "has no max-age",
        ),
        ({"headers": {"Referrer-Policy": 5}}, "headers['Referrer-Policy']", "must be a string"),
        ({"hsts_preload": "yes"}, "hsts_preload", "not True or False"),
        (
            {"hsts_preload": True, "headers": {"Strict-Transport-Security": "max-age=60"}},
            "hsts_preload",
            "preload needs max-age",
        ),
        ({"app_csp_paths": ["/a/../b"]}, "app_csp_paths", "dot segment"),
        ({"docs": "yes"}, "docs", "must be True, False or a bastion.SwaggerUI"),
        ({"rate_limits": Rule("a", "1/1s")}, "rate_limits", "give a list of bastion.Rule"),
        ({"rate_limits": ["100/15m"]}, "rate_limits", "is not a bastion.Rule"),
        (
            {"rate_limits": [Rule("a", "1/1s"), Rule("a", "2/1s")]},
            "rate_limits",
            "share a name",
        ),
        ({"ratelimit_store": "memcached://x"}, "ratelimit_store", "'memory', a redis:// URL"),
        ({"ratelimit_store": object()}, "ratelimit_store", "'memory', a redis:// URL"),
        ({"ratelimit_store": "redis://host:notaport/0"}, "ratelimit_store", "Redis URL"),
        ({"body_max_bytes": 0}, "body_max_bytes", "not a positive integer"),
        ({"body_max_depth": "32"}, "body_max_depth", "not a positive integer"),
        ({"body_paths": ["api"]}, "body_paths", "must start with /"),
        ({"trust_request_id": 1}, "trust_request_id", "not True or False"),
        ({"access_log": 3}, "access_log", "must be True, False, a logger"),
        ({"cors_origin": ["https://a.example"]}, "cors_origin", "unknown option of secure()"),
    ],
)
def test_a_bad_option_raises_config_error_naming_it(
    options: dict[str, Any], name: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        secure(starlette_app(), **options)
    assert info.value.name == name
    assert problem in info.value.problem
    assert "BASTION_" not in str(info.value)


def test_defaults_need_no_option_and_no_service_settings() -> None:
    asgi = secure(starlette_app())
    assert type(asgi).__name__ == "RequestIDMiddleware"


# --- HTTPS policy, from the attacker's side ------------------------------------------------
async def test_auto_serves_local_development_over_plain_http() -> None:
    asgi = secure(starlette_app())
    result = await call(
        asgi, "GET", "/api/hello", scheme="http", headers=[("host", "127.0.0.1:8000")]
    )
    assert result.status == 200
    assert result.header("strict-transport-security") is None  # never over plain HTTP
    for host in ("localhost:8000", "api.localhost", "[::1]:8000", "127.1.2.3"):
        result = await call(asgi, "GET", "/hello", scheme="http", headers=[("host", host)])
        assert result.status == 200, host


@pytest.mark.parametrize(
    ("client", "headers", "why"),
    [
        (("203.0.113.9", 5000), [("host", "localhost:8000")], "spoofed Host from a remote peer"),
        (("203.0.113.9", 5000), [("host", "127.0.0.1")], "spoofed loopback Host, remote peer"),
        (
            ("203.0.113.9", 5000),
            [("host", "localhost"), ("x-forwarded-proto", "https")],
            "X-Forwarded-Proto from an untrusted peer",
        ),
        (
            ("127.0.0.1", 5000),
            [("host", "attacker.example")],
            "DNS rebinding: a foreign name resolved to loopback",
        ),
        (
            ("127.0.0.1", 5000),
            [("host", "localhost"), ("x-forwarded-for", "203.0.113.9")],
            "a local proxy forwarding a remote client",
        ),
        (("127.0.0.1", 5000), [("host", "localhost"), ("via", "1.1 nginx")], "Via: a proxy"),
        (
            ("127.0.0.1", 5000),
            [("host", "localhost"), ("forwarded", "for=203.0.113.9")],
            "Forwarded: a proxy",
        ),
        (("::ffff:203.0.113.9", 5000), [("host", "localhost")], "IPv4-mapped remote peer"),
        (("10.0.0.8", 5000), [("host", "localhost")], "a private address is not loopback"),
        (None, [("host", "localhost")], "no peer address (a Unix socket behind a proxy)"),
        (("127.0.0.1", 5000), [("host", "localhost.evil.example")], "a look-alike name"),
        (("127.0.0.1", 5000), [("host", "l\u043ecalhost".encode())], "a Cyrillic o in localhost"),
        (
            ("127.0.0.1", 5000),
            [("host", "localhost"), ("host", "evil.example")],
            "two Host headers",
        ),
        (("127.0.0.1", 5000), [("host", "localhost@evil.example")], "userinfo in Host"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
async def test_auto_enforces_https_for_everything_that_is_not_local(
    client: tuple[str, int] | None, headers: list[tuple[str, str]], why: str
) -> None:
    asgi = secure(starlette_app())
    result = await call(
        asgi, "GET", "/api/hello", query=b"a=1", scheme="http", client=client, headers=headers
    )
    assert result.status in (301, 400), why
    if result.status == 301:
        location = result.header("location") or ""
        assert location.startswith("https://") and location.endswith("/api/hello?a=1")
        assert ":8443" not in location  # port 443 by default: omitted
    post = await call(asgi, "POST", "/api/form", scheme="http", client=client, headers=headers)
    assert post.status == 403
    assert post.json() == {"error": "HTTPS required", "requestId": post.header("x-request-id")}


async def test_redirect_names_port_443_unless_configured() -> None:
    remote = ("203.0.113.9", 5000)
    default = await call(
        secure(starlette_app()),
        "GET",
        "/api/hello",
        scheme="http",
        client=remote,
        headers=[("host", "api.example.com:8000")],
    )
    assert default.header("location") == "https://api.example.com/api/hello"
    other = await call(
        secure(starlette_app(), https_port=8443),
        "GET",
        "/api/hello",
        scheme="http",
        client=remote,
        headers=[("host", "api.example.com")],
    )
    assert other.header("location") == "https://api.example.com:8443/api/hello"


async def test_trusted_proxies_turn_auto_into_redirect() -> None:
    """Behind a proxy nothing is local: even a loopback peer saying localhost is redirected."""
    asgi = secure(starlette_app(), trusted_proxies=["127.0.0.1"])
    plain = await call(asgi, "GET", "/api/hello", scheme="http", headers=[("host", "localhost")])
    assert plain.status == 301
    proxied = await call(
        asgi,
        "GET",
        "/api/hello",
        scheme="http",
        headers=[("host", "api.example.com"), ("x-forwarded-proto", "https")],
    )
    assert proxied.status == 200
    assert proxied.header("strict-transport-security") is not None


async def test_https_refuse_and_off() -> None:
    local = [("host", "localhost")]
    refuse = secure(starlette_app(), https="refuse")
    got = await call(refuse, "GET", "/api/hello", scheme="http", headers=local)
    assert got.status == 403 and got.header("location") is None
    assert got.json()["error"] == "HTTPS required"
    off = secure(starlette_app(), https="off")
    remote = await call(
        off, "GET", "/api/hello", scheme="http", client=("203.0.113.9", 1), headers=local
    )
    assert remote.status == 200
    redirect = secure(starlette_app(), https="redirect")
    assert (await call(redirect, "GET", "/api/hello", scheme="http", headers=local)).status == 301


async def test_https_requests_pass_whatever_the_policy() -> None:
    for policy in ("auto", "redirect", "refuse", "off"):
        asgi = secure(starlette_app(), https=policy)
        result = await call(asgi, "GET", "/api/hello", client=("203.0.113.9", 1))
        assert result.status == 200, policy


def test_local_development_rule_reads_the_direct_peer() -> None:
    """After a trusted proxy rewrote scope["client"], the peer recorded before decides."""
    from bastion.middleware.https import HTTPSRedirector

    scope: dict[str, Any] = {
        "client": ("127.0.0.1", 1),
        "bastion.peer": ("203.0.113.9", 1),
        "headers": [(b"host", b"localhost")],
    }
    assert not is_local_development(scope, HTTPSRedirector())
    scope["bastion.peer"] = ("127.0.0.1", 1)
    assert is_local_development(scope, HTTPSRedirector())


# --- security headers: default / off / custom ---------------------------------------------
async def test_per_header_override() -> None:
    asgi = secure(
        starlette_app(),
        headers={
            "X-Frame-Options": "SAMEORIGIN",
            "cross-origin-resource-policy": None,
            "Referrer-Policy": "strict-origin-when-cross-origin",
        },
    )
    result = await call(asgi, "GET", "/api/hello")
    assert result.header("x-frame-options") == "SAMEORIGIN"
    assert result.header("cross-origin-resource-policy") is None
    assert result.header("referrer-policy") == "strict-origin-when-cross-origin"
    assert result.header("content-security-policy") == STRICT_CSP
    assert result.header("strict-transport-security") == "max-age=31536000; includeSubDomains"


# --- CORS extras ---------------------------------------------------------------------------
async def test_cors_extra_headers_join_the_contract_lists() -> None:
    asgi = secure(
        starlette_app(),
        cors_origins=["https://app.example.com"],
        cors_allow_headers=["X-Api-Key"],
        cors_expose_headers=["X-Trace"],
    )
    origin = ("origin", "https://app.example.com")
    preflight = await call(
        asgi,
        "OPTIONS",
        "/api/hello",
        headers=[
            origin,
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-api-key, authorization"),
        ],
    )
    assert preflight.status == 204
    assert preflight.header("access-control-allow-headers") == (
        "Content-Type, Authorization, X-Request-ID, X-Api-Key"
    )
    actual = await call(asgi, "GET", "/api/hello", headers=[origin])
    assert actual.header("access-control-expose-headers") == (
        "X-RateLimit-Limit, X-RateLimit-Remaining, Retry-After, RateLimit, RateLimit-Policy, "
        "X-Request-ID, X-Trace"
    )
    refused = await call(
        asgi,
        "OPTIONS",
        "/api/hello",
        headers=[
            origin,
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-other"),
        ],
    )
    assert refused.status == 403


# --- rate limits as options ----------------------------------------------------------------
async def test_route_level_rules_are_an_option() -> None:
    store = MemoryStore()
    asgi = secure(
        starlette_app(),
        rate_limits=[Rule("hello", "2/1m", paths=["/hello"])],
        ratelimit_store=store,
    )
    results = [await call(asgi, "GET", "/hello") for _ in range(3)]
    assert [r.status for r in results] == [200, 200, 429]
    assert results[0].header("ratelimit-policy") == '"hello";q=2;w=60'
    assert results[2].header("retry-after") is not None
    # The default /api/ rule is replaced, not added to.
    assert (await call(asgi, "GET", "/api/hello")).header("ratelimit-policy") is None


async def test_default_rule_is_the_contracts_api_rule_and_empty_list_turns_it_off() -> None:
    default = await call(secure(starlette_app()), "GET", "/api/hello")
    assert default.header("ratelimit-policy") == '"api";q=100;w=900'
    none = await call(secure(starlette_app(), rate_limits=[]), "GET", "/api/hello")
    assert none.status == 200 and none.header("ratelimit-policy") is None


async def test_a_store_made_by_secure_is_closed_at_shutdown_a_given_one_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[str] = []

    class Store(MemoryStore):
        def __init__(self, name: str = "made") -> None:
            super().__init__()
            self.name = name

        async def aclose(self) -> None:
            closed.append(self.name)

    async def lifespan_app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    async def run(asgi: Any) -> list[str]:
        incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[str] = []

        async def receive() -> dict[str, str]:
            return incoming.pop(0)

        async def send(message: Any) -> None:
            sent.append(message["type"])

        await asgi({"type": "lifespan"}, receive, send)
        return sent

    given = await run(secure(lifespan_app, ratelimit_store=Store("given")))
    assert closed == []
    assert given == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    monkeypatch.setattr("bastion.stack.MemoryStore", Store)
    await run(secure(lifespan_app))  # ratelimit_store="memory": made here
    assert closed == ["made"]


async def test_redis_url_store_reports_an_outage_by_its_rules_policy() -> None:
    """A URL is checked at once; the connection is made on first use (an outage: fail-open)."""
    from tests.support import free_port

    asgi = secure(starlette_app(), ratelimit_store=f"redis://127.0.0.1:{free_port()}/0")
    result = await call(asgi, "GET", "/api/hello")
    assert result.status == 200 and result.header("ratelimit-policy") is None


# --- request ids and the access log --------------------------------------------------------
async def test_trust_request_id_false_never_echoes_the_client_id() -> None:
    sent = [("x-request-id", "client-chosen-id")]
    echoed = await call(secure(starlette_app()), "GET", "/api/hello", headers=sent)
    assert echoed.header("x-request-id") == "client-chosen-id"
    fresh = await call(
        secure(starlette_app(), trust_request_id=False), "GET", "/api/hello", headers=sent
    )
    assert fresh.header("x-request-id") not in (None, "client-chosen-id")


async def test_access_log_option(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    await call(secure(starlette_app(), access_log="my.access"), "GET", "/api/hello")
    await call(secure(starlette_app(), access_log=False), "GET", "/hello")
    records = [r for r in caplog.records if '"event":"access"' in r.getMessage()]
    assert [r.name for r in records] == ["my.access"]


# --- the reference service's settings -------------------------------------------------------
def test_exposed_docs_without_the_assets_name_the_setting(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "swagger_ui_bundle", None)
    with pytest.raises(ConfigError) as info:
        options_from_settings(Settings(data_dir=tmp_path, expose_docs=True))
    assert info.value.name == "BASTION_EXPOSE_DOCS"
    assert "pip install 'bastion[docs]'" in info.value.problem


def test_settings_become_options(tmp_path: Any) -> None:
    settings = Settings(
        data_dir=tmp_path,
        cors_origins=["https://app.example.com"],
        trusted_proxies=["10.0.0.0/8"],
        port=9443,
        expose_docs=True,
    )
    options = options_from_settings(settings)
    assert options["https"] == "redirect" and options["https_port"] == 9443
    assert options["cors_origins"] == ("https://app.example.com",)
    assert isinstance(options["docs"], SwaggerUI) and options["docs"].path == "/docs"
    assert [rule.name for rule in options["rate_limits"] or ()] == ["api", "auth"]
    dev = options_from_settings(Settings(data_dir=tmp_path, insecure_http=True))
    assert dev["https"] == "off"


async def test_explicit_options_win_over_settings(tmp_path: Any) -> None:
    settings = Settings(data_dir=tmp_path)
    asgi = secure(starlette_app(), settings=settings, rate_limits=[], https="off")
    result = await call(
        asgi, "GET", "/api/hello", scheme="http", client=("203.0.113.9", 1), headers=[]
    )
    assert result.status == 200 and result.header("ratelimit-policy") is None


async def test_docs_option_keeps_the_strict_policy_everywhere_else() -> None:
    asgi = secure(starlette_app(), docs=SwaggerUI(path="/api-docs"))
    page = await call(asgi, "GET", "/api-docs")
    assert page.status == 200
    assert "script-src 'nonce-" in (page.header("content-security-policy") or "")
    for path in ("/api/hello", "/docs", "/api-docs/x", "/API-DOCS"):
        other = await call(asgi, "GET", path)
        assert other.header("content-security-policy") == STRICT_CSP, path
