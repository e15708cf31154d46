"""The service's errors: the library's contract-shaped handlers, plus its bearer scheme.

The handlers themselves are the library's (:func:`bastion.fastapi.install_error_handlers`):
the service is their first user. What is the service's own is the OpenAPI security scheme
its routes reference, and the ``ErrorBody`` model documented for every error.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bastion.fastapi import (
    INVALID_BODY,
    INVALID_QUERY,
    PUBLIC_MESSAGES,
    error_response,
    install_error_handlers,
    validation_details,
)

__all__ = [
    "BEARER_SCHEME",
    "INVALID_BODY",
    "INVALID_QUERY",
    "PUBLIC_MESSAGES",
    "error_response",
    "install",
    "validation_details",
]

log = logging.getLogger("bastion.db")

BEARER_SCHEME = "bearerAuth"  # routes declare openapi_extra={"security": [{BEARER_SCHEME: []}]}


def _document_bearer(app: FastAPI) -> None:
    """Add the bearer security scheme to the document when routes reference it."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        uses_bearer = any(
            BEARER_SCHEME in requirement
            for operations in schema.get("paths", {}).values()
            for operation in operations.values()
            if isinstance(operation, dict)
            for requirement in operation.get("security", ())
        )
        if uses_bearer:
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes[BEARER_SCHEME] = {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "Access token from POST /api/v1/auth/login",
            }
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    """Register the handlers on *app* (and make its OpenAPI document match them)."""
    from bastion.service.schemas import ErrorBody

    error_schema = ErrorBody.model_json_schema(
        mode="serialization", ref_template="#/components/schemas/{model}"
    )
    install_error_handlers(app, error_schema=error_schema)
    for error in database_unavailable_errors():
        app.add_exception_handler(error, _database_unavailable)
    _document_bearer(app)


#: What a request that needed the database answers while it cannot be reached (a restart,
#: a failover, a network cut): the client may retry; nothing half-done was kept, since every
#: write is one statement or one transaction.
UNAVAILABLE = "Service unavailable"
UNAVAILABLE_RETRY_AFTER = "5"


def database_unavailable_errors() -> tuple[type[Exception], ...]:
    """The failures that mean "the database cannot be reached", on both request paths: the
    drivers' own (the direct path) and SQLAlchemy's wrappers (the ORM path)."""
    import asyncpg
    from sqlalchemy import exc

    return (
        OSError,  # refused, reset, unreachable: asyncpg raises these as they are
        exc.OperationalError,
        exc.InterfaceError,
        exc.TimeoutError,  # no pooled connection came back in time
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
        asyncpg.exceptions.InternalClientError,
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", exc.__class__.__name__)  # never its message
    return error_response(request, 503, UNAVAILABLE, {"Retry-After": UNAVAILABLE_RETRY_AFTER})
