"""The orders endpoints in-process: bodies, 400 details, IDOR from the attacker's side,
v1/v2/header-version equivalence, pagination over HTTP and the OpenAPI document."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from tests.service.orders_app import Tokens, bearer, build_app, order_body, running

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")


@dataclass
class Api:
    client: httpx.AsyncClient
    tokens: Tokens
    alice: dict[str, str]
    bob: dict[str, str]

    async def create(self, who: dict[str, str], **changes: Any) -> dict[str, Any]:
        response = await self.client.post("/api/v1/orders", json=order_body(**changes), headers=who)
        assert response.status_code == 201, response.text
        return dict(response.json())


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    app, tokens = build_app(tmp_path)
    async with running(app) as client:
        yield Api(client, tokens, bearer(await tokens.issue()), bearer(await tokens.issue()))


def without_request_id(response: httpx.Response) -> dict[str, Any]:
    body = dict(response.json())
    assert isinstance(body.pop("requestId"), str)
    return body


# --- creating -------------------------------------------------------------------------------


async def test_create_returns_201_and_the_order_in_v1_shape(api: Api) -> None:
    response = await api.client.post("/api/v1/orders", json=order_body(), headers=api.alice)
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    order = response.json()
    assert set(order) == {"id", "productId", "quantity", "address", "createdAt"}
    assert uuid.UUID(order["id"]).version == 4
    assert order["productId"] == "0b8e7a52-6f1c-4d8e-9a3b-2f6c1d0e9a77"
    assert order["quantity"] == 2
    assert order["address"] == {"street": "1 Rue de Rivoli", "city": "Paris", "country": "FR"}
    assert RFC3339_UTC.fullmatch(order["createdAt"])


@pytest.mark.parametrize(
    ("changes", "details"),
    [
        ({"quantity": 0}, {"quantity": ["Input should be greater than or equal to 1"]}),
        ({"quantity": 101}, {"quantity": ["Input should be less than or equal to 100"]}),
        ({"quantity": 1.5}, {"quantity": ["Input should be a valid integer"]}),
        ({"quantity": "1"}, {"quantity": ["Input should be a valid integer"]}),
        ({"quantity": True}, {"quantity": ["Input should be a valid integer"]}),
        ({"quantity": None}, {"quantity": ["Input should be a valid integer"]}),
        ({"country": "FRA"}, {"address.country": ["String should have at most 2 characters"]}),
        ({"country": "F1"}, {"address.country": ["must be a two-letter country code"]}),
        ({"street": "x" * 201}, {"address.street": ["String should have at most 200 characters"]}),
        ({"city": ""}, {"address.city": ["String should have at least 1 character"]}),
        ({"city": "a\u0000b"}, {"address.city": ["must not contain control characters"]}),
        (
            {"productId": "123"},
            {"productId": ["must be a UUID in its canonical form (8-4-4-4-12 hexadecimal digits)"]},
        ),
        ({"userId": str(uuid.uuid4())}, {"userId": ["Unknown field"]}),
        ({"id": str(uuid.uuid4())}, {"id": ["Unknown field"]}),
    ],
)
async def test_invalid_bodies_get_400_with_dotted_details(
    api: Api, changes: dict[str, Any], details: dict[str, list[str]]
) -> None:
    response = await api.client.post(
        "/api/v1/orders", json=order_body(**changes), headers=api.alice
    )
    assert response.status_code == 400
    assert without_request_id(response) == {"error": "Invalid request body", "details": details}


async def test_all_errors_are_reported_at_once_without_echoing_input(api: Api) -> None:
    secret = "s3cr3t-value-never-echoed"
    body = {"productId": secret, "quantity": secret, "address": {"country": secret}, "x": secret}
    response = await api.client.post("/api/v1/orders", json=body, headers=api.alice)
    assert response.status_code == 400
    details = response.json()["details"]
    assert set(details) == {
        "productId",
        "quantity",
        "address.street",
        "address.city",
        "address.country",
        "x",
    }
    assert secret not in response.text


@pytest.mark.parametrize(
    ("content", "details"),
    [
        (b'{"productId": ', {"body": ["Malformed JSON"]}),
        (b"[]", {"body": ["Input should be a valid dictionary or object to extract fields from"]}),
        (
            b'"order"',
            {"body": ["Input should be a valid dictionary or object to extract fields from"]},
        ),
        (b"", {"body": ["Field required"]}),
    ],
)
async def test_bodies_that_are_not_an_order_object_get_400(
    api: Api, content: bytes, details: dict[str, list[str]]
) -> None:
    headers = {**api.alice, "Content-Type": "application/json"}
    response = await api.client.post("/api/v1/orders", content=content, headers=headers)
    assert response.status_code == 400
    assert without_request_id(response) == {"error": "Invalid request body", "details": details}


@pytest.mark.parametrize(
    "hostile",
    [
        "'; DROP TABLE orders; --",
        "1' OR '1'='1",
        '" UNION SELECT id, user_id FROM orders --',
        "<script>alert(1)</script>",
        "{{7*7}} ${7*7}",
    ],
)
async def test_hostile_looking_strings_are_stored_and_returned_verbatim(
    api: Api, hostile: str
) -> None:
    created = await api.create(api.alice, street=hostile, city=hostile)
    assert created["address"]["street"] == hostile
    got = await api.client.get(f"/api/v1/orders/{created['id']}", headers=api.alice)
    assert got.json()["address"] == {"street": hostile, "city": hostile, "country": "FR"}
    listed = await api.client.get("/api/v1/orders", headers=api.alice)
    assert [o["id"] for o in listed.json()["items"]] == [created["id"]]


# --- authentication -------------------------------------------------------------------------

ROUTES = [
    ("POST", "/api/v1/orders"),
    ("GET", "/api/v1/orders"),
    ("GET", "/api/v1/orders/{id}"),
    ("DELETE", "/api/v1/orders/{id}"),
    ("GET", "/api/v2/orders"),
    ("GET", "/api/v2/orders/{id}"),
    ("POST", "/api/orders"),
    ("GET", "/api/orders"),
    ("GET", "/api/orders/{id}"),
    ("DELETE", "/api/orders/{id}"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    ("authorization", "challenge", "message"),
    [
        (None, "Bearer", "Authentication required"),
        ("Bearer not-a-known-token", 'Bearer error="invalid_token"', "Invalid token"),
        ("Basic YWxpY2U6cGFzc3dvcmQ=", 'Bearer error="invalid_token"', "Invalid token"),
    ],
)
async def test_every_route_needs_a_valid_bearer_token(
    api: Api,
    method: str,
    path: str,
    authorization: str | None,
    challenge: str,
    message: str,
) -> None:
    created = await api.create(api.alice)
    headers = {} if authorization is None else {"Authorization": authorization}
    body = order_body() if method == "POST" else None
    response = await api.client.request(
        method, path.format(id=created["id"]), headers=headers, json=body
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == challenge
    assert without_request_id(response) == {"error": message}


async def test_an_unauthenticated_create_is_refused_before_the_body_is_judged(api: Api) -> None:
    response = await api.client.post("/api/v1/orders", json={"bogus": 1})
    assert response.status_code == 401


# --- IDOR / BOLA from the attacker's side ---------------------------------------------------


@pytest.mark.parametrize("prefix", ["/api/v1/orders", "/api/v2/orders", "/api/orders"])
async def test_reading_someone_elses_order_is_indistinguishable_from_a_random_id(
    api: Api, prefix: str
) -> None:
    victim = await api.create(api.alice)
    theirs = await api.client.get(f"{prefix}/{victim['id']}", headers=api.bob)
    random = await api.client.get(f"{prefix}/{uuid.uuid4()}", headers=api.bob)
    assert theirs.status_code == random.status_code == 404
    assert without_request_id(theirs) == without_request_id(random) == {"error": "Not found"}
    assert sorted(theirs.headers.keys()) == sorted(random.headers.keys())
    assert theirs.headers["content-length"] == random.headers["content-length"]


@pytest.mark.parametrize("prefix", ["/api/v1/orders", "/api/orders"])
async def test_deleting_someone_elses_order_fails_like_a_random_id_and_changes_nothing(
    api: Api, prefix: str
) -> None:
    victim = await api.create(api.alice)
    theirs = await api.client.delete(f"{prefix}/{victim['id']}", headers=api.bob)
    random = await api.client.delete(f"{prefix}/{uuid.uuid4()}", headers=api.bob)
    assert theirs.status_code == random.status_code == 404
    assert without_request_id(theirs) == without_request_id(random) == {"error": "Not found"}
    still = await api.client.get(f"/api/v1/orders/{victim['id']}", headers=api.alice)
    assert still.status_code == 200 and still.json() == victim


async def test_listing_shows_only_the_callers_orders(api: Api) -> None:
    alices = {(await api.create(api.alice))["id"] for _ in range(3)}
    bobs = {(await api.create(api.bob))["id"] for _ in range(2)}
    for path, key in [("/api/v1/orders", "items"), ("/api/v2/orders", "data")]:
        a = await api.client.get(path, headers=api.alice)
        b = await api.client.get(path, headers=api.bob)
        assert {o["id"] for o in a.json()[key]} == alices
        assert {o["id"] for o in b.json()[key]} == bobs


async def test_a_cursor_from_another_user_reveals_nothing_of_theirs(api: Api) -> None:
    """Bob replays Alice's next_cursor (and cursors forged from her ids): Bob's orders only."""
    alices = [(await api.create(api.alice))["id"] for _ in range(5)]
    bobs = {(await api.create(api.bob))["id"] for _ in range(2)}
    page = (await api.client.get("/api/v1/orders?limit=2", headers=api.alice)).json()
    assert page["next_cursor"]
    stolen = await api.client.get(
        f"/api/v1/orders?cursor={page['next_cursor']}&limit=100", headers=api.bob
    )
    assert stolen.status_code == 200
    assert {o["id"] for o in stolen.json()["items"]} <= bobs
    assert not {o["id"] for o in stolen.json()["items"]} & set(alices)


async def test_a_user_can_delete_their_own_order_once(api: Api) -> None:
    mine = await api.create(api.alice)
    first = await api.client.delete(f"/api/v1/orders/{mine['id']}", headers=api.alice)
    assert first.status_code == 204 and first.content == b""
    again = await api.client.delete(f"/api/v1/orders/{mine['id']}", headers=api.alice)
    assert again.status_code == 404
    gone = await api.client.get(f"/api/v1/orders/{mine['id']}", headers=api.alice)
    assert gone.status_code == 404


@pytest.mark.parametrize(
    "raw_id",
    [
        "abc",
        "1",
        "0",
        "-1",
        "null",
        "00000000-0000-0000-0000-00000000000",  # one digit short
        "0b8e7a526f1c4d8e9a3b2f6c1d0e9a77",  # 32 hex digits without hyphens
        "{0b8e7a52-6f1c-4d8e-9a3b-2f6c1d0e9a77}",
        "urn:uuid:0b8e7a52-6f1c-4d8e-9a3b-2f6c1d0e9a77",
        "1' OR '1'='1",
        "1%20OR%201=1",
        "%00",
        "x" * 300,
    ],
)
@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_malformed_ids_get_the_same_404(api: Api, raw_id: str, method: str) -> None:
    await api.create(api.alice)
    response = await api.client.request(method, f"/api/v1/orders/{raw_id}", headers=api.alice)
    assert response.status_code == 404
    assert without_request_id(response) == {"error": "Not found"}


async def test_an_upper_case_id_names_the_same_order(api: Api) -> None:
    mine = await api.create(api.alice)
    response = await api.client.get(f"/api/v1/orders/{mine['id'].upper()}", headers=api.alice)
    assert response.status_code == 200 and response.json()["id"] == mine["id"]


# --- versions ---------------------------------------------------------------------------------


def v1_to_v2(order: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": order["id"],
        "product_id": order["productId"],
        "quantity": order["quantity"],
        "address": order["address"],
        "created_at": order["createdAt"],
    }


async def test_v1_v2_and_header_versions_return_the_same_order(api: Api) -> None:
    order = await api.create(api.alice, country="de")
    path = f"/orders/{order['id']}"
    v1 = await api.client.get(f"/api/v1{path}", headers=api.alice)
    v2 = await api.client.get(f"/api/v2{path}", headers=api.alice)
    h_default = await api.client.get(f"/api{path}", headers=api.alice)
    h1 = await api.client.get(f"/api{path}", headers={**api.alice, "API-Version": "1"})
    h2 = await api.client.get(f"/api{path}", headers={**api.alice, "API-Version": "2"})
    assert v1.json() == h_default.json() == h1.json() == order
    assert (
        v2.json()
        == h2.json()
        == {
            "data": v1_to_v2(order),
            "meta": {"apiVersion": 2, "next_cursor": None},
        }
    )
    for response in (h_default, h1, h2):
        assert response.headers["vary"] == "API-Version"
    assert "vary" not in v1.headers and "vary" not in v2.headers


async def test_v1_v2_and_header_version_lists_are_the_same_pages(api: Api) -> None:
    for _ in range(5):
        await api.create(api.alice)
    v1 = (await api.client.get("/api/v1/orders?limit=3", headers=api.alice)).json()
    h1 = (await api.client.get("/api/orders?limit=3", headers=api.alice)).json()
    v2 = (await api.client.get("/api/v2/orders?limit=3", headers=api.alice)).json()
    h2 = (
        await api.client.get("/api/orders?limit=3", headers={**api.alice, "API-Version": "2"})
    ).json()
    assert v1 == h1
    assert v2 == h2
    assert set(v1) == {"items", "next_cursor"}
    assert v2["data"] == [v1_to_v2(o) for o in v1["items"]]
    assert v2["meta"] == {"apiVersion": 2, "next_cursor": v1["next_cursor"]}
    # a cursor from one version works in the other
    rest_v1 = await api.client.get(
        f"/api/v1/orders?cursor={v2['meta']['next_cursor']}", headers=api.alice
    )
    rest_v2 = await api.client.get(f"/api/v2/orders?cursor={v1['next_cursor']}", headers=api.alice)
    assert len(rest_v1.json()["items"]) == len(rest_v2.json()["data"]) == 2


@pytest.mark.parametrize("value", ["3", "0", "", "v2", "2.0", "1,2", "latest", "２".encode()])
@pytest.mark.parametrize("path", ["/api/orders", "/api/orders/{id}"])
async def test_an_unknown_api_version_gets_400(api: Api, value: str | bytes, path: str) -> None:
    order = await api.create(api.alice)
    headers = {**api.alice, "API-Version": value}
    # httpx sends str and bytes header values mixed; its HeaderTypes does not say so.
    response = await api.client.get(path.format(id=order["id"]), headers=headers)  # type: ignore[arg-type]
    assert response.status_code == 400
    assert without_request_id(response) == {"error": "Unsupported API version"}


async def test_a_repeated_api_version_header_gets_400(api: Api) -> None:
    headers = [*api.alice.items(), ("API-Version", "2"), ("API-Version", "1")]
    response = await api.client.get("/api/orders", headers=headers)
    assert response.status_code == 400


async def test_an_unknown_version_is_refused_even_without_a_token(api: Api) -> None:
    """Version support is public; the 400 lets clients (and scanners) see the rule."""
    response = await api.client.get("/api/orders", headers={"API-Version": "99"})
    assert response.status_code == 400


async def test_the_header_is_ignored_on_url_versioned_paths(api: Api) -> None:
    response = await api.client.get("/api/v1/orders", headers={**api.alice, "API-Version": "9"})
    assert response.status_code == 200 and set(response.json()) == {"items", "next_cursor"}


async def test_create_and_delete_through_the_header_path(api: Api) -> None:
    created = await api.client.post(
        "/api/orders", json=order_body(), headers={**api.alice, "API-Version": "1"}
    )
    assert created.status_code == 201
    order_id = created.json()["id"]
    deleted = await api.client.delete(f"/api/orders/{order_id}", headers=api.alice)
    assert deleted.status_code == 204


async def test_version_2_has_no_create_or_delete_through_either_path(api: Api) -> None:
    order = await api.create(api.alice)
    v2_header = {**api.alice, "API-Version": "2"}
    responses = [
        await api.client.post("/api/orders", json=order_body(), headers=v2_header),
        await api.client.delete(f"/api/orders/{order['id']}", headers=v2_header),
        await api.client.post("/api/v2/orders", json=order_body(), headers=api.alice),
        await api.client.delete(f"/api/v2/orders/{order['id']}", headers=api.alice),
    ]
    assert [r.status_code for r in responses] == [405] * 4
    # The header path sends what the method-policy layer sends for /api/v2/orders in the full
    # stack (HEAD wherever GET); this bare app's router alone says "GET".
    assert [r.headers["allow"] for r in responses] == ["GET, HEAD", "GET, HEAD", "GET", "GET"]
    # nothing was created or deleted
    listed = await api.client.get("/api/v1/orders", headers=api.alice)
    assert [o["id"] for o in listed.json()["items"]] == [order["id"]]


async def test_lifecycle_headers_follow_the_version(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    app, tokens = build_app(
        tmp_path,
        api_v1_deprecation=datetime(2026, 1, 1, tzinfo=UTC),
        api_v1_sunset=datetime(2027, 1, 1, tzinfo=UTC),
    )
    async with running(app) as client:
        who = bearer(await tokens.issue())
        v1 = await client.get("/api/v1/orders", headers=who)
        h1 = await client.get("/api/orders", headers=who)
        missing = await client.get(f"/api/v1/orders/{uuid.uuid4()}", headers=who)
        v2 = await client.get("/api/v2/orders", headers=who)
        h2 = await client.get("/api/orders", headers={**who, "API-Version": "2"})
    for response in (v1, h1, missing):
        assert response.headers["deprecation"] == "@1767225600"
        assert response.headers["sunset"] == "Fri, 01 Jan 2027 00:00:00 GMT"
    assert missing.status_code == 404
    for response in (v2, h2):
        assert "deprecation" not in response.headers and "sunset" not in response.headers


# --- pagination over HTTP ---------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", "", "1e2"])
async def test_limit_outside_1_to_100_gets_400(api: Api, limit: str) -> None:
    response = await api.client.get(f"/api/v1/orders?limit={limit}", headers=api.alice)
    assert response.status_code == 400
    body = without_request_id(response)
    assert body["error"] == "Invalid query parameters"
    assert list(body["details"]) == ["limit"]


@pytest.mark.parametrize("cursor", ["abc", "A" * 31, "A" * 33, "A" * 31 + "=", "%27%20OR%201=1"])
async def test_malformed_cursors_get_400(api: Api, cursor: str) -> None:
    response = await api.client.get(f"/api/v1/orders?cursor={cursor}", headers=api.alice)
    assert response.status_code == 400
    assert without_request_id(response) == {
        "error": "Invalid query parameters",
        "details": {"cursor": ["Invalid cursor"]},
    }


async def test_default_page_size_is_20_and_100_is_allowed(api: Api) -> None:
    for _ in range(21):
        await api.create(api.alice)
    first = (await api.client.get("/api/v1/orders", headers=api.alice)).json()
    assert len(first["items"]) == 20 and first["next_cursor"]
    everything = (await api.client.get("/api/v1/orders?limit=100", headers=api.alice)).json()
    assert len(everything["items"]) == 21 and everything["next_cursor"] is None
    rest = await api.client.get(f"/api/v1/orders?cursor={first['next_cursor']}", headers=api.alice)
    assert [o["id"] for o in rest.json()["items"]] == [everything["items"][20]["id"]]


# --- the OpenAPI document ---------------------------------------------------------------------


@pytest.fixture
async def document(api: Api) -> dict[str, Any]:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def validate(document: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    """Validate *instance* against a schema from the document (refs into its components)."""
    root = {**schema, "components": document["components"]}
    jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(instance)


def response_schema(document: dict[str, Any], method: str, path: str, status: int) -> Any:
    entry = document["paths"][path][method.lower()]["responses"][str(status)]
    return entry["content"]["application/json"]["schema"]


async def test_the_document_lists_every_orders_operation(document: dict[str, Any]) -> None:
    operations = {
        (method.upper(), path)
        for path, methods in document["paths"].items()
        for method in methods
        if "orders" in path
    }
    assert operations == {(m, p.replace("{id}", "{order_id}")) for m, p in ROUTES}


async def test_no_operation_documents_a_422_and_every_error_uses_the_error_schema(
    document: dict[str, Any],
) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, methods in document["paths"].items():
        if "orders" not in path:
            continue
        for method, operation in methods.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            assert {"400", "401", "429"} <= set(responses), (method, path)
            assert operation["security"] == [{"bearerAuth": []}]
            for status, entry in responses.items():
                if int(status) >= 400:
                    schema = entry["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


async def test_real_responses_match_their_documented_schemas(
    api: Api, document: dict[str, Any]
) -> None:
    """The bodies the server really sends validate against what the document says."""
    created = await api.client.post("/api/v1/orders", json=order_body(), headers=api.alice)
    validate(document, response_schema(document, "POST", "/api/v1/orders", 201), created.json())
    oid = created.json()["id"]
    checks: list[tuple[str, str, str, dict[str, str], Any]] = [
        ("GET", "/api/v1/orders", "/api/v1/orders", api.alice, None),
        ("GET", "/api/v2/orders", "/api/v2/orders", api.alice, None),
        ("GET", f"/api/v1/orders/{oid}", "/api/v1/orders/{order_id}", api.alice, None),
        ("GET", f"/api/v2/orders/{oid}", "/api/v2/orders/{order_id}", api.alice, None),
        ("GET", "/api/orders", "/api/orders", {**api.alice, "API-Version": "2"}, None),
        ("GET", f"/api/orders/{oid}", "/api/orders/{order_id}", api.alice, None),
        ("GET", f"/api/v1/orders/{oid}", "/api/v1/orders/{order_id}", api.bob, None),  # 404
        ("GET", "/api/v1/orders", "/api/v1/orders", {}, None),  # 401
        ("GET", "/api/v1/orders?limit=0", "/api/v1/orders", api.alice, None),  # 400
        ("POST", "/api/v1/orders", "/api/v1/orders", api.alice, {"quantity": "1"}),  # 400
        ("GET", "/api/orders", "/api/orders", {**api.alice, "API-Version": "3"}, None),  # 400
        ("POST", "/api/orders", "/api/orders", {**api.alice, "API-Version": "2"}, order_body()),
    ]
    seen = set()
    for method, url, path, headers, body in checks:
        response = await api.client.request(method, url, headers=headers, json=body)
        seen.add(response.status_code)
        validate(
            document, response_schema(document, method, path, response.status_code), response.json()
        )
    assert seen == {200, 400, 401, 404, 405}


async def test_documented_parameters_match_the_rules(document: dict[str, Any]) -> None:
    params = {p["name"]: p for p in document["paths"]["/api/orders"]["get"]["parameters"]}
    assert params["limit"]["schema"]["minimum"] == 1
    assert params["limit"]["schema"]["maximum"] == 100
    assert params["cursor"]["schema"]["pattern"] == "^[A-Za-z0-9_-]{32}$"
    assert params["cursor"]["schema"]["type"] == "string"  # no impossible null branch
    assert params["API-Version"]["in"] == "header"
    assert params["API-Version"]["schema"]["enum"] == ["1", "2"]
    post = {p["name"]: p for p in document["paths"]["/api/orders"]["post"]["parameters"]}
    assert post["API-Version"]["schema"]["enum"] == ["1"]
    one = document["paths"]["/api/v1/orders/{order_id}"]["get"]["parameters"][0]
    assert one["schema"]["format"] == "uuid"


async def test_every_orders_route_is_visible_to_the_method_policy_layer(tmp_path: Path) -> None:
    """Behind the method layer, each path's 405 lists all its methods (pitfall #23), and the
    header path's v2 refusal is the same as the URL path's."""
    from bastion.middleware.methods import MethodPolicyMiddleware

    app, tokens = build_app(tmp_path)
    guarded = MethodPolicyMiddleware(app, routes=app.router.routes)
    await app.state.database.create_schema()
    who = bearer(await tokens.issue())
    transport = httpx.ASGITransport(app=guarded)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        one = f"/api/v1/orders/{uuid.uuid4()}"
        put = await client.put(one, json=order_body(), headers=who)
        patch = await client.patch("/api/orders", json=order_body(), headers=who)
        by_url = await client.post("/api/v2/orders", json=order_body(), headers=who)
        by_header = await client.post(
            "/api/orders", json=order_body(), headers={**who, "API-Version": "2"}
        )
    await app.state.database.close()
    assert (put.status_code, put.headers["allow"]) == (405, "DELETE, GET, HEAD")
    assert (patch.status_code, patch.headers["allow"]) == (405, "GET, HEAD, POST")
    assert by_url.status_code == by_header.status_code == 405
    assert by_url.headers["allow"] == by_header.headers["allow"] == "GET, HEAD"
