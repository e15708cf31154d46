"""Real accounts and real access tokens on a running ``bastion serve`` (for the orders tests)."""

from __future__ import annotations

import secrets

import httpx

# High limits: these tests exercise the orders API, not the rate limiter.
GENEROUS_LIMITS = {
    "BASTION_API_LIMIT": "1000000/15m",
    "BASTION_API_SLOWDOWN_AFTER": "1000000",
    "BASTION_AUTH_LIMIT": "1000000/15m",
}


def new_user(client: httpx.Client) -> dict[str, str]:
    """Register a fresh account, log in, and return its ``Authorization`` header."""
    email = f"user-{secrets.token_hex(6)}@example.test"
    password = "correct horse battery staple " + secrets.token_hex(4)
    registered = client.post("/api/v1/auth/register", json={"email": email, "password": password})
    assert registered.status_code == 202, registered.text
    login = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    return {"Authorization": f"Bearer {token}"}
