"""uvicorn's httptools protocol, with parser-level refusals in the contract's shape.

Some requests never reach the ASGI app: llhttp (behind httptools) rejects a method it does
not know — ``TRACK`` among them — and any malformed request line or header, and uvicorn then
writes a bare ``400 Invalid HTTP request received.`` with none of the security headers. The
contract wants ``TRACE`` *and* ``TRACK`` answered ``405`` everywhere and every response to
carry the headers, a request id and the ``{"error", "requestId"}`` body. This subclass only
replaces that last-resort response: an unknown method becomes ``405 Method not allowed``
with the ``Allow`` of the requested path (RFC 9110 §15.5.6 requires it; the path is read
from the request line the parser refused and looked up in the app's method-policy layer),
anything else ``400 Bad request``; the connection is closed either way, as uvicorn does.

It also runs each request on :class:`~bastion.http_cycle.FastHeadCycle`, which writes the
usual response head without uvicorn's per-header loop (the same bytes; see that module).
"""

from __future__ import annotations

import json
import re
import secrets
import sys
from typing import Any
from urllib.parse import unquote

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from bastion.http_cycle import FastHeadCycle
from bastion.middleware.headers import DEFAULTS
from bastion.middleware.methods import MethodPolicyMiddleware

_HSTS = "Strict-Transport-Security"
_PLAIN_HEADERS = b"".join(
    f"{name.lower()}: {value}\r\n".encode("latin-1")
    for name, value in DEFAULTS.items()
    if name != _HSTS
)
_TLS_HEADERS = _PLAIN_HEADERS + f"{_HSTS.lower()}: {DEFAULTS[_HSTS]}\r\n".encode("latin-1")
# token SP origin-form SP HTTP-version (RFC 9112 §3); only the path is used.
_REQUEST_LINE = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32} (/[^ ?#\x00-\x20]*)")


def _method_policy(app: Any) -> MethodPolicyMiddleware | None:
    """The method-policy layer inside *app*'s chain of ``.app`` attributes, if any."""
    for _ in range(64):
        if isinstance(app, MethodPolicyMiddleware):
            return app
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


class ContractHttpToolsProtocol(HttpToolsProtocol):
    """Answers requests the parser refuses with the contract's status, headers and body."""

    _pending = b""

    def data_received(self, data: bytes) -> None:
        self._pending = data  # the bytes a parser error refers to, for the 405's path
        super().data_received(data)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # uvicorn builds the cycle itself (on_headers_complete names its own class); every
        # cycle, pipelined or not, starts here, before its task has run a single step.
        if type(cycle) is RequestResponseCycle:
            cycle.__class__ = FastHeadCycle  # a subclass adding no state: only send differs
        super()._start_asgi_task(cycle, app)

    def _allow(self) -> bytes:
        match = _REQUEST_LINE.match(self._pending)
        policy = _method_policy(self.app)
        if match is None or policy is None:
            return b""
        return policy.allow_header(unquote(match.group(1).decode("latin-1")))

    def send_400_response(self, msg: str) -> None:
        # Called by uvicorn from inside its `except httptools.HttpParserError` block.
        error = sys.exc_info()[1]
        extra = b""
        if isinstance(error, httptools.HttpParserInvalidMethodError):
            status, message = b"405 Method Not Allowed", "Method not allowed"
            extra = b"allow: " + self._allow() + b"\r\n"
        else:
            status, message = b"400 Bad Request", "Bad request"
        request_id = secrets.token_hex(16)
        body = json.dumps({"error": message, "requestId": request_id}, separators=(",", ":"))
        tls = self.transport.get_extra_info("sslcontext") is not None
        content = [b"HTTP/1.1 ", status, b"\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                _TLS_HEADERS if tls else _PLAIN_HEADERS,
                extra,
                b"x-request-id: ",
                request_id.encode("ascii"),
                b"\r\ncontent-type: application/json\r\ncontent-length: ",
                str(len(body)).encode("ascii"),
                b"\r\nconnection: close\r\n\r\n",
                body.encode("ascii"),
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
