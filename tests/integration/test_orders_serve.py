"""The orders API through a real ``bastion serve`` (TLS, every layer, real accounts and JWTs):
IDOR from the attacker's side, the body rules, versions, and PostgreSQL as the database."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import Server
from tests.integration.orders_auth import GENEROUS_LIMITS, new_user
from tests.service.auth_db import database_env
from tests.support import require_tcp

pytestmark = pytest.mark.integration

ORDER: dict[str, Any] = {
    "productId": "0b8e7a52-6f1c-4d8e-9a3b-2f6c1d0e9a77",
    "quantity": 2,
    "address": {"street": "1 Rue de Rivoli", "city": "Paris", "country": "fr"},
}
ServeFactory = Callable[..., Server]


def create(client: httpx.Client, who: dict[str, str], **address: str) -> dict[str, Any]:
    body = {**ORDER, "address": {**ORDER["address"], **address}}
    response = client.post("/api/v1/orders", json=body, headers=who)
    assert response.status_code == 201, response.text
    return dict(response.json())


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error body, after checking its requestId is the X-Request-ID header."""
    body = dict(response.json())
    assert body.pop("requestId") == response.headers["x-request-id"]
    return body


@pytest.fixture
def server(serve: ServeFactory) -> Server:
    return serve(env=GENEROUS_LIMITS)


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def test_idor_from_the_attackers_side(client: httpx.Client) -> None:
    """Bob, with his own valid token, tries Alice's ids everywhere: he sees only 404s that
    are byte-for-byte those of random ids, and Alice's order survives."""
    alice, bob = new_user(client), new_user(client)
    victim = create(client, alice)
    bobs = create(client, bob)
    assert uuid.UUID(victim["id"]).version == 4

    for prefix in ("/api/v1/orders", "/api/v2/orders", "/api/orders"):
        theirs = client.get(f"{prefix}/{victim['id']}", headers=bob)
        random = client.get(f"{prefix}/{uuid.uuid4()}", headers=bob)
        assert theirs.status_code == random.status_code == 404
        assert error_of(theirs) == error_of(random) == {"error": "Not found"}
        assert len(theirs.content) == len(random.content)
        assert set(theirs.headers) == set(random.headers)

    for prefix in ("/api/v1/orders", "/api/orders"):
        deleted = client.delete(f"{prefix}/{victim['id']}", headers=bob)
        assert deleted.status_code == 404 and error_of(deleted) == {"error": "Not found"}
    assert client.get(f"/api/v1/orders/{victim['id']}", headers=alice).json() == victim

    listed = client.get("/api/v1/orders", headers=bob).json()
    assert [o["id"] for o in listed["items"]] == [bobs["id"]]

    # Alice's cursor, replayed by Bob, pages through Bob's orders only.
    for _ in range(2):
        create(client, alice)
    page = client.get("/api/v1/orders?limit=1", headers=alice).json()
    assert page["next_cursor"]
    replay = client.get(f"/api/v1/orders?cursor={page['next_cursor']}", headers=bob)
    assert replay.status_code == 200
    assert {o["id"] for o in replay.json()["items"]} <= {bobs["id"]}

    # No token, a forged token: 401 with the RFC 6750 challenge.
    anonymous = client.get(f"/api/v1/orders/{victim['id']}")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    forged_token = bob["Authorization"][:-4] + "AAAA"
    forged = client.get("/api/v1/orders", headers={"Authorization": forged_token})
    assert forged.status_code == 401
    assert forged.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize(
    "raw_id", ["abc", "1", "1'%20OR%20'1'='1", "0b8e7a526f1c4d8e9a3b2f6c1d0e9a77"]
)
def test_malformed_ids_are_plain_404s(client: httpx.Client, raw_id: str) -> None:
    alice = new_user(client)
    response = client.get(f"/api/v1/orders/{raw_id}", headers=alice)
    assert response.status_code == 404
    assert error_of(response) == {"error": "Not found"}


