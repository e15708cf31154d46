"""Exception handlers that give every error of the service the contract's shape.

Starlette's and FastAPI's defaults answer ``{"detail": ...}`` (and FastAPI a 422 listing
pydantic internals); the contract wants ``{"error", "requestId"}`` everywhere.
"""

from __future__ import annotations

from http import HTTPStatus

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


async def _starlette_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    message = PUBLIC_MESSAGES.get(status)
    if message is None:
        message = str(exc.detail) if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    return error_response(request, status, message, dict(exc.headers or {}))


async def _bastion_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPError)
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
        if error.get("type") == "extra_forbidden":
            message = "Unknown field"
        else:
            message = str(error.get("msg", "Invalid value")).removeprefix("Value error, ")
        details.setdefault(".".join(loc) or "body", []).append(message)
    return (INVALID_BODY if in_body else INVALID_QUERY), details


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, details = validation_details(exc)
    return error_response(request, 400, message, details=details)


def install(app: FastAPI) -> None:
    """Register the handlers on *app*."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _starlette_http_error)
    app.add_exception_handler(HTTPError, _bastion_http_error)
