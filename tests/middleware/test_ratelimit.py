"""RateLimitMiddleware, driven in-process with exact scopes: headers, 429s, refunds, slow-down,
concurrency, store failures. Attacks are named after the pitfall they reproduce."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from pathlib import Path
from typing import Any

import http_sfv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Route

from bastion.config import load_settings
from bastion.errors import ConfigError, HTTPError
from bastion.middleware.errors import SafeErrorsMiddleware
from bastion.middleware.ratelimit import RateLimitMiddleware
from bastion.ratelimit import (
    AUTH_MESSAGE,
    MemoryStore,
    Rate,
    Rule,
    api_rule,
    auth_rule,
    build_ratelimit,
    from_settings,
)
from bastion.ratelimit.redis_store import RedisStore
from bastion.stack import secure
from tests.middleware.rawasgi import call, recorder
from tests.ratelimit.redis_server import FakeClock, RedisServer
from tests.support import free_port


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def sfv(value: str | None) -> list[tuple[str, dict[str, Any]]]:
    """Parse a RateLimit / RateLimit-Policy value as an RFC 9651 List (fails if malformed)."""
    assert value is not None
    parsed = http_sfv.List()
    parsed.parse(value.encode())
    return [(item.value, dict(item.params)) for item in parsed]


def login_app(passwords: dict[str, str] | None = None) -> tuple[Any, list[Any]]:
    """An app answering 200 for a correct password, 401 otherwise, 404 off the login path."""
    passwords = passwords or {"alice": "correct horse battery staple"}
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        await asyncio.sleep(0)  # let concurrent requests interleave inside the app
        status = 404
        if scope["path"] == "/api/v1/auth/login":
            creds = json.loads(body or b"{}")
            status = 200 if passwords.get(creds.get("user")) == creds.get("password") else 401
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app, seen


def creds(password: str) -> bytes:
    return json.dumps({"user": "alice", "password": password}).encode()


def limited(app: Any, *rules: Rule, clock: FakeClock | None = None, **kwargs: Any) -> Any:
    store = MemoryStore(clock=clock) if clock else MemoryStore()
    return RateLimitMiddleware(app, rules=rules or (api_rule(), auth_rule()), store=store, **kwargs)


async def no_sleep(_: float) -> None:
    return None


# -- headers ---------------------------------------------------------------------------------


async def test_headers_on_an_admitted_request(clock: FakeClock) -> None:
    app, _ = recorder()
    mw = limited(app, clock=clock, sleep=no_sleep)
    result = await call(mw, "GET", "/api/v1/orders")
    assert result.status == 200
    assert result.header("RateLimit-Policy") == '"api";q=100;w=900'
    assert result.header("RateLimit") == '"api";r=99;t=900'
    assert result.header("X-RateLimit-Limit") == "100"
    assert result.header("X-RateLimit-Remaining") == "99"
    assert result.header("Retry-After") is None
    assert sfv(result.header("RateLimit-Policy")) == [("api", {"q": 100, "w": 900})]
    assert sfv(result.header("RateLimit")) == [("api", {"r": 99, "t": 900})]
    clock.advance(12.5)
    second = await call(mw, "GET", "/api/v1/orders")
    # t is the time until the oldest charge (t=0) leaves the window, rounded up.
    assert second.header("RateLimit") == '"api";r=98;t=888'


async def test_two_rules_list_both_and_x_headers_describe_the_tightest() -> None:
    app, _ = login_app()
    mw = limited(app, sleep=no_sleep)
    result = await call(mw, "POST", "/api/v1/auth/login", body=creds("wrong"))
    assert result.status == 401
    assert sfv(result.header("RateLimit-Policy")) == [
        ("api", {"q": 100, "w": 900}),
        ("auth", {"q": 5, "w": 900}),
    ]
    assert sfv(result.header("RateLimit")) == [
        ("api", {"r": 99, "t": 900}),
        ("auth", {"r": 4, "t": 900}),
    ]
    assert (result.header("X-RateLimit-Limit"), result.header("X-RateLimit-Remaining")) == (
        "5",
        "4",
    )


async def test_paths_outside_every_rule_get_no_rate_headers() -> None:
    app, _ = recorder()
    result = await call(limited(app), "GET", "/healthz")
    assert result.status == 200
    assert all(
        result.header(h) is None for h in ("RateLimit", "RateLimit-Policy", "X-RateLimit-Limit")
    )


async def test_429_body_retry_after_and_headers(clock: FakeClock) -> None:
    app, seen = recorder()
    mw = limited(app, Rule("api", "3/1m", paths="/api/"), clock=clock)
    for _ in range(3):
        assert (await call(mw, "GET", "/api/x")).status == 200
    clock.advance(20.25)
    refused = await call(mw, "GET", "/api/x", headers=[(b"x-request-id", b"abc")])
    assert refused.status == 429
    assert refused.json() == {"error": "Too many requests", "requestId": ""}
    assert refused.header("Content-Type") == "application/json"
    assert refused.header("Retry-After") == "40"  # 60 - 20.25, rounded up
    assert refused.header("RateLimit") == '"api";r=0;t=40'  # names the same instant (§6)
    assert refused.header("X-RateLimit-Remaining") == "0"
    assert len(seen) == 3  # the refused request never reached the app


async def test_retry_after_is_enough_and_never_early(clock: FakeClock) -> None:
    app, _ = recorder()
    mw = limited(app, Rule("api", "2/10s", paths="/api/"), clock=clock)
    await call(mw, "GET", "/api/x")
    clock.advance(3.5)
    await call(mw, "GET", "/api/x")
    refused = await call(mw, "GET", "/api/x")
    wait = int(refused.header("Retry-After") or 0)
    assert wait == 7  # 6.5 s rounded up
    clock.advance(wait - 0.75)
    assert (await call(mw, "GET", "/api/x")).status == 429
    clock.advance(0.75)
    assert (await call(mw, "GET", "/api/x")).status == 200


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 4 * 64), st.sampled_from([200, 401, 404])), min_size=1, max_size=30
    )
)
def test_headers_always_agree_with_the_window(steps: list[tuple[int, int]]) -> None:
    """Property: r, t, Retry-After and X-RateLimit-* always describe the sliding window."""
    limit, window = 4, 10

    async def scenario() -> None:
        clock = FakeClock()
        status_box = [200]

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": status_box[0], "headers": []})
            await send({"type": "http.response.body", "body": b""})

        rule = Rule("login", Rate(limit, window), paths="/api/", count="failures")
        mw = RateLimitMiddleware(app, rules=[rule], store=MemoryStore(clock=clock))
        kept: list[float] = []  # failures still charged
        for ticks, status in steps:
            clock.advance(ticks / 64)
            now = clock.now
            status_box[0] = status
            result = await call(mw, "POST", "/api/x")
            in_window = sorted(s for s in kept if s > now - window)
            [(name, state)] = sfv(result.header("RateLimit"))
            assert name == "login"
            if len(in_window) >= limit:
                assert result.status == 429
                t = math.ceil(in_window[0] + window - now)
                assert state == {"r": 0, "t": t}
                assert result.header("Retry-After") == str(t)
                continue
            assert result.status == status
            if status >= 400:
                kept.append(now)
                in_window.append(now)
            remaining = limit - len(in_window)
            t = math.ceil(in_window[0] + window - now) if in_window else 0
            assert state == {"r": remaining, "t": t}
            assert result.header("X-RateLimit-Remaining") == str(remaining)
            assert result.header("X-RateLimit-Limit") == str(limit)

    asyncio.run(scenario())


# -- budgets: what shares one --------------------------------------------------------------


async def test_unrouted_paths_count_against_the_api_budget() -> None:
    """Pitfall #7: limits that only cover matched routes let a scanner probe for free."""
    app, _ = login_app()
    mw = limited(app, api_rule("5/15m", slowdown_after=None))
    statuses = [(await call(mw, "GET", f"/api/nope-{i}")).status for i in range(6)]
    assert statuses == [404] * 5 + [429]


