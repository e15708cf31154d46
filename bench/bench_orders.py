"""Cost of the orders API's own work: body validation, cursors, and whole requests in-process.

Run: ``.venv/bin/python bench/bench_orders.py``. Prints microseconds per operation (best of
several runs, the least disturbed by other processes). Requests go through the real FastAPI
app (error handlers, routes, lifecycle middleware, SQLite in a temporary directory) with an
in-memory stand-in for the token verifier, so the figures are the service's, not TLS's or
the security layers' (see bench_layers.py for those).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bastion.asgi import Scope
from bastion.auth import Principal
from bastion.auth.bearer import RefusedToken, bearer_token
from bastion.config import Settings
from bastion.service import errors
from bastion.service.db import Database
from bastion.service.models import User
from bastion.service.pagination import Keyset, decode_cursor, encode_cursor
from bastion.service.routes import orders as order_routes
from bastion.service.schemas import OrderCreate
from bench.timing import best_of, best_of_async, print_micros

BODY = {
    "productId": "0b8e7a52-6f1c-4d8e-9a3b-2f6c1d0e9a77",
    "quantity": 2,
    "address": {"street": "1 Rue de Rivoli", "city": "Paris", "country": "fr"},
}


class _Verifier:
    """A stand-in BearerAuth: one opaque token, one principal (the routes' cost, not JWTs)."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    async def authenticate(self, scope: Scope) -> Principal:
        if bearer_token(scope) != "bench":
            raise RefusedToken("unknown")
        return self.principal


async def requests(tmp: Path) -> list[tuple[str, float]]:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings = Settings(data_dir=tmp)
    app.state.database = Database(f"sqlite+aiosqlite:///{tmp / 'bench.db'}")
    user_id = uuid.uuid4()
    claims = {"sub": str(user_id), "role": "user", "jti": "jti", "type": "access", "iat": 0}
    app.state.bearer_auth = _Verifier(Principal(str(user_id), frozenset(), claims))
    errors.install(app)
    order_routes.install(app)
    await app.state.database.create_schema()
    async with app.state.database.session() as session:
        session.add(User(id=user_id, email="bench@example.test", password_hash="-"))
        await session.commit()
    headers = {"Authorization": "Bearer bench"}
    transport = httpx.ASGITransport(app=app)
    out: list[tuple[str, float]] = []
    async with httpx.AsyncClient(transport=transport, base_url="https://bench") as client:
        created: list[str] = []

        async def post() -> None:
            response = await client.post("/api/v1/orders", json=BODY, headers=headers)
            created.append(response.json()["id"])

        out.append(("POST /api/v1/orders (201)", await best_of_async(post, 200)))
        one = created[0]

        async def get_one() -> None:
            await client.get(f"/api/v1/orders/{one}", headers=headers)

        async def get_v2() -> None:
            await client.get(f"/api/orders/{one}", headers={**headers, "API-Version": "2"})

        async def missing() -> None:
            await client.get(f"/api/v1/orders/{uuid.uuid4()}", headers=headers)

        async def page() -> None:
            await client.get("/api/v1/orders?limit=20", headers=headers)

        async def invalid() -> None:
            await client.post("/api/v1/orders", json={**BODY, "quantity": "1"}, headers=headers)

        out.append(("GET /api/v1/orders/{id} (200)", await best_of_async(get_one, 300)))
        out.append(("GET /api/orders/{id}, API-Version: 2", await best_of_async(get_v2, 300)))
        out.append(("GET unknown id (404)", await best_of_async(missing, 300)))
        out.append(("GET /api/v1/orders?limit=20", await best_of_async(page, 200)))
        out.append(("POST invalid body (400)", await best_of_async(invalid, 300)))
    await app.state.database.close()
    return out


def main() -> None:
    raw = json.dumps(BODY)
    parsed: Any = json.loads(raw)
    cursor = encode_cursor(Keyset(datetime.now(UTC), uuid.uuid4()))
    rows = [
        (
            "OrderCreate.model_validate (parsed JSON)",
            best_of(lambda: OrderCreate.model_validate(parsed), 20_000),
        ),
        (
            "encode_cursor",
            best_of(lambda: encode_cursor(Keyset(datetime.now(UTC), uuid.uuid4())), 20_000),
        ),
        ("decode_cursor", best_of(lambda: decode_cursor(cursor), 20_000)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        rows += asyncio.run(requests(Path(tmp)))
    print_micros(rows)


if __name__ == "__main__":
    main()
