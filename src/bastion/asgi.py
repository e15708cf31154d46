"""ASGI types and the few helpers every bastion layer shares (standard library only).

Layers communicate through documented scope keys rather than globals:

* ``scope["bastion.request_id"]`` — set by the request-id layer, read by every error body.
* ``scope["client"]`` / ``scope["scheme"]`` — rewritten by the trusted-proxy layer, so later
  layers (HTTPS enforcement, rate limits, logging) see the real client.
* ``scope["path"]`` — rewritten to its canonical form by the path layer before routing.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

REQUEST_ID_KEY = "bastion.request_id"
JSON_CONTENT_TYPE = (b"content-type", b"application/json")


def get_header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header *name* (lower-case bytes) in the request, or ``None``."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def get_headers(scope: Scope, name: bytes) -> list[bytes]:
    """Every value of header *name* (lower-case bytes), in order."""
    return [bytes(v) for k, v in scope.get("headers", ()) if k == name]


def request_id(scope: Scope) -> str:
    """The id the request-id layer gave this request ('' when that layer is absent)."""
    return str(scope.get(REQUEST_ID_KEY, ""))


def error_body(scope: Scope, message: str, details: dict[str, list[str]] | None = None) -> bytes:
    """The contract's error body: ``{"error", "requestId"}`` plus optional ``details``."""
    body: dict[str, Any] = {"error": message, "requestId": request_id(scope)}
    if details is not None:
        body["details"] = details
    return json.dumps(body, separators=(",", ":")).encode()


async def send_json(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Send a complete JSON response in two messages."""
    out: Headers = [JSON_CONTENT_TYPE, (b"content-length", str(len(body)).encode())]
    out.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    scope: Scope,
    send: Send,
    status: int,
    message: str,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    details: dict[str, list[str]] | None = None,
) -> None:
    """Answer with the contract's error shape. Call only before the response has started."""
    await send_json(send, status, error_body(scope, message, details), headers)
