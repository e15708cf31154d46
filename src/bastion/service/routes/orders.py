"""The orders endpoints: version 1, version 2 and the header-versioned ``/api/orders``.

Each operation has exactly one handler per version; ``/api/orders`` does not re-implement
anything, it picks the version-1 or version-2 handler with the ``API-Version`` header
(:mod:`bastion.service.versioning`). Version 1 speaks camelCase (``productId``,
``createdAt``); version 2 wraps the same data in ``{"data", "meta"}`` with snake_case names.

Authorisation: the owner is the token's subject and is passed into every repository call,
which filters on it inside the SQL (:mod:`bastion.service.orders`). An id that is malformed,
unknown or someone else's gives the same ``404 {"error": "Not found"}``: the handler cannot
tell them apart, because the query cannot.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, Response

from bastion.errors import HTTPError
from bastion.service import orders as repo
from bastion.service.db import Database
from bastion.service.deps import CurrentPrincipal
from bastion.service.errors import BEARER_SCHEME
from bastion.service.pagination import PAGE_PARAMETERS, encode_cursor, page_of
from bastion.service.responses import JSONBody
from bastion.service.schemas import (
    ErrorBody,
    OrderCreate,
    OrderEnvelopeV2,
    OrderListEnvelopeV2,
    OrderListV1,
    OrderV1,
)
from bastion.service.versioning import ApiVersion, V1Only, VersionHeaders, lifecycle_headers

NOT_FOUND = "Not found"
# jsonschema's "uuid" format and this pattern accept the same strings (any case).
_ORDER_ID = re.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
)

# The path parameter, for the OpenAPI document. The handlers read it from
# ``request.path_params`` instead of declaring it: FastAPI 0.165 spends 15 µs per request on
# a declared parameter, a twentieth of a GET (measured in process), for a string it does not
# check (the handlers do, answering 404 like an unknown id).
_ORDER_ID_TEXT = "The order's id (a random UUID). Malformed ids give 404, like unknown ones."
ORDER_ID_PARAMETER: dict[str, Any] = {
    "name": "order_id",
    "in": "path",
    "required": True,
    "description": _ORDER_ID_TEXT,
    "schema": {"type": "string", "format": "uuid", "title": "Order Id",
               "description": _ORDER_ID_TEXT},
}  # fmt: skip

# --- OpenAPI: every error the stack or the handlers can send, with its real body ----------

_ERROR_TEXT: dict[int, str] = {
    400: "Invalid request: body, query parameters or API-Version header (see details)",
    401: "Missing, malformed or refused access token",
    404: "No such order for this user (also for malformed ids and other users' orders)",
    405: "Method not allowed for this path (and API version); see Allow",
    413: "Request body larger than 64 KiB",
    415: "Content-Type is not application/json",
    429: "Rate limit exceeded; see Retry-After",
    500: "An internal error occurred",
}
_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": 'Bearer (with error="invalid_token" when a token was refused)',
            "required": True,
            "schema": {"type": "string"},
        }
    },
    405: {
        "Allow": {
            "description": "The methods this path serves",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait",
            "required": True,
            "schema": {"type": "integer"},
        }
    },
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for *codes*, all with the :class:`ErrorBody` model."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorBody, "description": _ERROR_TEXT[code]}
        if code in _ERROR_HEADERS:
            entry["headers"] = _ERROR_HEADERS[code]
        out[code] = entry
    return out


_COMMON = (400, 401, 429, 500)
_READ_ONE = errors(*_COMMON, 404)
_READ_MANY = errors(*_COMMON)
_WRITE = errors(*_COMMON, 413, 415)
_DELETE = errors(*_COMMON, 404)
_SECURED: dict[str, Any] = {"security": [{BEARER_SCHEME: []}]}


# --- representations ----------------------------------------------------------------------


# The JSON of an order is written here, not by pydantic: on a page of 20 orders, validating
# and serialising the response models cost more than the rest of the request (measured:
# 20 x model_construct 244 µs, one validation of the page 118 µs + 56 µs to write it,
# against 30 µs for these dicts and json.dumps, 15 µs with pydantic-core writing them,
# service/responses.py). The bytes are the response models' bytes
# exactly: tests/service/test_orders_json.py compares them on generated orders (hypothesis).
# The response models still document every route in the OpenAPI document.


def as_v1(order: repo.OrderRecord) -> dict[str, Any]:
    """An order as ``OrderV1`` serialises it (camelCase)."""
    return {
        "id": order.id,
        "productId": order.product_id,
        "quantity": order.quantity,
        "address": {"street": order.street, "city": order.city, "country": order.country},
        "createdAt": order.created_at,
    }


def as_v2(order: repo.OrderRecord) -> dict[str, Any]:
    """An order as ``OrderV2`` serialises it (snake_case)."""
    return {
        "id": order.id,
        "product_id": order.product_id,
        "quantity": order.quantity,
        "address": {"street": order.street, "city": order.city, "country": order.country},
        "created_at": order.created_at,
    }


def _meta_v2(cursor: str | None = None) -> dict[str, Any]:
    return {"apiVersion": 2, "next_cursor": cursor}


def _database(request: Request) -> Database:
    """The app's database. Taken from the request, not from a dependency: FastAPI solves each
    dependency on every request, and this one cost 5% of a request (10 µs, in process)."""
    database: Database = request.app.state.database
    return database


def _order_id(raw: str) -> uuid.UUID:
    """The id in the path, or the same 404 an unknown id gets (never a 400/422 that would
    tell a prober which ids are well-formed)."""
    if not _ORDER_ID.fullmatch(raw):
        raise HTTPError(404, NOT_FOUND)
    return uuid.UUID(raw)


async def _owned(request: Request, principal: CurrentPrincipal) -> repo.OrderRecord:
    order_id = _order_id(request.path_params["order_id"])
    order = await repo.get_order(_database(request), principal.user_id, order_id)
    if order is None:
        raise HTTPError(404, NOT_FOUND)
    return order


# --- the handlers: one per operation and version --------------------------------------------


async def create_v1(principal: CurrentPrincipal, request: Request, body: OrderCreate) -> JSONBody:
    """Create an order for the caller."""
    new = repo.NewOrder(
        product_id=body.product_id,
        quantity=body.quantity,
        street=body.address.street,
        city=body.address.city,
        country=body.address.country,
    )
    return JSONBody(as_v1(await repo.create_order(_database(request), principal.user_id, new)), 201)


async def list_v1(principal: CurrentPrincipal, request: Request) -> JSONBody:
    """The caller's orders, newest first; pass ``next_cursor`` back as ``cursor``."""
    page = page_of(request.query_params)
    rows, after = await repo.list_orders(
        _database(request), principal.user_id, limit=page.limit, after=page.after
    )
    cursor = encode_cursor(after) if after else None
    return JSONBody({"items": [as_v1(row) for row in rows], "next_cursor": cursor})


