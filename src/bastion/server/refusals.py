"""Answers the server gives before the app — through the stack's own outer layers.

Some requests never reach the app: a head over a limit (``431``, ``414``), a head or body too
slow (``408``), a request the HTTP parser refuses (``400``; ``405`` for a method llhttp does
not know, ``TRACK`` among them). The contract wants them like any other response: the
security headers, an ``X-Request-ID``, the ``{"error", "requestId"}`` body, and an access-log
line with the request id. So they are not hand-written bytes: :func:`refusal_app` takes the
app's outermost layers — request id, access log, security headers, exactly as configured for
that listener — and puts a one-line responder in place of everything inside them. What the
request line told (method, path) goes into the scope, so the log line names it; the headers
were never parsed, so none are read.

A ``405`` carries the ``Allow`` of the requested path (RFC 9110 §15.5.6), looked up in the
app's method-policy layer.
"""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import unquote

from bastion.asgi import ASGIApp, Receive, Scope, Send, send_error
from bastion.middleware.access_log import AccessLogMiddleware
from bastion.middleware.headers import SecurityHeadersMiddleware
from bastion.middleware.methods import MethodPolicyMiddleware
from bastion.middleware.request_id import RequestIDMiddleware
from bastion.server.head import Refusal

__all__ = ["REFUSAL_KEY", "RequestLine", "allow_of", "refusal_app", "request_line"]

#: Scope key holding the :class:`~bastion.server.head.Refusal` the responder sends.
REFUSAL_KEY = "bastion.refusal"

_CONVENTIONS = (RequestIDMiddleware, AccessLogMiddleware, SecurityHeadersMiddleware)
_MAX_DEPTH = 64
# token SP request-target (RFC 9112 §3): only what a log line needs, read from a refused head.
_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}) ([^ \x00-\x20]{1,8192})")


async def _respond(scope: Scope, receive: Receive, send: Send) -> None:
    refusal: Refusal = scope[REFUSAL_KEY]
    await send_error(scope, send, refusal.status, refusal.message, headers=refusal.headers)


def refusal_app(app: Any) -> ASGIApp:
    """The responder wrapped in *app*'s outer convention layers (copies; *app* is untouched).

    The chain is followed through ``.app`` attributes to the request-id layer, then every
    consecutive request-id, access-log and security-headers layer is copied with its inner
    app replaced. An app without them (served by ``bastion serve`` only in tests) gets the
    three layers with their defaults.
    """
    node = app
    for _ in range(_MAX_DEPTH):
        if node is None or isinstance(node, RequestIDMiddleware):
            break
        node = getattr(node, "app", None)
    layers: list[Any] = []
    while isinstance(node, _CONVENTIONS) and len(layers) < _MAX_DEPTH:
        layers.append(node)
        node = node.app
    if not layers:
        return RequestIDMiddleware(AccessLogMiddleware(SecurityHeadersMiddleware(_respond)))
    inner: ASGIApp = _respond
    for layer in reversed(layers):
        clone = copy.copy(layer)
        clone.app = inner
        inner = clone
    return inner


def _method_policy(app: Any) -> MethodPolicyMiddleware | None:
    """The method-policy layer inside *app*'s chain of ``.app`` attributes, if any."""
    for _ in range(_MAX_DEPTH):
        if isinstance(app, MethodPolicyMiddleware):
            return app
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


def allow_of(app: Any, path: str) -> bytes:
    """The ``Allow`` value of *path* in *app* (``b""`` without a method-policy layer)."""
    policy = _method_policy(app)
    return b"" if policy is None else policy.allow_header(path)


class RequestLine:
    """What a refused head's request line says, for the scope of its refusal."""

    __slots__ = ("method", "path", "query", "raw_path")

    def __init__(self, method: str, raw_path: bytes, query: bytes) -> None:
        self.method = method
        self.raw_path = raw_path
        self.path = unquote(raw_path.decode("latin-1"))
        self.query = query


def request_line(data: bytes | bytearray) -> RequestLine | None:
    """Method and target of the request line at the start of *data*, when it has that form."""
    match = _REQUEST_LINE.match(data)
    if match is None:
        return None
    target = match.group(2)
    if not target.startswith(b"/"):
        return RequestLine(match.group(1).decode("ascii"), b"", b"")  # "*" or absolute-form
    path, _, query = target.partition(b"?")
    return RequestLine(match.group(1).decode("ascii"), path.partition(b"#")[0], query)