async def test_every_order_id_shares_one_budget() -> None:
    """Pitfall #6: per-URL keys give /orders/1 and /orders/2 separate budgets."""
    app, _ = recorder()
    mw = limited(app, api_rule("5/15m", slowdown_after=None))
    statuses = [(await call(mw, "GET", f"/api/v1/orders/{i:08x}")).status for i in range(6)]
    assert statuses == [200] * 5 + [429]


async def test_head_and_get_share_one_budget() -> None:
    app, _ = recorder()
    mw = limited(app, api_rule("4/15m", slowdown_after=None))
    statuses = [(await call(mw, m, "/api/v1/orders")).status for m in ("GET", "HEAD") * 3]
    assert statuses == [200, 200, 200, 200, 429, 429]


async def test_path_case_and_spelling_variants_share_the_auth_budget() -> None:
    """Pitfall #5: the router 404s /API/v1/auth/login, yet it must count as a login attempt."""
    app, _ = login_app()
    mw = limited(app, sleep=no_sleep)
    variants = [
        "/API/v1/auth/login",
        "/api/v1/auth/login/",
        "/api//v1/auth/login",
        "/api/./v1/auth/login",
        "/Api/V1/Auth/Login",
    ]
    for path in variants:
        result = await call(mw, "POST", path, body=creds("wrong"))
        assert result.status in (401, 404)
    refused = await call(
        mw, "POST", "/api/v1/auth/login", body=creds("correct horse battery staple")
    )
    assert refused.status == 429
    assert refused.json()["error"] == AUTH_MESSAGE


