"""Request body rules for the JSON API: media type, size, syntax and depth — before the app.

Why: a framework reads the whole body before it looks at it, so a 1 GB upload, a gzip bomb
or ``[[[[...]]]]`` nested 100 000 deep (``RecursionError`` in a recursive parser, CWE-674)
costs the server before any handler can refuse it; and a form or ``text/plain`` POST is the
way a cross-site request gets past CORS without a preflight (CSRF against a cookie-auth
endpoint such as ``/auth/refresh``). The contract's rules, for ``POST``/``PUT``/``PATCH``
under ``path_prefixes`` (``/api/``):

1. ``Content-Type`` must be ``application/json`` (RFC 8259 §11), parameters allowed, but a
   ``charset`` other than UTF-8 is refused (RFC 8259 §8.1: JSON exchanged between systems
   is UTF-8); ``application/jsonx``, ``text/json``, ``application/x-www-form-urlencoded``,
   two ``Content-Type`` headers → ``415 {"error":"Unsupported media type"}``. A
   ``Content-Encoding`` other than ``identity`` is refused the same way (RFC 9110 §15.5.16;
   no decompression bombs).
2. A ``Content-Length`` over ``max_bytes`` → ``413`` at once, without reading. Chunked bodies
   and bodies that lie about their length are counted while they stream: ``413`` as soon as
   the count passes the limit; nothing more is read. An invalid ``Content-Length`` (not
   digits, several different values) → ``400`` (RFC 9112 §6.3).
3. The body must be JSON: UTF-8 and well-formed, without ``NaN``/``Infinity`` (not JSON,
   though Python accepts them) → else ``400 {"error":"Malformed JSON"}``.
4. It must nest no deeper than ``max_depth`` → else ``400 {"error":"JSON nested too
   deeply"}``. Checked *before* parsing, in linear time: string literals are removed with a
   regex that cannot backtrack, the brackets left are counted; the parser only ever sees
   shallow documents, so it cannot hit the recursion limit.
5. The buffered body is replayed to the app unchanged, in one ``http.request`` message.

A choice, written down as the brief asks: a ``POST`` without a body (no ``Content-Length`` or
``Content-Length: 0``, not chunked, and no bytes arriving) passes without a ``Content-Type``:
``/auth/logout`` and ``/auth/refresh`` carry only a cookie, and clients send them bare. A body
that arrives without being announced (HTTP/2 has no ``Content-Length`` obligation) is still
held to every rule. Other methods and paths pass through untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from itertools import accumulate

from bastion.asgi import ASGIApp, Message, Receive, Scope, Send, send_error
from bastion.errors import ConfigError

__all__ = ["BodyRulesMiddleware", "json_depth_exceeds"]

_OPTION = "BodyRulesMiddleware"
_METHODS = frozenset({"POST", "PUT", "PATCH"})
# A JSON string literal (RFC 8259 §7). The closing quote is optional so that an unterminated
# string runs to the end instead of failing and being retried at every later quote (which
# would be quadratic); the parser rejects it afterwards anyway.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}
_CHARSET = re.compile(rb'charset\s*=\s*"?([^";\s]*)"?', re.IGNORECASE)


def json_depth_exceeds(text: str, max_depth: int) -> bool:
    """Whether the arrays/objects in *text* nest deeper than *max_depth* (linear time)."""
    if text.count("[") + text.count("{") <= max_depth:
        return False  # cannot be deeper than the number of openings (the usual case)
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return bool(brackets) and max(accumulate(map(_DELTA.__getitem__, brackets))) > max_depth


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _is_json(values: list[bytes]) -> bool:
    if len(values) != 1:
        return False  # none, or two Content-Type headers: which one would the app believe?
    media, _, params = values[0].partition(b";")
    if media.strip().lower() != b"application/json":
        return False
    charset = _CHARSET.search(params)
    return charset is None or charset.group(1).lower() in (b"utf-8", b"utf8")


class BodyRulesMiddleware:
    """415 / 413 / 400 for request bodies that break the JSON API's rules; replay the rest."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int = 65536,
        max_depth: int = 32,
        path_prefixes: Iterable[str] = ("/api/",),
    ) -> None:
        for name, value in (("max_bytes", max_bytes), ("max_depth", max_depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{_OPTION}({name}=...)", f"{value!r} is not a positive integer")
        if isinstance(path_prefixes, str | bytes):
            raise ConfigError(f"{_OPTION}(path_prefixes=...)", "give a list, not one string")
        prefixes = tuple(path_prefixes)
        for prefix in prefixes:
            if not isinstance(prefix, str) or not prefix.startswith("/"):
                raise ConfigError(f"{_OPTION}(path_prefixes=...)", f"{prefix!r} must start with /")
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _METHODS
            or not scope["path"].startswith(self.prefixes)
        ):
            await self.app(scope, receive, send)
            return
        await self._checked(scope, receive, send)

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        lengths: list[bytes] = []
        types: list[bytes] = []
        chunked = False
        encoded = False
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                lengths.append(bytes(value).strip())
            elif key == b"content-type":
                types.append(bytes(value))
            elif key == b"transfer-encoding":
                chunked = True
            elif key == b"content-encoding" and bytes(value).strip().lower() != b"identity":
                encoded = True

        length = 0
        if lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit():
                await send_error(scope, send, 400, "Invalid Content-Length")
                return
            length = int(lengths[0])
        json_type = _is_json(types)
        if (length > 0 or chunked) and (not json_type or encoded):
            await send_error(scope, send, 415, "Unsupported media type")
            return
        if length > self.max_bytes:
            await send_error(scope, send, 413, "Request body too large")  # nothing read
            return

        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # http.disconnect: nobody is left to answer
            part = message.get("body", b"")
            total += len(part)
            if total > self.max_bytes:
                # Chunked or lying about its length: stop reading now, not after the flood.
                await send_error(scope, send, 413, "Request body too large")
                return
            if part:
                chunks.append(part)
            if not message.get("more_body", False):
                break
        data = b"".join(chunks)

        if data:
            if not json_type or encoded:  # a body nobody announced (e.g. HTTP/2)
                await send_error(scope, send, 415, "Unsupported media type")
                return
            problem = self._json_problem(data)
            if problem is not None:
                await send_error(scope, send, 400, problem)
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()  # afterwards: the server's http.disconnect

        await self.app(scope, replay, send)

    def _json_problem(self, data: bytes) -> str | None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return "Malformed JSON"
        if json_depth_exceeds(text, self.max_depth):
            return "JSON nested too deeply"
        try:
            json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return "Malformed JSON"
        return None
