"""uvicorn's httptools protocol, with parser-level refusals in the contract's shape.

Some requests never reach the ASGI app: llhttp (behind httptools) rejects a method it does
not know — ``TRACK`` among them — and any malformed request line or header, and uvicorn then
writes a bare ``400 Invalid HTTP request received.`` with none of the security headers. The
contract wants ``TRACE`` *and* ``TRACK`` answered ``405`` everywhere and every response to
carry the headers, a request id and the ``{"error", "requestId"}`` body. This subclass only
replaces that last-resort response: an unknown method becomes ``405 Method not allowed``
(the request line was not parsed, so there is no path to list an ``Allow`` for), anything
else ``400 Bad request``; the connection is closed either way, as uvicorn does.
"""

from __future__ import annotations

import json
import secrets
import sys

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bastion.middleware.headers import DEFAULTS

_HSTS = "Strict-Transport-Security"
_PLAIN_HEADERS = b"".join(
    f"{name.lower()}: {value}\r\n".encode("latin-1")
    for name, value in DEFAULTS.items()
    if name != _HSTS
)
_TLS_HEADERS = _PLAIN_HEADERS + f"{_HSTS.lower()}: {DEFAULTS[_HSTS]}\r\n".encode("latin-1")


class ContractHttpToolsProtocol(HttpToolsProtocol):
    """Answers requests the parser refuses with the contract's status, headers and body."""

    def send_400_response(self, msg: str) -> None:
        # Called by uvicorn from inside its `except httptools.HttpParserError` block.
        error = sys.exc_info()[1]
        if isinstance(error, httptools.HttpParserInvalidMethodError):
            status, message = b"405 Method Not Allowed", "Method not allowed"
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