async def test_spoofed_forwarding_headers_do_not_change_the_key() -> None:
    """Pitfall #1: the key is scope["client"], which only the trusted-proxy layer rewrites."""
    app, _ = login_app()
    mw = limited(app, sleep=no_sleep)
    for i in range(5):
        spoof = [
            (b"x-forwarded-for", f"10.9.8.{i}".encode()),
            (b"forwarded", f"for=10.7.{i}.1".encode()),
        ]
        await call(mw, "POST", "/api/v1/auth/login", body=creds("wrong"), headers=spoof)
    sixth = await call(
        mw,
        "POST",
        "/api/v1/auth/login",
        body=creds("wrong"),
        headers=[(b"x-forwarded-for", b"1.1.1.1")],
    )
    assert sixth.status == 429


async def test_ipv6_clients_in_one_64_share_a_budget() -> None:
    app, _ = recorder()
    mw = limited(app, api_rule("3/15m", slowdown_after=None))
    statuses = [
        (await call(mw, "GET", "/api/x", client=(f"2001:db8:5:6::{i:x}", 1))).status
        for i in range(1, 5)
    ]
    assert statuses == [200, 200, 200, 429]
    assert (await call(mw, "GET", "/api/x", client=("2001:db8:5:7::1", 1))).status == 200


async def test_clients_are_independent() -> None:
    app, _ = recorder()
    mw = limited(app, api_rule("1/15m", slowdown_after=None))
    assert (await call(mw, "GET", "/api/x", client=("10.0.0.1", 1))).status == 200
    assert (await call(mw, "GET", "/api/x", client=("10.0.0.1", 2))).status == 429
    assert (await call(mw, "GET", "/api/x", client=("10.0.0.2", 1))).status == 200


# -- the auth rule: failures only, charged first -------------------------------------------


async def test_successful_logins_are_never_counted() -> None:
    app, seen = login_app()
    mw = limited(app, sleep=no_sleep)
    for _ in range(20):
        ok = await call(
            mw, "POST", "/api/v1/auth/login", body=creds("correct horse battery staple")
        )
        assert ok.status == 200
        assert sfv(ok.header("RateLimit"))[1] == ("auth", {"r": 5, "t": 0})
    assert len(seen) == 20


