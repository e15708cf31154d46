"""Safe errors: every failure leaves as the contract's ``{"error", "requestId"}`` and nothing more.

Why: a stack trace, an exception message, SQL or a file path in a response tells an attacker
which library, version and query to aim at (OWASP API8:2023 security misconfiguration,
CWE-209). The contract allows a 5xx body to say only ``"An internal error occurred"``; the
details go to the log, under the same request id, so support can still find them.

What this layer does, around everything inside it:

* ``bastion.errors.HTTPError`` raised inside → its status, public message, headers and
  ``details`` in the contract shape (never its internal ``detail``; a 5xx one says only
  ``"An internal error occurred"``, a status outside 400–599 becomes a logged 500).
* any other exception → ``500 {"error":"An internal error occurred","requestId":...}``; the
  traceback — redacted with :func:`bastion.middleware.access_log.redact`, so a token or password
  in an exception message stays out of the log too — goes to logger ``bastion.error`` as one
  JSON line with ``timestamp``, ``level``, ``request_id``, method and path.
* a ``500`` *response* from inside (Starlette's ``ServerErrorMiddleware`` answers
  ``Internal Server Error`` and then re-raises; a debug page would carry the traceback) is
  held back and replaced by the contract's body, so no inner component can put exception text
  in a 500. If the exception follows, it decides the answer (an ``HTTPError`` keeps its
  status). Other statuses, 502–504 included, pass through unchanged.
* an app that returns without answering gets the same ``500`` (instead of the server's
  plain-text one, which would miss the security headers and request id).
* inner layers can put headers on every response that leaves this layer, its own answers
  included, by appending them to the list at ``scope["bastion.response_headers"]`` (the
  rate limiter does: a 500 is a limited response too).
* if the response has already started when the exception arrives, a second start would be a
  protocol error: the error is logged and the layer returns without completing the response,
  which makes the server close the connection (the client sees a truncated response, never a
  corrupted or spliced one).

Place it inside the request-id and security-headers layers so its answers carry both, and
inside the CORS layer so a browser sees the 500 rather than a CORS failure (a 500 without
``Access-Control-Allow-Origin`` reaches the page as a network error:
https://github.com/Kludex/starlette/issues/1116).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable

from bastion.asgi import (
    RESPONSE_HEADERS_KEY,
    ASGIApp,
    Headers,
    Message,
    Receive,
    Scope,
    Send,
    request_id,
    send_error,
)
from bastion.errors import HTTPError
from bastion.log import JSON_RECORD, timestamp
from bastion.redaction import log_line, redact

__all__ = ["ERROR_LOGGER", "INTERNAL_ERROR", "SafeErrorsMiddleware"]

ERROR_LOGGER = "bastion.error"
INTERNAL_ERROR = "An internal error occurred"
# send_json writes these two itself; an HTTPError must not duplicate them.
_OWN_HEADERS = frozenset({b"content-type", b"content-length"})


async def _sent_nothing() -> None:
    """What awaiting a swallowed message gives: nothing, at once."""


async def _send_500(scope: Scope, send: Send, added: Headers) -> None:
    """The contract's 500, with the headers inner layers added for every response."""
    await send_error(scope, send, 500, INTERNAL_ERROR, headers=added)


def _find_http_error(exc: BaseException) -> HTTPError | None:
    """The HTTPError itself, or the only one inside a (nested) exception group of one."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, HTTPError) else None


class SafeErrorsMiddleware:
    """Turn exceptions and inner 500s into the contract's error body; log details redacted."""

    def __init__(self, app: ASGIApp, *, logger: logging.Logger | str = ERROR_LOGGER) -> None:
        self.app = app
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False  # a start message went out to the client
        held_500 = False  # the inner app answered 500; we answer instead
        # Headers inner layers want on every response, this layer's own included.
        added: Headers = []
        scope[RESPONSE_HEADERS_KEY] = added

        # A plain function returning the next send's awaitable (the caller awaits it at once):
        # one coroutine frame fewer per message than an ``async def`` wrapper.
        def guarded_send(message: Message) -> Awaitable[None]:
            nonlocal started, held_500
            kind = message["type"]
            if kind == "http.response.start":
                if message.get("status") == 500 and not started:
                    held_500 = True
                    return _sent_nothing()
                started = True
                if added:
                    message["headers"] = [*message.get("headers", ()), *added]
            elif held_500:
                # body (perhaps a traceback), trailers, pathsend of a held-back 500
                return _sent_nothing()
            return send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except Exception as exc:
            http_error = _find_http_error(exc)
            if started:
                self._log(scope, exc, "exception after the response started; connection closed")
                return
            if http_error is not None:
                await self._send_http_error(scope, send, http_error, added)
            else:
                self._log(scope, exc, "unhandled exception")
                await _send_500(scope, send, added)
            return

        if not started:
            self._log(scope, None, "inner app answered 500" if held_500 else "no response")
            await _send_500(scope, send, added)

    async def _send_http_error(
        self, scope: Scope, send: Send, error: HTTPError, added: Headers
    ) -> None:
        status = error.status if isinstance(error.status, int) else 500
        if not 400 <= status <= 599:
            self._log(scope, error, f"HTTPError with status {status!r}")
            await _send_500(scope, send, added)
            return
        # The contract: a 5xx body says only "An internal error occurred".
        message = INTERNAL_ERROR if status >= 500 else error.public_message
        headers = [(k, v) for k, v in error.headers if k.lower() not in _OWN_HEADERS]
        headers.extend(added)
        await send_error(scope, send, status, message, headers=headers, details=error.details)

    def _log(self, scope: Scope, exc: BaseException | None, what: str) -> None:
        fields: dict[str, object] = {
            "timestamp": timestamp(),
            "level": "error",
            "event": "error",
            "message": what,
            "request_id": request_id(scope),
            "method": scope.get("method", ""),
            "path": redact(str(scope.get("path", ""))[:2048]),
        }
        if exc is not None:
            fields["exception"] = type(exc).__name__
            fields["traceback"] = redact("".join(traceback.format_exception(exc)))
        # No exc_info: a handler would print the raw, unredacted traceback.
        self.logger.error(log_line(fields), extra={JSON_RECORD: True})
