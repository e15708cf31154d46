"""bastion.fastapi.install_error_handlers: FastAPI's errors in the contract's shape."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from bastion import HTTPError, secure
from bastion.asgi import ASGIApp
from bastion.fastapi import install_error_handlers


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")
    country: str = Field(pattern=r"^[A-Z]{2}$")


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quantity: int = Field(ge=1, le=100)
    address: Address


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/orders")
    async def create(order: Order) -> dict[str, int]:
        return {"quantity": order.quantity}

    @app.get("/search")
    async def search(limit: int = 10) -> dict[str, int]:
        return {"limit": limit}

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPError(418, "No coffee", headers=[(b"x-brew", b"tea")])

    @app.get("/gone")
    async def gone() -> None:
        raise HTTPException(410)

    return app


async def get(app: ASGIApp, method: str, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        return await client.request(method, path, **kwargs)


async def test_validation_errors_become_the_contract_400() -> None:
    asgi = secure(make_app(), rate_limits=[])
    body = {"quantity": 0, "address": {"country": "fr"}, "extra": 1}
    response = await get(asgi, "POST", "/orders", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "error": "Invalid request body",
        "requestId": response.headers["x-request-id"],
        "details": {
            "quantity": ["Input should be greater than or equal to 1"],
            "address.country": ["Invalid format"],  # never the internal pattern
            "extra": ["Unknown field"],
        },
    }
    query = await get(asgi, "GET", "/search?limit=many")
    assert query.status_code == 400
    assert query.json()["error"] == "Invalid query parameters"
    assert query.json()["details"] == {
        "limit": ["Input should be a valid integer, unable to parse string as an integer"]
    }


async def test_http_errors_keep_status_message_and_headers() -> None:
    app = make_app()
    teapot = await get(app, "GET", "/teapot")
    assert teapot.status_code == 418
    assert teapot.json() == {"error": "No coffee", "requestId": ""}
    assert teapot.headers["x-brew"] == "tea"
    gone = await get(app, "GET", "/gone")
    assert gone.json() == {"error": "Gone", "requestId": ""}
    missing = await get(app, "GET", "/nowhere")
    assert missing.json() == {"error": "Not found", "requestId": ""}


def test_openapi_document_says_400_not_422() -> None:
    document = make_app().openapi()
    responses = document["paths"]["/orders"]["post"]["responses"]
    assert "422" not in responses
    assert responses["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["ErrorBody"]["required"] == ["error", "requestId"]