async def test_once_spent_even_the_right_password_gets_429() -> None:
    """Otherwise 200-versus-429 after the limit would be a password oracle."""
    app, seen = login_app()
    mw = limited(app, sleep=no_sleep)
    for _ in range(5):
        assert (await call(mw, "POST", "/api/v1/auth/login", body=creds("guess"))).status == 401
    right = await call(mw, "POST", "/api/v1/auth/login", body=creds("correct horse battery staple"))
    assert right.status == 429
    assert right.json()["error"] == AUTH_MESSAGE
    assert len(seen) == 5


async def test_password_reset_shares_the_auth_budget() -> None:
    app, _ = login_app()
    mw = limited(app, sleep=no_sleep)
    for path in ("/api/v1/password-reset", "/api/v1/password-reset/confirm") * 2:
        await call(mw, "POST", path)  # 404 from this app: a failure
    await call(mw, "POST", "/api/v1/auth/login", body=creds("guess"))
    assert (await call(mw, "POST", "/api/v1/password-reset")).status == 429


async def test_parallel_wrong_passwords_cannot_slip_past_the_limit() -> None:
    """Pitfall #10: 20 concurrent attempts against a limit of 5; at most 5 reach the app."""
    app, seen = login_app()
    mw = limited(app, sleep=no_sleep)
    results = await asyncio.gather(
        *(call(mw, "POST", "/api/v1/auth/login", body=creds(f"guess-{i}")) for i in range(20))
    )
    assert sorted(r.status or 0 for r in results) == [401] * 5 + [429] * 15
    assert len(seen) == 5


async def test_refund_happens_before_the_response_starts() -> None:
    """A success gives its charge back even when a parallel failure is in flight."""
    app, _ = login_app()
    mw = limited(app, auth_rule("2/15m"), sleep=no_sleep)
    results = await asyncio.gather(
        call(mw, "POST", "/api/v1/auth/login", body=creds("correct horse battery staple")),
        call(mw, "POST", "/api/v1/auth/login", body=creds("wrong")),
    )
    assert sorted(r.status or 0 for r in results) == [200, 401]
    follow = await call(mw, "POST", "/api/v1/auth/login", body=creds("wrong"))
    assert follow.status == 401
    assert sfv(follow.header("RateLimit")) == [("auth", {"r": 0, "t": 900})]


# -- slow-down -------------------------------------------------------------------------------


async def test_slowdown_delay_is_cumulative_over_the_threshold() -> None:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    app, _ = recorder()
    mw = limited(app, api_rule("10/15m", slowdown_after=5, slowdown_delay_ms=200), sleep=sleep)
    statuses = [(await call(mw, "GET", "/api/x")).status for _ in range(12)]
    assert statuses == [200] * 10 + [429] * 2
    # Requests 6..10 are the 1st..5th over the threshold: n × 200 ms; refusals are not delayed.
    assert slept == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])


async def test_contract_defaults_delay_the_51st_by_200ms_and_the_100th_by_10s() -> None:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    app, _ = recorder()
    mw = limited(app, api_rule(), auth_rule(), sleep=sleep)
    for _ in range(101):
        await call(mw, "GET", "/api/v1/orders")
    assert len(slept) == 50
    assert slept[0] == pytest.approx(0.2) and slept[-1] == pytest.approx(10.0)


async def test_a_delayed_request_does_not_block_others() -> None:
    """The delay is awaited: while one request waits, another one is served."""
    release = asyncio.Event()
    waiting = asyncio.Event()

    async def sleep(_: float) -> None:
        waiting.set()
        await release.wait()

    app, seen = recorder()
    rules = (api_rule("10/15m", slowdown_after=1, slowdown_delay_ms=100),)
    mw = limited(app, *rules, sleep=sleep)
    await call(mw, "GET", "/api/x", client=("10.0.0.1", 1))
    slow = asyncio.create_task(call(mw, "GET", "/api/x", client=("10.0.0.1", 1)))
    await waiting.wait()
    other = await call(mw, "GET", "/api/x", client=("10.0.0.2", 1))
    assert other.status == 200
    assert not slow.done()
    release.set()
    assert (await slow).status == 200
    assert len(seen) == 3


