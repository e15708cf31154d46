"""GET /api/v1/me: the account behind the access token, nothing more."""

from __future__ import annotations

from pathlib import Path

from tests.support_auth import app_client, auth_app, bearer_for, create_account


async def test_me_returns_id_email_and_role_only(tmp_path: Path) -> None:
    app = auth_app(tmp_path)
    async with app_client(app) as client:
        account = await create_account(app, email="ada@example.com")
        response = await client.get("/api/v1/me", headers=bearer_for(app, account.id))
    assert response.status_code == 200
    assert response.json() == {"id": str(account.id), "email": "ada@example.com", "role": "user"}
    assert "password" not in response.text and "argon2" not in response.text


async def test_me_reports_the_stored_role_of_the_token_subject(tmp_path: Path) -> None:
    app = auth_app(tmp_path)
    async with app_client(app) as client:
        admin = await create_account(app, role="admin")
        response = await client.get("/api/v1/me", headers=bearer_for(app, admin.id, "admin"))
    assert response.json()["role"] == "admin"


async def test_me_without_a_token_is_401_with_a_plain_bearer_challenge(tmp_path: Path) -> None:
    app = auth_app(tmp_path)
    async with app_client(app) as client:
        response = await client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"error": "Authentication required", "requestId": ""}


async def test_each_user_sees_only_themselves(tmp_path: Path) -> None:
    app = auth_app(tmp_path)
    async with app_client(app) as client:
        alice, bob = await create_account(app), await create_account(app)
        seen = [
            (await client.get("/api/v1/me", headers=bearer_for(app, who.id))).json()["id"]
            for who in (alice, bob)
        ]
    assert seen == [str(alice.id), str(bob.id)]


async def test_me_answers_only_get(tmp_path: Path) -> None:
    app = auth_app(tmp_path)
    async with app_client(app) as client:
        account = await create_account(app)
        response = await client.post("/api/v1/me", headers=bearer_for(app, account.id))
    assert response.status_code == 405