async def list_v2(principal: CurrentPrincipal, request: Request) -> JSONBody:
    """The caller's orders, newest first, in the version-2 envelope."""
    page = page_of(request.query_params)
    rows, after = await repo.list_orders(
        _database(request), principal.user_id, limit=page.limit, after=page.after
    )
    meta = _meta_v2(encode_cursor(after) if after else None)
    return JSONBody({"data": [as_v2(row) for row in rows], "meta": meta})


async def get_v1(principal: CurrentPrincipal, request: Request) -> JSONBody:
    """One of the caller's orders."""
    return JSONBody(as_v1(await _owned(request, principal)))


async def get_v2(principal: CurrentPrincipal, request: Request) -> JSONBody:
    """One of the caller's orders, in the version-2 envelope."""
    return JSONBody({"data": as_v2(await _owned(request, principal)), "meta": _meta_v2()})


async def delete_v1(principal: CurrentPrincipal, request: Request) -> Response:
    """Delete one of the caller's orders."""
    order_id = _order_id(request.path_params["order_id"])
    if not await repo.delete_order(_database(request), principal.user_id, order_id):
        raise HTTPError(404, NOT_FOUND)
    return Response(status_code=HTTPStatus.NO_CONTENT)


# --- header versioning: pick the handler, never copy it ------------------------------------

_LIST: dict[int, Callable[..., Awaitable[Any]]] = {1: list_v1, 2: list_v2}
_GET: dict[int, Callable[..., Awaitable[Any]]] = {1: get_v1, 2: get_v2}


async def create_by_header(
    version: V1Only, principal: CurrentPrincipal, request: Request, body: OrderCreate
) -> JSONBody:
    """``POST /api/orders``: version 1 only (``API-Version: 2`` gives 405, as ``/api/v2`` does)."""
    return await create_v1(principal, request, body)


async def list_by_header(version: ApiVersion, principal: CurrentPrincipal, request: Request) -> Any:
    """``GET /api/orders``: the version-1 or version-2 list, by ``API-Version``."""
    return await _LIST[version](principal, request)


async def get_by_header(version: ApiVersion, principal: CurrentPrincipal, request: Request) -> Any:
    """``GET /api/orders/{order_id}``: the version-1 or version-2 order, by ``API-Version``."""
    return await _GET[version](principal, request)


