"""The examples in ``examples/``, run as a user runs them: ``python -m uvicorn examples.x:app``
on a free port, requests over real HTTP, and the server's stderr read back."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import require_tcp, wait_until
from tests.uvicorn_process import Process, running

pytestmark = pytest.mark.integration

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def access_lines(server: Process) -> list[dict[str, object]]:
    out = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == "access":
                out.append(entry)
    return out


# --- examples/starlette_ratelimits.py -------------------------------------------------------
@pytest.fixture
def starlette_example(tmp_path: Path) -> Iterator[Process]:
    with running("examples.starlette_ratelimits:app", tmp_path, ready_path="/search") as server:
        yield server


def test_starlette_search_rule_headers(starlette_example: Process) -> None:
    with starlette_example.client() as client:
        first = client.get("/search", params={"q": "x"})
        second = client.get("/search")
    assert first.status_code == 200  # plain HTTP on loopback: local development, served
    # The readiness probe was the first request of the window.
    assert first.headers["ratelimit-policy"] == '"search";q=30;w=60'
    assert first.headers["ratelimit"] == '"search";r=28;t=60'
    assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"]) == (
        "30",
        "28",
    )
    assert second.headers["x-ratelimit-remaining"] == "27"
    assert first.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_starlette_login_counts_failures_only_and_then_refuses_the_right_password(
    starlette_example: Process,
) -> None:
    good = {"email": "ada@example.com", "password": "correct horse battery staple"}
    bad = {**good, "password": "wrong"}
    with starlette_example.client() as client:
        ok = client.post("/login", json=good)
        assert ok.status_code == 200
        assert ok.headers["ratelimit"] == '"login";r=5;t=0'  # the success gave its charge back
        for attempt in range(5):
            refused = client.post("/login", json=bad)
            assert refused.status_code == 401
            assert refused.headers["x-ratelimit-remaining"] == str(4 - attempt)
        blocked = client.post("/login", json=good)
    assert blocked.status_code == 429
    assert blocked.json() == {
        "error": "Too many authentication attempts",
        "requestId": blocked.headers["x-request-id"],
    }
    assert 890 <= int(blocked.headers["retry-after"]) <= 900
    assert blocked.headers["ratelimit"].startswith('"login";r=0;t=')


def test_starlette_export_limit_in_the_endpoint(starlette_example: Process) -> None:
    with starlette_example.client() as client:
        answers = [client.post("/export", json={}) for _ in range(4)]
    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert answers[0].headers["ratelimit-policy"] == '"export";q=3;w=3600'
    assert answers[2].headers["x-ratelimit-remaining"] == "0"
    refused = answers[3]
    assert refused.json()["error"] == "Too many requests"
    assert 3590 <= int(refused.headers["retry-after"]) <= 3600
    assert refused.headers["ratelimit"].startswith('"export";r=0;t=')
    assert refused.headers["x-request-id"] == refused.json()["requestId"]


def test_starlette_access_lines_reach_stderr_as_json(starlette_example: Process) -> None:
    with starlette_example.client() as client:
        rid = client.get("/search", params={"token": "s3cr3t-value"}).headers["x-request-id"]

    def line() -> dict[str, object] | None:
        return next((e for e in access_lines(starlette_example) if e["request_id"] == rid), None)

    entry = wait_until(line, timeout=5, what="the access line")
    assert isinstance(entry, dict)
    assert RFC3339.fullmatch(str(entry["timestamp"]))
    assert entry["level"] == "info"
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/search", 200)
    assert entry["query"] == ["token"]
    assert isinstance(entry["duration_ms"], float)
    log = starlette_example.log()
    assert "s3cr3t-value" not in log  # uvicorn's plain access line (query and all) is off
    assert '"GET /search' not in log


# --- examples/fastapi_app.py ---------------------------------------------------------------
@pytest.fixture
def fastapi_example(tmp_path: Path) -> Iterator[Process]:
    with running("examples.fastapi_app:app", tmp_path, ready_path="/openapi.json") as server:
        yield server


def test_fastapi_validation_error_is_the_contract_400(fastapi_example: Process) -> None:
    with fastapi_example.client() as client:
        response = client.post("/api/reports", json={"title": "Q3", "months": 99, "x": 1})
    assert response.status_code == 400
    assert response.json() == {
        "error": "Invalid request body",
        "requestId": response.headers["x-request-id"],
        "details": {"months": ["Input should be less than or equal to 24"], "x": ["Unknown field"]},
    }


def test_fastapi_route_limit_joins_the_api_policy(fastapi_example: Process) -> None:
    with fastapi_example.client() as client:
        answers = [client.post("/api/reports", json={"title": "Q3", "months": 3}) for _ in range(6)]
    assert [a.status_code for a in answers] == [202] * 5 + [429]
    first = answers[0]
    assert first.headers["ratelimit-policy"] == '"api";q=100;w=900, "create_report";q=5;w=900'
    assert first.headers["ratelimit"] == '"api";r=99;t=900, "create_report";r=4;t=900'
    # X-RateLimit-* describe the most restrictive policy: the route's.
    assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"]) == (
        "5",
        "4",
    )
    refused = answers[5]
    assert refused.json() == {
        "error": "Too many requests",
        "requestId": refused.headers["x-request-id"],
    }
    assert 890 <= int(refused.headers["retry-after"]) <= 900
    assert refused.headers["ratelimit-policy"] == '"api";q=100;w=900, "create_report";q=5;w=900'
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert len(refused.headers.get_list("ratelimit")) == 1  # one merged header, never two


def test_fastapi_docs_page_and_document(fastapi_example: Process) -> None:
    with fastapi_example.client() as client:
        page = client.get("/docs")
        bundle = client.get("/docs/swagger-ui-bundle.js")
        document = client.get("/openapi.json").json()
        other = client.get("/api/reports/1")
    nonce = re.search(r"'nonce-([A-Za-z0-9_-]{22})'", page.headers["content-security-policy"])
    assert page.status_code == 200 and nonce is not None
    assert f'<script nonce="{nonce.group(1)}" src="/docs/swagger-ui-bundle.js">' in page.text
    assert bundle.status_code == 200
    assert bundle.headers["content-type"] == "text/javascript; charset=utf-8"
    responses = document["paths"]["/api/reports"]["post"]["responses"]
    assert "422" not in responses and "400" in responses
    assert other.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


# --- examples/production.py ----------------------------------------------------------------
TARGET = "examples.production:app"


def _production_env(redis_db: int) -> dict[str, str]:
    return {
        "API_TRUSTED_PROXIES": "127.0.0.1",
        "API_ALLOWED_HOSTS": "api.example.com",
        "API_CORS_ORIGINS": "https://app.example.com",
        "API_REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
    }


PROXIED = {"Host": "api.example.com", "X-Forwarded-Proto": "https"}
# As the example's docstring says: forwarding headers are bastion's job (uvicorn would
# otherwise believe any from 127.0.0.1 before the stack sees the request).
UVICORN_ARGS = ["--no-proxy-headers", "--no-server-header"]


@pytest.fixture
def production_pair(tmp_path: Path) -> Iterator[tuple[Process, Process]]:
    """Two processes of the production example sharing one Redis, as two hosts would."""
    require_tcp("127.0.0.1", 6379, "Redis")
    env = _production_env(redis_db=9)
    with (
        running(TARGET, tmp_path, env=env, args=UVICORN_ARGS, ready_path="/healthz") as one,
        running(TARGET, tmp_path, env=env, args=UVICORN_ARGS, ready_path="/healthz") as two,
    ):
        yield one, two


def test_production_believes_the_proxy_and_enforces_https(
    production_pair: tuple[Process, Process],
) -> None:
    server, _ = production_pair
    client_ip = f"198.51.100.{secrets.randbelow(250) + 1}"
    with server.client() as client:
        proxied = client.get("/api/whoami", headers={**PROXIED, "X-Forwarded-For": client_ip})
        plain_get = client.get("/api/whoami?x=1", headers={"Host": "api.example.com"})
        plain_post = client.post("/api/token", headers={"Host": "api.example.com"}, json={})
        poisoned = client.get("/api/whoami", headers={"Host": "evil.example"})
        local = client.get("/api/whoami", headers={"Host": "localhost"})
    assert proxied.status_code == 200
    assert proxied.json() == {"client": client_ip, "scheme": "https"}
    assert proxied.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    # Plain HTTP through the proxy: redirect to port 443 (omitted), refusal for a body.
    assert plain_get.status_code == 301
    assert plain_get.headers["location"] == "https://api.example.com/api/whoami?x=1"
    assert plain_post.status_code == 403
    assert plain_post.json()["error"] == "HTTPS required"
    assert poisoned.status_code == 400  # allowed_hosts: no redirect to a foreign host
    # https="redirect": no local-development exception (and localhost is not an allowed host).
    assert local.status_code == 400 and "client" not in local.json()


def test_production_ignores_forwarding_headers_from_anyone_else(tmp_path: Path) -> None:
    """The same example trusting another proxy address: our loopback peer is a stranger."""
    require_tcp("127.0.0.1", 6379, "Redis")
    env = {**_production_env(redis_db=9), "API_TRUSTED_PROXIES": "10.9.9.9"}
    with (
        running(TARGET, tmp_path, env=env, args=UVICORN_ARGS, ready_path="/healthz") as server,
        server.client() as client,
    ):
        forged = client.get("/api/whoami", headers={**PROXIED, "X-Forwarded-For": "203.0.113.66"})
    assert forged.status_code == 301  # X-Forwarded-Proto from an untrusted peer: still HTTP


def test_production_budget_is_shared_through_redis(
    production_pair: tuple[Process, Process],
) -> None:
    one, two = production_pair
    client_ip = f"2001:db8:{secrets.randbelow(65535):x}::1"  # a fresh /64: a fresh budget
    headers = {**PROXIED, "X-Forwarded-For": client_ip}
    statuses = []
    with one.client() as first, two.client() as second:
        for attempt in range(6):
            client = first if attempt % 2 == 0 else second
            response = client.post("/api/token", headers=headers, json={})
            statuses.append(response.status_code)
    # Failed token requests on either process drain one budget: 5 failures, then 429.
    assert statuses == [401, 401, 401, 401, 401, 429]
    with two.client() as client:
        status = client.get("/api/whoami", headers=headers)
    assert status.headers["ratelimit-policy"] == '"api";q=100;w=900'
    assert status.headers["ratelimit"].startswith('"api";r=93;')  # 7 requests on both hosts


def test_production_cors_for_the_listed_origin_only(
    production_pair: tuple[Process, Process],
) -> None:
    server, _ = production_pair
    with server.client() as client:
        allowed = client.get(
            "/api/whoami", headers={**PROXIED, "Origin": "https://app.example.com"}
        )
        foreign = client.get("/api/whoami", headers={**PROXIED, "Origin": "https://evil.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert not [k for k in foreign.headers if k.lower().startswith("access-control-")]


def test_examples_module_exposes_a_secured_app() -> None:
    """Each example's ``app`` is the stack (an outermost request-id layer), not the bare app."""
    import examples.production as production
    import examples.starlette_ratelimits as starlette_example

    for module in (production, starlette_example):
        assert type(module.app).__name__ == "RequestIDMiddleware"
