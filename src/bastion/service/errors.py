"""The service's errors: the library's contract-shaped handlers, plus its bearer scheme.

The handlers themselves are the library's (:func:`bastion.fastapi.install_error_handlers`):
the service is their first user. What is the service's own is the OpenAPI security scheme
its routes reference, and the ``ErrorBody`` model documented for every error.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

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
    _document_bearer(app)