async def test_default_sleep_is_asyncio_sleep() -> None:
    app, _ = recorder()
    mw = limited(app, api_rule())
    assert mw._sleep is asyncio.sleep


# -- concurrency -----------------------------------------------------------------------------


async def test_500_concurrent_requests_against_100_admit_exactly_100() -> None:
    app, seen = login_app()
    mw = limited(app, api_rule("100/15m", slowdown_after=None))
    results = await asyncio.gather(*(call(mw, "GET", f"/api/v1/orders/{i}") for i in range(500)))
    statuses = [r.status for r in results]
    assert statuses.count(404) == 100  # login_app 404s these paths: admitted and answered
    assert statuses.count(429) == 400
    assert len(seen) == 100


# -- custom rules and keys -------------------------------------------------------------------


async def test_user_rule_keyed_by_authenticated_principal() -> None:
    app, _ = recorder()

    def user(scope: Any) -> str | None:
        name: str | None = scope.get("state", {}).get("user")
        return name

    per_user = Rule("per-user", "2/1m", paths="/api/", key=user)
    mw = limited(app, per_user)
    alice: dict[str, Any] = {"user": "alice"}
    # Alice is limited wherever she connects from; anonymous requests skip the rule.
    for client, status in ((("10.0.0.1", 1), 200), (("10.0.0.2", 1), 200), (("10.0.0.3", 1), 429)):
        assert (await call(mw, "GET", "/api/x", client=client, state=alice)).status == status
    anonymous = await call(mw, "GET", "/api/x")
    assert anonymous.status == 200 and anonymous.header("RateLimit") is None


async def test_long_custom_keys_are_hashed(clock: FakeClock) -> None:
    app, _ = recorder()
    store = MemoryStore(clock=clock)
    rule = Rule("k", "5/1m", key=lambda scope: "x" * 10_000)
    await call(RateLimitMiddleware(app, rules=[rule], store=store), "GET", "/")
    [key] = store._logs
    assert key.startswith("k:") and len(key) == 2 + 64


async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    mw = limited(app)
    nothing: Any = None
    await mw({"type": "lifespan"}, nothing, nothing)
    await mw({"type": "websocket", "path": "/api/ws", "client": ("1.2.3.4", 1)}, nothing, nothing)
    assert seen == ["lifespan", "websocket"]


def test_bad_construction_is_refused() -> None:
    app, _ = recorder()
    with pytest.raises(ConfigError, match="rules"):
        RateLimitMiddleware(app, rules=api_rule(), store=MemoryStore())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="rules"):
        RateLimitMiddleware(app, rules=["100/15m"], store=MemoryStore())  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="close_store"):
        RateLimitMiddleware(app, rules=[], store=MemoryStore(), close_store=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="duplicate"):
        RateLimitMiddleware(app, rules=[api_rule(), api_rule()], store=MemoryStore())
    with pytest.raises(ConfigError, match="store"):
        RateLimitMiddleware(app, rules=[api_rule()], store=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unavailable_retry_after"):
        RateLimitMiddleware(app, rules=[api_rule()], store=MemoryStore(), unavailable_retry_after=0)


# -- store unavailable ----------------------------------------------------------------------


def unreachable_store() -> RedisStore:
    """A real Redis client pointed at a port nothing listens on: a real outage."""
    return RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)