async def delete_by_header(
    version: V1Only, principal: CurrentPrincipal, request: Request
) -> Response:
    """``DELETE /api/orders/{order_id}``: version 1 only."""
    return await delete_v1(principal, request)


# --- routing table ---------------------------------------------------------------------------

# Route specifications, added to the app one by one by ``install``: plain ``APIRoute`` entries
# in ``app.routes``, which the method-policy layer reads directly: its 405 ``Allow`` is the
# union of every route of a path (RFC 9110 §15.5.6,
# https://www.rfc-editor.org/rfc/rfc9110#section-15.5.6; Starlette's own 405 lists only the
# first matching route's methods, https://github.com/Kludex/starlette/pull/1434). An
# ``include_router`` would add one lazy ``_IncludedRouter`` entry (FastAPI 0.16x) that the
# layer can only probe method by method.
ROUTES: list[dict[str, Any]] = []


def _openapi_extra(path: str, method: str) -> dict[str, Any]:
    """The bearer requirement, and the parameters a handler reads itself (not declared to
    FastAPI, which then does not document them)."""
    if path.endswith("{order_id}"):
        return {**_SECURED, "parameters": [ORDER_ID_PARAMETER]}
    if method == "GET":
        return {**_SECURED, "parameters": PAGE_PARAMETERS}
    return _SECURED


def _route(
    path: str,
    endpoint: Callable[..., Awaitable[Any]],
    method: str,
    *,
    model: Any,
    status: int,
    responses: dict[int | str, dict[str, Any]],
    summary: str,
) -> None:
    ROUTES.append(
        dict(
            path=path,
            endpoint=endpoint,
            methods=[method],
            tags=["orders"],
            response_model=model,
            status_code=status,
            responses=responses,
            summary=summary,
            openapi_extra=_openapi_extra(path, method),
            # JSON bodies keep FastAPI's default class: its response model is then written
            # straight to JSON bytes by pydantic-core, without a dict and json.dumps between.
            **({"response_class": Response} if status == HTTPStatus.NO_CONTENT else {}),
        )
    )


_V1 = "/api/v1/orders"
_V2 = "/api/v2/orders"
_HDR = "/api/orders"
_ONE = "/{order_id}"

_route(
    _V1, create_v1, "POST", model=OrderV1, status=201, responses=_WRITE, summary="Create an order"
)
_route(
    _V1,
    list_v1,
    "GET",
    model=OrderListV1,
    status=200,
    responses=_READ_MANY,
    summary="List my orders",
)
_route(
    _V1 + _ONE,
    get_v1,
    "GET",
    model=OrderV1,
    status=200,
    responses=_READ_ONE,
    summary="Get an order",
)
_route(
    _V1 + _ONE,
    delete_v1,
    "DELETE",
    model=None,
    status=204,
    responses=_DELETE,
    summary="Delete an order",
)

_route(
    _V2,
    list_v2,
    "GET",
    model=OrderListEnvelopeV2,
    status=200,
    responses=_READ_MANY,
    summary="List my orders (v2)",
)
_route(
    _V2 + _ONE,
    get_v2,
    "GET",
    model=OrderEnvelopeV2,
    status=200,
    responses=_READ_ONE,
    summary="Get an order (v2)",
)

_route(
    _HDR,
    create_by_header,
    "POST",
    model=OrderV1,
    status=201,
    responses={**_WRITE, **errors(405)},
    summary="Create an order (API-Version: 1)",
)
_route(
    _HDR,
    list_by_header,
    "GET",
    model=OrderListV1 | OrderListEnvelopeV2,
    status=200,
    responses=_READ_MANY,
    summary="List my orders (by API-Version)",
)
_route(
    _HDR + _ONE,
    get_by_header,
    "GET",
    model=OrderV1 | OrderEnvelopeV2,
    status=200,
    responses=_READ_ONE,
    summary="Get an order (by API-Version)",
)
_route(
    _HDR + _ONE,
    delete_by_header,
    "DELETE",
    model=None,
    status=204,
    responses={**_DELETE, **errors(405)},
    summary="Delete an order (API-Version: 1)",
)


def install(app: FastAPI) -> None:
    """Add the orders routes to *app*, and the per-version lifecycle headers."""
    for spec in ROUTES:
        app.add_api_route(**spec)
    app.add_middleware(VersionHeaders, lifecycle=lifecycle_headers(app.state.settings))


__all__ = ["ROUTES", "as_v1", "as_v2", "install"]
