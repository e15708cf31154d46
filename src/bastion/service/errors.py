"""Exception handlers that give every error of the service the contract's shape.

Starlette's and FastAPI's defaults answer ``{"detail": ...}`` (and FastAPI a 422 listing
pydantic internals); the contract wants ``{"error", "requestId"}`` everywhere.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bastion.asgi import request_id
from bastion.errors import HTTPError

# Public messages for statuses raised without one of ours (e.g. the router's 404).
PUBLIC_MESSAGES = {404: "Not found", 405: "Method not allowed"}


def error_response(
    request: Request,
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    details: dict[str, list[str]] | None = None,
) -> JSONResponse:
    body: dict[str, object] = {"error": message, "requestId": request_id(request.scope)}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


# The handlers are registered for exactly one exception class each (install()), so the casts
# below only tell mypy what Starlette guarantees; an assert would vanish under python -O.
async def _starlette_http_error(request: Request, error: Exception) -> JSONResponse:
    exc = cast(StarletteHTTPException, error)
    status = exc.status_code
    message = PUBLIC_MESSAGES.get(status)
    if message is None:
        message = str(exc.detail) if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    return error_response(request, status, message, dict(exc.headers or {}))


async def _bastion_http_error(request: Request, error: Exception) -> JSONResponse:
    exc = cast(HTTPError, error)
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in exc.headers}
    return error_response(request, exc.status, exc.public_message, headers, exc.details)


INVALID_BODY = "Invalid request body"
INVALID_QUERY = "Invalid query parameters"


def validation_details(exc: RequestValidationError) -> tuple[str, dict[str, list[str]]]:
    """Dotted field paths (``address.country``) to lists of messages, without input echoes.

    The messages are pydantic's (``"Input should be a valid integer"``); the offending input
    is never echoed back (it may be a password).
    """
    details: dict[str, list[str]] = {}
    in_body = False
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        if loc and loc[0] == "body":
            in_body = True
            loc = loc[1:]
        elif loc and loc[0] in {"query", "path", "header", "cookie"}:
            loc = loc[1:]
        if error.get("type") == "json_invalid":
            # FastAPI's loc is ("body", <character offset>): not a field path.
            details.setdefault("body", []).append("Malformed JSON")
            continue
        if error.get("type") == "extra_forbidden":
            message = "Unknown field"
        elif error.get("type") == "string_pattern_mismatch":
            message = "Invalid format"  # pydantic's message would echo the internal pattern
        else:
            message = str(error.get("msg", "Invalid value")).removeprefix("Value error, ")
        details.setdefault(".".join(loc) or "body", []).append(message)
    return (INVALID_BODY if in_body else INVALID_QUERY), details


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    exc = cast(RequestValidationError, error)
    message, details = validation_details(exc)
    return error_response(request, 400, message, details=details)


BEARER_SCHEME = "bearerAuth"  # routes declare openapi_extra={"security": [{BEARER_SCHEME: []}]}
_ERROR_REF = "#/components/schemas/ErrorBody"


def _document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Make the OpenAPI document say what the handlers above really send.

    FastAPI documents a ``422`` with its ``HTTPValidationError`` model on every operation that
    has parameters; this app answers validation failures with ``400`` and the error shape, so
    the ``422`` goes and a ``400`` with ``ErrorBody`` takes its place (a fuzzer checking the
    document would otherwise find a status and a body the server never sends). Optional
    parameters lose their impossible ``null`` branch. A bearer security scheme is added when
    routes reference it.
    """
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    uses_bearer = False
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            if responses.pop("422", None) is not None and "400" not in responses:
                responses["400"] = {
                    "description": "Invalid request",
                    "content": {"application/json": {"schema": {"$ref": _ERROR_REF}}},
                }
            for parameter in operation.get("parameters", ()):
                _not_nullable(parameter.get("schema", {}))
            uses_bearer = uses_bearer or any(
                BEARER_SCHEME in requirement for requirement in operation.get("security", ())
            )
    if "ErrorBody" not in schemas:
        from bastion.service.schemas import ErrorBody

        schemas["ErrorBody"] = ErrorBody.model_json_schema(
            mode="serialization", ref_template="#/components/schemas/{model}"
        )
    for name in ("HTTPValidationError", "ValidationError"):  # in this order: one uses the other
        if name in schemas and f'"#/components/schemas/{name}"' not in json.dumps(schema):
            del schemas[name]
    if uses_bearer:
        components.setdefault("securitySchemes", {})[BEARER_SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "Access token from POST /api/v1/auth/login",
        }
    return schema


def _not_nullable(schema: dict[str, Any]) -> None:
    """``str | None`` parameters become ``anyOf: [string, null]``; a query string or header
    cannot carry a JSON null (absence is expressed by ``required: false``), so keep the
    non-null branch."""
    branches = schema.get("anyOf")
    if not isinstance(branches, list):
        return
    kept = [b for b in branches if b != {"type": "null"}]
    if len(kept) == 1 and len(kept) < len(branches):
        del schema["anyOf"]
        for key, value in kept[0].items():
            schema.setdefault(key, value)


def document(app: FastAPI) -> None:
    """Post-process *app*'s OpenAPI document once, when first generated."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    """Register the handlers on *app* (and make its OpenAPI document match them)."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _starlette_http_error)
    app.add_exception_handler(HTTPError, _bastion_http_error)
    document(app)
