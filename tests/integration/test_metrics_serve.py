"""Metrics of a real `bastion serve` with two workers, read with prometheus_client's own text
parser: per-route counts and latency, the security events an operator watches, backends and
pools; on a listener of their own, never on the public port; the start-up line."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.conftest import Server, start_server
from tests.support import free_port, wait_until

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("metrics")
    metrics_port = free_port()
    srv = start_server(
        tmp,
        env={
            "BASTION_METRICS_PORT": str(metrics_port),
            "BASTION_AUTH_LIMIT": "3/15m",
            "BASTION_API_LIMIT": "1000/15m",
            "BASTION_API_SLOWDOWN_AFTER": "1000",
        },
        args=["--workers", "2"],
    )
    srv.env["metrics_port"] = str(metrics_port)
    yield srv
    srv.stop()


def _scrape(server: Server) -> dict[str, list[Sample]]:
    text = httpx.get(f"http://127.0.0.1:{server.env['metrics_port']}/metrics", timeout=10).text
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def _value(families: dict[str, list[Sample]], sample: str, **labels: str) -> float:
    name = sample.removesuffix("_total").removesuffix("_count").removesuffix("_bucket")
    total = 0.0
    for found in families.get(name, []):
        if found.name == sample and all(found.labels.get(k) == v for k, v in labels.items()):
            total += found.value
    return total


def test_requests_and_security_events_are_counted_across_workers(server: Server) -> None:
    email = f"m-{secrets.token_hex(4)}@example.test"
    with server.client() as client:
        # Refresh-token reuse: rotate once, then present the first token again.
        assert client.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
        ).is_success
        login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        first = login.cookies["refresh_token"]
        client.cookies.clear()
        rotated = client.post("/api/v1/auth/refresh", headers={"Cookie": f"refresh_token={first}"})
        assert rotated.status_code == 200
        reused = client.post("/api/v1/auth/refresh", headers={"Cookie": f"refresh_token={first}"})
        assert reused.status_code == 401
        # A forged bearer token, on a templated route.
        order = "/api/v1/orders/7b0e7f4c-7a43-4d7a-9a0f-0d1b0f0c8e11"
        forged = client.get(order, headers={"Authorization": "Bearer a.b.c"})
        assert forged.status_code == 401
        # Failed logins until the auth limit refuses (3 failures, then 429).
        statuses = [
            client.post(
                "/api/v1/auth/login", json={"email": email, "password": "not the password!!"}
            ).status_code
            for _ in range(4)
        ]
        assert statuses[-1] == 429
        for _ in range(5):
            assert client.get("/healthz").status_code == 200
        # Never on the public port.
        assert client.get("/metrics").status_code == 404

    def counted() -> bool:
        families = _scrape(server)
        return _value(families, "bastion_http_requests_total", route="/healthz", status="200") >= 5

    wait_until(counted, timeout=10, what="the health checks counted")
    families = _scrape(server)
    assert _value(families, "bastion_refresh_token_reuse_total") == 1
    assert _value(families, "bastion_refused_access_tokens_total") >= 1
    # The templated route, never the raw path (an attacker must not mint series).
    assert (
        _value(
            families,
            "bastion_http_requests_total",
            method="GET",
            route="/api/v1/orders/{order_id}",
            status="401",
        )
        == 1
    )
    assert not any("7b0e7f4c" in str(s.labels) for samples in families.values() for s in samples)
    assert _value(families, "bastion_failed_logins_total") == statuses.count(401)
    assert _value(families, "bastion_ratelimit_refusals_total") == statuses.count(429) >= 1
    # The successful login and the refused passwords reached the route; the 429s were
    # answered by the rate-limit layer before routing.
    logins = 1 + statuses.count(401)
    route = "/api/v1/auth/login"
    assert _value(families, "bastion_http_request_duration_seconds_count", route=route) == logins
    assert (
        _value(families, "bastion_http_request_duration_seconds_bucket", route=route, le="+Inf")
        == logins
    )
    assert _value(
        families, "bastion_http_requests_total", route="unmatched", status="429"
    ) == statuses.count(429)


def test_backends_and_pools_are_reported(server: Server) -> None:
    def sampled() -> bool:
        return "bastion_backend_up" in _scrape(server)

    wait_until(sampled, timeout=10, what="the backend sampler")
    families = _scrape(server)
    assert _value(families, "bastion_backend_up", backend="database") == 1
    assert _value(families, "bastion_backend_up", backend="ratelimit_store") == 1
    pools = {(s.labels["pool"], s.labels["state"]) for s in families["bastion_db_pool_connections"]}
    assert ("orm", "idle") in pools and ("orm", "in_use") in pools


def test_the_metrics_listener_is_loopback_only(server: Server) -> None:
    port = int(server.env["metrics_port"])
    addresses = {
        str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    }
    for address in addresses - {"127.0.0.1"}:
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=2).close()


def test_the_startup_line_names_what_runs(server: Server) -> None:
    lines = [line for line in server.log().splitlines() if "bastion serving" in line]
    assert len(lines) == 1
    line = lines[0]
    assert f"https://127.0.0.1:{server.port}" in line
    assert f"http://127.0.0.1:{server.http_port} (redirect to HTTPS)" in line
    assert f"http://127.0.0.1:{server.env['metrics_port']}/metrics" in line
    assert "2 workers" in line
    assert "database sqlite+aiosqlite:///" in line
    assert "rate-limit store memory" in line and "mailer outbox" in line


def test_the_startup_line_hides_database_and_redis_credentials(tmp_path: Path) -> None:
    from bastion.cli.serve import startup_line
    from bastion.config import load_settings

    settings = load_settings(
        data_dir=tmp_path,
        database_url="postgresql+asyncpg://bob:hunter2@db.example:5433/app?password=x",
        redis_url="redis://:redispw@cache.example:6379/1",
    )
    line = startup_line(settings, redirect=False)
    assert "hunter2" not in line and "bob" not in line and "redispw" not in line
    assert "postgresql+asyncpg://db.example:5433/app" in line
    assert "redis://cache.example:6379/1" in line


def test_a_metrics_port_equal_to_the_public_port_is_one_line(tmp_path: Path) -> None:
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "bastion", "serve", "--port", str(port)],
        env={"BASTION_METRICS_PORT": str(port), "BASTION_DATA_DIR": str(tmp_path / "d")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "BASTION_METRICS_PORT" in done.stderr
