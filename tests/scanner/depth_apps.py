"""Fixture APIs for the scanner's depth controls (issue 16, part A), each with a ground truth.

:func:`orders_api` is one small orders API with two users, an OpenAPI document, a login with
a rate limit and a CORS policy, mounted under any path prefix. Each keyword argument plants
one real mistake, so a test can name the control that must catch it (and see it pass
without it):

* ``mount="/svc"``: the whole API behind a path prefix (``/svc/api/v1/...``);
* ``bola``: objects are fetched, changed and deleted by id without an ownership check;
* ``legacy_v0``: ``/api/v0/orders`` still lists every order, with no credentials at all;
* ``cors="suffix"`` / ``"prefix"``: the allow-list is ``endswith``/``startswith``;
* ``enumerate``: the login says whether the account exists;
* ``trace_on_bad_id``: a malformed order id is a 500 with a Python traceback;
* ``bare_401``: the orders routes answer 401 without ``WWW-Authenticate``;
* ``spec``: serve the OpenAPI document (at ``<mount>/openapi.json``) or not;
* ``plain_errors``: the orders routes' errors lack the security headers;
* ``no_allow``: the orders routes' 405s lack ``Allow``;
* ``limit_headers=False``: no rate-limit headers anywhere.

``requests`` records every request (method, path, headers) so tests can check what the
scanner sent (e.g. that anonymous probes carry no credential header).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt

from tests.scanner.apps import (
    ISSUER,
    SECURE_HEADERS,
    SIGNING_KEY,
    TRACEBACK_500,
    App,
    Request,
    Response,
    bearer,
    mint,
)

FRONT_END = "https://example.com"  # the API's one legitimate browser origin
KNOWN_EMAIL = "alice@example.com"
USERS = {"user-1": KNOWN_EMAIL, "user-2": "bob@example.com"}
API_KEY = "fixture-api-key-7d1c"  # an X-Api-Key credential (the scanner's --header)


def token_a() -> str:
    return mint(sub="user-1")


def token_b() -> str:
    return mint(sub="user-2")


ORDER_SCHEMA = {
    "type": "object",
    "required": ["productId", "quantity"],
    "properties": {
        "productId": {"type": "string", "format": "uuid"},
        "quantity": {"type": "integer", "minimum": 1, "maximum": 100},
    },
}


def spec_document(extra_paths: int = 0) -> dict[str, Any]:
    """The API's OpenAPI 3.1 document, without ``servers`` (it does not know its mount)."""
    bearer_only: list[dict[str, list[str]]] = [{"bearer": []}]
    paths: dict[str, Any] = {
        "/api/v1/me": {"get": {"responses": {"200": {"description": "me"}}}},
        "/api/v1/orders": {
            "get": {"responses": {"200": {"description": "list"}}},
            "post": {
                "requestBody": {
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/O"}}}
                },
                "responses": {"201": {"description": "created"}},
            },
        },
        "/api/v1/orders/{id}": {
            "get": {"responses": {"200": {"description": "one"}}},
            "patch": {
                "requestBody": {"content": {"application/json": {"example": {"quantity": 7}}}},
                "responses": {"200": {"description": "changed"}},
            },
            "delete": {"responses": {"204": {"description": "gone"}}},
        },
        "/api/v1/auth/login": {
            "post": {"security": [], "responses": {"401": {"description": "no"}}}
        },
    }
    for i in range(extra_paths):
        paths[f"/api/v1/reports/r{i}"] = {"get": {"responses": {"200": {"description": "r"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "orders", "version": "1"},
        "security": bearer_only,
        "components": {
            "schemas": {"O": ORDER_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": paths,
    }


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class OrdersApi:
    app: App
    orders: dict[str, dict[str, Any]]
    requests: list[Seen] = field(default_factory=list)


def orders_api(
    *,
    mount: str = "",
    bola: bool = False,
    legacy_v0: bool = False,
    cors: str = "exact",
    enumerate: bool = False,
    trace_on_bad_id: bool = False,
    bare_401: bool = False,
    spec: bool = True,
    extra_paths: int = 0,
    login_limit: int = 5,
    plain_errors: bool = False,
    no_allow: bool = False,
    limit_headers: bool = True,
) -> OrdersApi:
    orders: dict[str, dict[str, Any]] = {}
    for owner in USERS:
        oid = str(uuid.uuid4())
        orders[oid] = {"id": oid, "owner": owner, "productId": str(uuid.uuid4()), "quantity": 1}
    state = OrdersApi(App(lambda r: Response(), lambda r, s: None), orders)
    failures: dict[str, int] = {}
    v1 = f"{mount}/api/v1"

    def error(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
        return Response(status, {"error": message, "requestId": "r-1"}, headers or [])

    def user(request: Request) -> str | Response:
        if request.headers.get("x-api-key") == API_KEY:
            return "user-1"
        token = bearer(request)
        challenge = [] if bare_401 else [("WWW-Authenticate", "Bearer")]
        if token is None:
            return error(401, "Authentication required", challenge)
        try:
            claims = jwt.decode(
                token,
                SIGNING_KEY.public_key(),
                algorithms=["ES256"],
                audience="fixture",
                issuer=ISSUER,
            )
        except jwt.PyJWTError:
            return error(
                401,
                "Invalid token",
                [] if bare_401 else [("WWW-Authenticate", 'Bearer error="invalid_token"')],
            )
        return str(claims["sub"])

    def allowed_origin(origin: str) -> bool:
        if cors == "suffix":
            return origin.endswith("example.com")
        if cors == "prefix":
            return origin.startswith(FRONT_END)
        return origin == FRONT_END

    def order_view(order: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in order.items() if k != "owner"}

    def routed(request: Request) -> Response:
        path, method = request.path, request.method
        if path in {f"{mount}/", mount or "/", f"{v1}", f"{v1}/"}:
            if method != "GET":
                return error(405, "Method not allowed", [("Allow", "GET")])
            return Response(200, {"status": "ok", "links": {"me": f"{v1}/me"}})
        if path == f"{mount}/openapi.json" and spec:
            return Response(200, spec_document(extra_paths))
        if path.startswith(f"{v1}/reports/") and method == "GET":
            who = user(request)
            return who if isinstance(who, Response) else Response(200, {"report": path})
        if legacy_v0 and path == f"{mount}/api/v0/orders":
            return Response(200, {"items": [order_view(o) for o in orders.values()]})
        if path == f"{v1}/auth/login":
            if method != "POST":
                return error(405, "Method not allowed", [("Allow", "POST")])
            client = request.client
            if failures.get(client, 0) >= login_limit:
                return error(429, "Too many authentication attempts", [("Retry-After", "900")])
            failures[client] = failures.get(client, 0) + 1
            try:
                email = request.json().get("email", "")
            except ValueError:
                return error(400, "Invalid request body")
            if enumerate and email not in USERS.values():
                return error(401, "No such user")
            return error(401, "Invalid email or password")
        if path == f"{v1}/me":
            if method != "GET":
                return error(405, "Method not allowed", [("Allow", "GET")])
            who = user(request)
            if isinstance(who, Response):
                return who
            return Response(200, {"id": who, "email": USERS[who], "role": "user"})
        if path == f"{v1}/orders":
            if method not in {"GET", "POST"}:
                return error(405, "Method not allowed", [("Allow", "GET, POST")])
            who = user(request)
            if isinstance(who, Response):
                return who
            if method == "GET":
                mine = [order_view(o) for o in orders.values() if o["owner"] == who]
                return Response(200, {"items": mine, "next_cursor": None})
            try:
                body = request.json()
            except ValueError:
                return error(400, "Invalid request body")
            if not isinstance(body, dict) or not isinstance(body.get("quantity"), int):
                return error(400, "Invalid request body")
            oid = str(uuid.uuid4())
            orders[oid] = {
                "id": oid,
                "owner": who,
                "productId": str(body.get("productId")),
                "quantity": body["quantity"],
            }
            return Response(201, order_view(orders[oid]))
        if path.startswith(f"{v1}/orders/"):
            if method not in {"GET", "PATCH", "DELETE"}:
                allow = [] if no_allow else [("Allow", "GET, PATCH, DELETE")]
                return error(405, "Method not allowed", allow)
            who = user(request)
            if isinstance(who, Response):
                return who
            oid = path.rsplit("/", 1)[1]
            try:
                uuid.UUID(oid)
            except ValueError:
                if trace_on_bad_id:
                    return Response(500, TRACEBACK_500)
                return error(404, "Not found")
            order = orders.get(oid)
            if order is None or (order["owner"] != who and not bola):
                return error(404, "Not found")
            if method == "DELETE":
                del orders[oid]
                return Response(204, b"")
            if method == "PATCH":
                try:
                    change = request.json()
                except ValueError:
                    return error(400, "Invalid request body")
                if isinstance(change, dict) and isinstance(change.get("quantity"), int):
                    order["quantity"] = change["quantity"]
            return Response(200, order_view(order))
        return error(404, "Not found")

    def handle(request: Request) -> Response:
        state.requests.append(Seen(request.method, request.path, dict(request.headers)))
        if request.scheme == "http":
            return Response(301, b"", [("Location", f"https://api.test{request.path}")])
        origin = request.headers.get("origin")
        if request.method == "OPTIONS":
            if origin and allowed_origin(origin):
                return Response(
                    204,
                    b"",
                    [
                        ("Access-Control-Allow-Origin", origin),
                        ("Access-Control-Allow-Credentials", "true"),
                        ("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE"),
                        ("Access-Control-Allow-Headers", "Content-Type, Authorization"),
                        ("Vary", "Origin"),
                    ],
                )
            return error(403 if origin else 405, "Origin not allowed" if origin else "No")
        if request.method in {"TRACE", "TRACK"}:
            return error(405, "Method not allowed", [("Allow", "GET")])
        return routed(request)

    def decorate(request: Request, response: Response) -> None:
        if plain_errors and response.status >= 400 and "/orders" in request.path:
            return  # a route whose errors bypass the layer that adds the headers
        headers = list(SECURE_HEADERS)
        if request.scheme == "https":
            headers.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
        headers.append(("X-Request-ID", "generated-1"))
        if "/api/" in request.path and limit_headers:
            headers += [
                ("RateLimit-Policy", '"api";q=100;w=900'),
                ("RateLimit", '"api";r=99;t=900'),
            ]
        origin = request.headers.get("origin")
        if origin and allowed_origin(origin) and request.method != "OPTIONS":
            headers += [
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Allow-Credentials", "true"),
                ("Vary", "Origin"),
            ]
        response.headers = headers + response.headers

    state.app = App(handle, decorate)
    return state
