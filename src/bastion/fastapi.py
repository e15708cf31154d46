"""The FastAPI face of the library (needs the ``bastion[fastapi]`` extra).

* :func:`install_error_handlers` — the one call that gives a FastAPI app the contract's error
  shape everywhere: its ``422`` validation errors become
  ``400 {"error":"Invalid request body","details":{"<field.path>":["<message>"]},"requestId"}``,
  ``HTTPException`` and bastion's own :class:`~bastion.errors.HTTPError` (raised by
  :class:`bastion.RateLimit` and bearer authentication) become ``{"error","requestId"}`` with
  their headers; the OpenAPI document says so (its ``422`` replaced by a ``400``).
* :class:`bastion.RateLimit` is a dependency as it is (``Depends(RateLimit("5/15m"))``).

Inside :func:`bastion.secure` these answers also get every header of the stack; without the
handlers the stack's safe-errors layer still answers a raised ``HTTPError`` in the same shape,
but FastAPI's ``422`` would pass through as FastAPI writes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bastion.asgi import request_id
from bastion.errors import HTTPError

__all__ = [
    "ERROR_BODY_SCHEMA",
    "INVALID_BODY",
    "INVALID_QUERY",
    "PUBLIC_MESSAGES",
    "contract_openapi",
    "error_response",
    "install_error_handlers",
    "validation_details",
]

# --- errors in the contract's shape (lib-surface) ------------------------------------------

#: Public messages for statuses raised without one of ours (e.g. the router's 404).
PUBLIC_MESSAGES = {404: "Not found", 405: "Method not allowed"}
INVALID_BODY = "Invalid request body"
INVALID_QUERY = "Invalid query parameters"

#: The JSON Schema of every error body, for the OpenAPI document.
ERROR_BODY_SCHEMA: dict[str, Any] = {
    "title": "ErrorBody",
    "type": "object",
    "required": ["error", "requestId"],
    "properties": {
        "error": {"type": "string", "description": "Public message; never an exception text"},
        "requestId": {"type": "string", "description": "Equals the X-Request-ID header"},
        "details": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "description": "Validation errors only: dotted field path -> list of messages",
        },
    },
}
_ERROR_REF = "#/components/schemas/ErrorBody"


def error_response(
    request: Request,
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    details: dict[str, list[str]] | None = None,
) -> JSONResponse:
    """``{"error", "requestId"[, "details"]}`` with *status* and *headers*."""
    body: dict[str, object] = {"error": message, "requestId": request_id(request.scope)}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


async def _starlette_http_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):  # registered for this type only
        raise exc
    status = exc.status_code
    message = PUBLIC_MESSAGES.get(status)
    if message is None:
        message = str(exc.detail) if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    return error_response(request, status, message, dict(exc.headers or {}))


async def _bastion_http_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, HTTPError):
        raise exc
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in exc.headers}
    return error_response(request, exc.status, exc.public_message, headers, exc.details)


def validation_details(exc: RequestValidationError) -> tuple[str, dict[str, list[str]]]:
    """``(public message, details)``: dotted field paths (``address.country``) to messages.

    The messages are pydantic's (``"Input should be a valid integer"``); the offending input
    is never echoed back (it may be a password), nor an internal regex.
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


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):
        raise exc
    message, details = validation_details(exc)
    return error_response(request, 400, message, details=details)


def contract_openapi(
    schema: dict[str, Any], error_schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Make an OpenAPI document say what the handlers really send.

    FastAPI documents a ``422`` with its ``HTTPValidationError`` model on every operation that
    has parameters; with :func:`install_error_handlers` validation failures are ``400`` in
    the error shape, so the ``422`` goes and a ``400`` with ``ErrorBody`` takes its place (a
    fuzzer checking the document would otherwise find a status and a body the server never
    sends). Optional parameters lose their impossible ``null`` branch.
    """
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
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
    if "ErrorBody" not in schemas:
        schemas["ErrorBody"] = error_schema if error_schema is not None else ERROR_BODY_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):  # in this order: one uses the other
        if name in schemas and f'"#/components/schemas/{name}"' not in json.dumps(schema):
            del schemas[name]
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


def _document(app: FastAPI, edit: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Post-process *app*'s OpenAPI document once, when first generated."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = edit(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI, *, error_schema: dict[str, Any] | None = None) -> None:
    """Give *app*'s errors the contract's shape: ``400`` for validation, ``{"error",
    "requestId"}`` for every ``HTTPException`` and ``bastion.HTTPError``; the OpenAPI document
    follows (*error_schema* replaces the documented ``ErrorBody``)."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _starlette_http_error)
    app.add_exception_handler(HTTPError, _bastion_http_error)
    _document(app, lambda schema: contract_openapi(schema, error_schema))


# --- bearer tokens (lib-tokens) -------------------------------------------------------------
