"""Request ids: one per request, on every response, and the key that ties a log line to it.

Why a layer of its own, outermost in the stack: every other layer (error bodies, the access
log, the error log) needs the id, and a ``500`` produced by the safe-errors layer must carry it
too. The id is stored at ``scope[bastion.asgi.REQUEST_ID_KEY]`` (the scope is mutated in place
so that a layer *outside* this one, such as the access log, can read it when the response ends).

The contract's echo rule: a client-sent ``X-Request-ID`` is echoed only if it matches
``^[A-Za-z0-9._-]{1,64}$``. Anything else — too long, empty, spaces, CR/LF, quotes, non-ASCII —
is replaced by a fresh id, so a client can never inject a header (CRLF, response splitting),
a log field (quotes, newlines: log forging, CWE-117) or markup (XSS in a log viewer) through it.
Only the first ``X-Request-ID`` header is considered.

The response always carries exactly one ``X-Request-ID``: any the app set itself is replaced,
so the header and the ``requestId`` of an error body can never disagree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable

from bastion.asgi import REQUEST_ID_KEY, ASGIApp, HeaderNames, Message, Receive, Scope, Send
from bastion.errors import ConfigError

__all__ = ["REQUEST_ID_HEADER", "RequestIDMiddleware", "new_request_id", "valid_request_id"]

REQUEST_ID_HEADER = b"x-request-id"
# fullmatch, not ``$``: Python's ``$`` also matches before a trailing newline.
_VALID = re.compile(rb"[A-Za-z0-9._-]{1,64}").fullmatch
_OWNED = HeaderNames((REQUEST_ID_HEADER,))


_POOL_BYTES = 4096  # random bytes per read
_ID_DIGITS = 32  # 128 bits as hex


class _RandomPool:
    """os.urandom read 4 KiB at a time: one syscall per 256 ids instead of one per id.

    Still the operating system's CSPRNG (ids are not secrets, but sequential or predictable
    ids would reveal request volume). Refilled in a forked child so workers never share ids.
    Kept as hex text, converted once per refill rather than once per id.
    """

    __slots__ = ("hex", "offset")

    def __init__(self) -> None:
        self.refill()

    def refill(self) -> None:
        self.hex = os.urandom(_POOL_BYTES).hex()
        self.offset = 0

    def take(self) -> str:
        """The next 32 unused hex digits (each random byte is used once)."""
        start = self.offset
        if start >= 2 * _POOL_BYTES:
            self.refill()
            start = 0
        self.offset = start + _ID_DIGITS
        return self.hex[start : start + _ID_DIGITS]


_POOL = _RandomPool()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL.refill)


def new_request_id() -> str:
    """A fresh id: 128 random bits as 32 hex digits (unique across processes and hosts)."""
    return _POOL.take()


def valid_request_id(value: bytes) -> bool:
    """Whether a client-sent id may be echoed (the contract's ``^[A-Za-z0-9._-]{1,64}$``)."""
    return _VALID(value) is not None


class RequestIDMiddleware:
    """Give each HTTP request an id and put it on its response as ``X-Request-ID``.

    ``trust_client_id=False`` never echoes a client's id (every request gets a fresh one):
    for APIs whose logs must not hold client-chosen values even when well-formed.
    """

    def __init__(self, app: ASGIApp, *, trust_client_id: bool = True) -> None:
        if not isinstance(trust_client_id, bool):
            raise ConfigError("RequestIDMiddleware(trust_client_id=...)", "must be True or False")
        self.app = app
        self.trust_client_id = trust_client_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        rid: str | None = None
        if self.trust_client_id:
            for key, value in scope.get("headers", ()):
                if key == REQUEST_ID_HEADER:
                    if _VALID(value) is not None:
                        rid = value.decode("ascii")
                    break
        if rid is None:
            rid = _POOL.take()  # new_request_id() without the extra call
        scope[REQUEST_ID_KEY] = rid
        pair_list = ((REQUEST_ID_HEADER, rid.encode("ascii")),)

        # A plain function returning the server's awaitable (the caller awaits it at once):
        # one coroutine frame fewer per message than an ``async def`` wrapper.
        def send_with_id(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                # Any X-Request-ID from inside goes, whatever its case: one id only.
                message["headers"] = _OWNED.without(message.get("headers", ()), pair_list)
            return send(message)

        await self.app(scope, receive, send_with_id)