def test_body_rules_through_the_stack(client: httpx.Client) -> None:
    alice = new_user(client)
    payload = json.dumps(ORDER).encode()

    def post(content: bytes, **headers: str) -> httpx.Response:
        return client.post("/api/v1/orders", content=content, headers={**alice, **headers})

    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx"):
        refused = post(payload, **{"Content-Type": content_type})
        assert refused.status_code == 415, content_type
        assert error_of(refused) == {"error": "Unsupported media type"}
    assert post(payload).status_code == 415  # no Content-Type at all

    big = json.dumps({**ORDER, "padding": "x" * 70_000}).encode()
    too_large = post(big, **{"Content-Type": "application/json"})
    assert too_large.status_code == 413
    assert error_of(too_large) == {"error": "Request body too large"}

    malformed = post(b'{"productId": ', **{"Content-Type": "application/json"})
    assert malformed.status_code == 400 and error_of(malformed)["error"] == "Malformed JSON"

    deep = b'{"a":' * 40 + b"1" + b"}" * 40
    nested = post(deep, **{"Content-Type": "application/json"})
    assert nested.status_code == 400 and error_of(nested)["error"] == "JSON nested too deeply"

    invalid = client.post(
        "/api/v1/orders", json={**ORDER, "quantity": "1", "isAdmin": True}, headers=alice
    )
    assert invalid.status_code == 400
    assert error_of(invalid) == {
        "error": "Invalid request body",
        "details": {"quantity": ["Input should be a valid integer"], "isAdmin": ["Unknown field"]},
    }
    # charset parameter is fine; the rules are about the media type
    ok = post(payload, **{"Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 201


def test_sql_looking_strings_round_trip_verbatim(client: httpx.Client) -> None:
    alice = new_user(client)
    hostile = "'; DROP TABLE orders; -- \" OR 1=1 /*"
    created = create(client, alice, street=hostile, city="x' UNION SELECT 1--")
    got = client.get(f"/api/v1/orders/{created['id']}", headers=alice).json()
    assert got["address"] == {
        "street": hostile,
        "city": "x' UNION SELECT 1--",
        "country": "FR",
    }
    assert client.get("/api/v1/orders", headers=alice).json()["items"] == [got]


def test_versions_through_the_stack(client: httpx.Client) -> None:
    alice = new_user(client)
    order = create(client, alice)
    v1 = client.get(f"/api/v1/orders/{order['id']}", headers=alice)
    h1 = client.get(f"/api/orders/{order['id']}", headers=alice)
    v2 = client.get(f"/api/v2/orders/{order['id']}", headers=alice)
    h2 = client.get(f"/api/orders/{order['id']}", headers={**alice, "API-Version": "2"})
    assert v1.json() == h1.json() == order
    assert v2.json() == h2.json()
    assert v2.json()["data"]["product_id"] == order["productId"]
    assert v2.json()["meta"] == {"apiVersion": 2, "next_cursor": None}
    assert h1.headers["vary"].split(", ").count("API-Version") == 1

    lists = [
        client.get("/api/v1/orders", headers=alice).json(),
        client.get("/api/orders", headers={**alice, "API-Version": "1"}).json(),
    ]
    assert lists[0] == lists[1]

    unknown = client.get("/api/orders", headers={**alice, "API-Version": "3"})
    assert unknown.status_code == 400 and error_of(unknown) == {"error": "Unsupported API version"}

    # POST in version 2: the header path and the URL path agree, Allow included.
    by_header = client.post("/api/orders", json=ORDER, headers={**alice, "API-Version": "2"})
    by_url = client.post("/api/v2/orders", json=ORDER, headers=alice)
    assert by_header.status_code == by_url.status_code == 405
    assert by_header.headers["allow"] == by_url.headers["allow"] == "GET, HEAD"


def test_lifecycle_headers_from_the_environment(serve: ServeFactory) -> None:
    server = serve(
        env={
            **GENEROUS_LIMITS,
            "BASTION_API_V1_DEPRECATION": "2026-01-01T00:00:00Z",
            "BASTION_API_V1_SUNSET": "2027-01-01T00:00:00Z",
            "BASTION_API_V1_DEPRECATION_LINK": "https://docs.example.com/v2-migration",
        }
    )
    with server.client() as client:
        alice = new_user(client)
        v1 = client.get("/api/v1/orders", headers=alice)
        h1 = client.get("/api/orders", headers=alice)
        v2 = client.get("/api/v2/orders", headers=alice)
    for response in (v1, h1):
        assert response.headers["deprecation"] == "@1767225600"
        assert response.headers["sunset"] == "Fri, 01 Jan 2027 00:00:00 GMT"
        assert response.headers["link"] == (
            '<https://docs.example.com/v2-migration>; rel="deprecation"; type="text/html"'
        )
    assert "deprecation" not in v2.headers and "sunset" not in v2.headers


def test_bad_lifecycle_setting_stops_the_start_with_one_line(serve: ServeFactory) -> None:
    server = serve(env={"BASTION_API_V2_SUNSET": "next year"}, wait=False)
    assert server.process.wait(30) != 0
    log = server.log()
    assert "BASTION_API_V2_SUNSET" in log
    assert "Traceback" not in log


def test_docs_are_hidden_unless_exposed(serve: ServeFactory, client: httpx.Client) -> None:
    assert client.get("/openapi.json").status_code == 404
    exposed = serve(env={**GENEROUS_LIMITS, "BASTION_EXPOSE_DOCS": "true"})
    with exposed.client() as c:
        document = c.get("/openapi.json")
    assert document.status_code == 200
    assert "/api/v1/orders/{order_id}" in document.json()["paths"]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database of its own on the local PostgreSQL, dropped afterwards."""
    require_tcp("127.0.0.1", 5432, "PostgreSQL")
    name = f"t_{uuid.uuid4().hex}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    import asyncio

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.mark.postgres
def test_orders_on_postgresql(serve: ServeFactory, postgres_url: str) -> None:
    server = serve(env={**GENEROUS_LIMITS, **database_env(postgres_url), "BASTION_WORKERS": "2"})
    with server.client() as client:
        alice, bob = new_user(client), new_user(client)
        made = [create(client, alice, street=f"{n} ' OR 1=1 --\u00e9") for n in range(5)]
        assert client.get(f"/api/v1/orders/{made[0]['id']}", headers=bob).status_code == 404
        ids: list[str] = []
        cursor = None
        while True:
            query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = client.get(f"/api/v2/orders{query}", headers=alice).json()
            ids += [o["id"] for o in page["data"]]
            cursor = page["meta"]["next_cursor"]
            if cursor is None:
                break
        assert ids == [o["id"] for o in reversed(made)]
        assert client.delete(f"/api/v1/orders/{made[0]['id']}", headers=alice).status_code == 204