async def test_store_down_api_fails_open_with_one_error_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, seen = login_app()
    mw = RateLimitMiddleware(app, rules=[api_rule(), auth_rule()], store=unreachable_store())
    with caplog.at_level(logging.ERROR, logger="bastion.ratelimit"):
        results = [await call(mw, "GET", "/api/v1/orders") for _ in range(5)]
    assert [r.status for r in results] == [404] * 5
    assert all(
        r.header("RateLimit") is None and r.header("X-RateLimit-Limit") is None for r in results
    )
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # rate-limited logging, not one line per request
    assert "not enforced" in errors[0].getMessage()
    assert len(seen) == 5
    assert await mw.ping_store() is False


async def test_store_down_auth_fails_closed_with_503() -> None:
    app, seen = login_app()
    mw = RateLimitMiddleware(app, rules=[api_rule(), auth_rule()], store=unreachable_store())
    result = await call(
        mw, "POST", "/api/v1/auth/login", body=creds("correct horse battery staple")
    )
    assert result.status == 503
    assert result.json() == {"error": "Service temporarily unavailable", "requestId": ""}
    assert result.header("Retry-After") == "5"
    assert seen == []


@pytest.mark.parametrize(
    ("mode", "api_status", "auth_status"),
    [("auto", 404, 503), ("fail-open", 404, 200), ("fail-closed", 503, 503)],
)
async def test_store_failure_setting(
    mode: str, api_status: int, auth_status: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", ratelimit_store_failure=mode
    )
    app, _ = login_app()
    mw = build_ratelimit(app, settings)
    assert isinstance(mw.store, RedisStore)
    assert (await call(mw, "GET", "/api/v1/orders")).status == api_status
    login = await call(mw, "POST", "/api/v1/auth/login", body=creds("correct horse battery staple"))
    assert login.status == auth_status
    await mw.store.aclose()


@pytest.mark.redis
async def test_refund_lost_to_an_outage_keeps_the_charge_and_serves_the_response(
    tmp_path: Path,
) -> None:
    """Redis dies while a login runs: the success still answers 200, the charge stays (safe)."""
    server = RedisServer(tmp_path)
    server.start()
    try:

        async def app(scope: Any, receive: Any, send: Any) -> None:
            server.stop()  # the outage happens mid-request
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

        # A generous timeout: the first hit must succeed on a loaded machine; the refund
        # after the stop fails at once anyway (the connection is refused, not slow).
        store = RedisStore(server.url, timeout=5.0)
        mw = RateLimitMiddleware(app, rules=[auth_rule()], store=store)
        result = await call(mw, "POST", "/api/v1/auth/login")
        assert result.status == 200
        assert sfv(result.header("RateLimit")) == [("auth", {"r": 4, "t": 900})]
        await store.aclose()
    finally:
        server.stop()


# -- from settings ---------------------------------------------------------------------------


def test_from_settings_builds_the_contract_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        api_limit="20/1m", api_slowdown_after=10, api_slowdown_delay_ms=50, auth_limit="3/5m"
    )
    rules, store = from_settings(settings)
    assert isinstance(store, MemoryStore)
    api, auth = rules
    assert (api.name, api.rate, api.slowdown_after, api.slowdown_delay_ms) == (
        "api",
        Rate(20, 60),
        10,
        50,
    )
    assert (api.on_store_failure, auth.on_store_failure) == ("fail-open", "fail-closed")
    assert (auth.name, auth.rate, auth.count) == ("auth", Rate(3, 300), "failures")


# --- error responses made outside the layer are limited responses too -----------------------
async def _raises(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("db down")


async def _starts_500_then_raises(scope: Any, receive: Any, send: Any) -> None:
    # What Starlette's ServerErrorMiddleware does: answer 500, then re-raise.
    await send({"type": "http.response.start", "status": 500, "headers": []})
    await send({"type": "http.response.body", "body": b"Internal Server Error"})
    raise RuntimeError("db down")


async def _answers_500(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 500, "headers": []})
    await send({"type": "http.response.body", "body": b"Traceback: ..."})


