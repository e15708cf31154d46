"""The deep scan against the real thing: `bastion serve` with its OpenAPI document exposed, two
registered users, an order each, and every depth flag. It must still grade A+ with no failure:
its orders are per user (BOLA refused both ways), every operation refuses anonymous requests
with a challenge, and the scan's own order is deleted again."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.scanner.context import ScanOptions
from bastion.scanner.runner import scan

pytestmark = pytest.mark.integration

ORDER = {
    "productId": "6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b",
    "quantity": 2,
    "address": {"street": "1 Main St", "city": "Springfield", "country": "US"},
}


def _user(client: Any, email: str) -> str:
    credentials = {"email": email, "password": "correct horse battery staple"}
    assert client.post("/api/v1/auth/register", json=credentials).status_code == 202
    login = client.post("/api/v1/auth/login", json=credentials)
    assert login.status_code == 200, login.text
    token: str = login.json()["access_token"]
    created = client.post(
        "/api/v1/orders", json=ORDER, headers={"Authorization": f"Bearer {token}"}
    )
    assert created.status_code == 201, created.text
    return token


# A client may send 100 API requests per 15 minutes by default, slowed down after 50: the
# sweep stops when half the advertised quota is spent (coverage.stopped says so). With a
# larger quota it covers every operation.
LIMITS = {
    "default": {},
    "raised": {"BASTION_API_LIMIT": "2000/15m", "BASTION_API_SLOWDOWN_AFTER": "1500"},
}


@pytest.mark.parametrize("limits", sorted(LIMITS))
async def test_bastion_serve_deep_scan_with_two_users_is_a_plus(serve: Any, limits: str) -> None:
    server = serve(
        env={
            "BASTION_EXPOSE_DOCS": "true",
            "BASTION_CORS_ORIGINS": "https://app.example.com",
            **LIMITS[limits],
        }
    )
    with server.client() as client:
        if client.get("/api/v1/me").status_code == 404:
            pytest.skip("bastion serve does not route /api/v1/me yet (service not wired)")
        token_a = _user(client, "alice@example.com")
        token_b = _user(client, "bob@example.com")
        orders_before = client.get(
            "/api/v1/orders", headers={"Authorization": f"Bearer {token_a}"}
        ).json()["items"]
    report = await scan(
        server.url,
        ScanOptions(
            ca_file=str(server.cert_path),
            http_url=server.http_url,
            token=token_a,
            token_b=token_b,
            active=True,
            login_email="alice@example.com",
            origins=("https://app.example.com",),
            ignore={
                "exposure.openapi": "exposed on purpose: the document maps the API",
                "exposure.docs-ui": "exposed on purpose with the document",
            },
        ),
    )
    problems = [
        f"{f.status} {f.id}: {f.reason} {f.evidence[:600]}"
        for f in report.findings
        if f.status in {"fail", "warn", "error"} and f.severity != "info"
    ]
    statuses = {f.id: f.status for f in report.findings}
    assert report.coverage is not None
    assert report.coverage.source.startswith("openapi ")
    if limits == "raised":
        assert not report.coverage.stopped, report.coverage
        assert (
            report.coverage.probed == report.coverage.operations - report.coverage.not_probed_writes
        )
    else:
        assert "quota is half spent" in report.coverage.stopped, report.coverage
    assert not [f for f in report.findings if f.status == "error"], problems
    for check_id in (
        "auth.bola",
        "auth.operations-protected",
        "auth.operations-challenge",
        "disclosure.operation-errors",
        "headers.operation-errors",
    ):
        assert statuses[check_id] == "pass", (check_id, problems)
    assert statuses["cors.trusted-origin-variants"] == "pass", problems
    reasons = {f.id: f.reason for f in report.findings}
    assert "1 origin(s) granted" in reasons["cors.trusted-origin-variants"]
    assert "clean-up DELETE" in reasons["auth.bfla"], reasons["auth.bfla"]
    assert report.grade == "A+", problems
    with server.client() as client:
        orders_after = client.get(
            "/api/v1/orders", headers={"Authorization": f"Bearer {token_a}"}
        ).json()["items"]
    assert [o["id"] for o in orders_after] == [o["id"] for o in orders_before]
