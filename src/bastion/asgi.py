"""ASGI types and the few helpers every bastion layer shares (standard library only).

Layers communicate through documented scope keys rather than globals:

* ``scope["bastion.request_id"]`` — set by the request-id layer, read by every error body.
* ``scope["client"]`` / ``scope["scheme"]`` — rewritten by the trusted-proxy layer, so later
  layers (HTTPS enforcement, rate limits, logging) see the real client.
* ``scope["path"]`` — rewritten to its canonical form by the path layer before routing.
* ``scope["bastion.response_headers"]`` — a list the safe-errors layer opens for each request
  and appends to whatever response leaves it: its own 500s and the app's responses alike.
  An inner layer whose headers belong on every response (the rate limiter's) adds them there
  instead of wrapping ``send`` — one header pass fewer per layer, and the error responses made
  outside it carry them too.
* ``scope["bastion.ratelimit"]`` — the rate-limit layer itself, so a per-route
  :class:`bastion.RateLimit` finds the stack's store without a global; and
  ``scope["bastion.ratelimit.charges"]`` — ``(charges, index)``: the charges made for this
  request and where their headers start in ``bastion.response_headers``, so a per-route limit
  merges its policy into the same four headers.
* ``scope["bastion.principal"]`` — the authenticated caller, set by bearer authentication;
  a rate limit keyed on ``"principal"`` reads its ``subject``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from operator import itemgetter
from typing import Any

from bastion.caching import BoundedSet

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

REQUEST_ID_KEY = "bastion.request_id"
RESPONSE_HEADERS_KEY = "bastion.response_headers"
RATELIMIT_KEY = "bastion.ratelimit"
RATE_CHARGES_KEY = "bastion.ratelimit.charges"
PRINCIPAL_KEY = "bastion.principal"  # the same key as bastion.auth.bearer.PRINCIPAL_KEY
_first_item = itemgetter(0)
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


class HeaderNames:
    """Response header names a layer owns, matched ASCII case-insensitively (RFC 9110 §5.1).

    A layer that sets a header first removes any copy from inside, so a response never carries
    two. Lower-casing every name of every response costs a method call and a new bytes object
    per header per layer; instead, names seen before that are *not* owned are remembered (the
    exact bytes objects' values: bytes are immutable, so the verdict never goes stale), and a
    response made only of such names — nearly all of them — costs one set lookup per header.
    The memory is bounded; an unhashable name (``bytearray``) simply takes the careful path.
    """

    __slots__ = ("_known", "names", "prefixes")
    _KNOWN_SIZE = 256

    def __init__(self, names: Iterable[bytes], prefixes: Iterable[bytes] = ()) -> None:
        self.names = frozenset(bytes(n).lower() for n in names)
        self.prefixes = tuple(bytes(p).lower() for p in prefixes)
        self._known: BoundedSet[bytes] = BoundedSet(self._KNOWN_SIZE)  # known NOT to be owned

    def owns(self, name: bytes) -> bool:
        """Whether *name* is one of these names (or starts with one of the prefixes)."""
        lower = bytes(name).lower()
        return lower in self.names or (bool(self.prefixes) and lower.startswith(self.prefixes))

    def absent_from(self, headers: Sequence[tuple[bytes, bytes]]) -> bool:
        """Whether no header in *headers* has one of these names."""
        known = self._known
        try:
            if known.issuperset(map(_first_item, headers)):
                return True  # every name is known not to be owned: one pass in C
        except TypeError:
            pass  # an unhashable name: the loop below decides
        try:
            for name, _ in headers:
                if name not in known:
                    if self.owns(name):
                        return False
                    if type(name) is bytes:
                        known.put(name)  # bounded: the app's names are few, but be safe
        except TypeError:  # an unhashable name: decide without the memory
            return not any(self.owns(name) for name, _ in headers)
        return True

    def without(
        self, headers: Iterable[tuple[bytes, bytes]], extra: Iterable[tuple[bytes, bytes]] = ()
    ) -> Headers:
        """A new list: *headers* minus those with one of these names (order kept), + *extra*."""
        if type(headers) is not list and type(headers) is not tuple:
            headers = list(headers)  # any iterable is allowed by ASGI; read it once
        if self.absent_from(headers):
            return [*headers, *extra]
        kept = [h for h in headers if not self.owns(h[0])]
        kept.extend(extra)
        return kept


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