async def _never_answers(scope: Any, receive: Any, send: Any) -> None:
    return None


async def _raises_http_error(scope: Any, receive: Any, send: Any) -> None:
    raise HTTPError(409, "Conflict", headers=[(b"x-app", b"1")])


@pytest.mark.parametrize(
    ("app", "status"),
    [
        (_raises, 500),
        (_starts_500_then_raises, 500),
        (_answers_500, 500),
        (_never_answers, 500),
        (_raises_http_error, 409),
    ],
    ids=["raises", "starts-500-then-raises", "answers-500", "never-answers", "http-error"],
)
async def test_error_responses_from_safe_errors_carry_the_rate_headers_once(
    app: Any, status: int, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    stack = SafeErrorsMiddleware(limited(app, clock=clock, sleep=no_sleep))
    with caplog.at_level(logging.CRITICAL, logger="bastion.error"):
        result = await call(stack, "GET", "/api/v1/orders")
    assert result.status == status
    assert result.json()["error"] in ("An internal error occurred", "Conflict")
    # header() fails when a header is repeated: the 500 carries each one exactly once.
    assert result.header("RateLimit-Policy") == '"api";q=100;w=900'
    assert result.header("RateLimit") == '"api";r=99;t=900'
    assert result.header("X-RateLimit-Limit") == "100"
    assert result.header("X-RateLimit-Remaining") == "99"
    assert b"Traceback" not in result.body and b"Internal Server Error" not in result.body


async def test_errors_outside_every_rule_get_no_rate_headers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stack = SafeErrorsMiddleware(limited(_raises))
    with caplog.at_level(logging.CRITICAL, logger="bastion.error"):
        result = await call(stack, "GET", "/healthz")
    assert result.status == 500
    assert result.header("RateLimit") is None and result.header("X-RateLimit-Limit") is None


async def test_a_500_in_the_whole_stack_is_a_limited_response(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through secure(): the route's exception becomes the contract's 500 with every header."""

    async def crash(_request: Any) -> Any:
        raise RuntimeError("postgresql://admin:hunter2@db/prod")

    app = Starlette(routes=[Route("/api/v1/crash", crash)])
    settings = load_settings(insecure_http=True, data_dir=str(tmp_path))
    with caplog.at_level(logging.CRITICAL, logger="bastion.error"):
        result = await call(secure(app, settings=settings), "GET", "/api/v1/crash")
    assert result.status == 500
    assert result.json()["error"] == "An internal error occurred"
    assert b"hunter2" not in result.body
    assert result.header("X-RateLimit-Limit") == "100"
    assert result.header("RateLimit-Policy") == '"api";q=100;w=900'
    assert result.header("X-Request-ID") == result.json()["requestId"]
    assert result.header("X-Content-Type-Options") == "nosniff"


@pytest.mark.parametrize("inside_safe_errors", [False, True], ids=["alone", "inside-safe-errors"])
async def test_refunds_and_headers_agree_alone_and_inside_safe_errors(
    inside_safe_errors: bool, clock: FakeClock
) -> None:
    """Inside safe errors the headers travel through its list; a refund must still show."""
    app, _ = login_app()
    mw = limited(app, clock=clock, sleep=no_sleep)
    stack = SafeErrorsMiddleware(mw) if inside_safe_errors else mw
    for _ in range(3):
        ok = await call(
            stack, "POST", "/api/v1/auth/login", body=creds("correct horse battery staple")
        )
        assert ok.status == 200
        assert sfv(ok.header("RateLimit"))[1] == ("auth", {"r": 5, "t": 0})
    wrong = await call(stack, "POST", "/api/v1/auth/login", body=creds("guess"))
    assert wrong.status == 401
    assert sfv(wrong.header("RateLimit"))[1] == ("auth", {"r": 4, "t": 900})
    assert wrong.header("X-RateLimit-Remaining") == "4"  # the tightest rule
    assert len(wrong.header_list("RateLimit")) == 1
