"""Path canonicalisation before routing: one spelling per resource, or ``400``.

Why: uvicorn (0.54) percent-decodes ``raw_path`` into ``scope["path"]``,
so ``/api%2Fv1/auth/login`` and ``/api/v1/auth/%6Cogin`` reach Starlette's login handler while
a layer that keys or matches on the path sees another string — the auth rate limit is
bypassed by re-spelling the URL (https://github.com/outline/outline/pull/13504,
https://github.com/coder/coder/pull/27273). And
Starlette's ``redirect_slashes`` answers ``/login/`` with a ``307`` that makes clients re-send
the credential POST. This layer makes every later layer and the router see one canonical
path, decided from the bytes the client sent (``scope["raw_path"]``):

Refused with ``400 {"error":"Invalid path"}``:

* encoded slash or backslash, any case: ``%2F``, ``%5C`` — a path separator that routing and
  a proxy may disagree about (CVE-2007-0450-style traversal, Tomcat/Apache ``AllowEncodedSlashes``);
* a raw backslash (IIS-style separator), NUL and other control characters, spaces and raw
  non-ASCII bytes (RFC 3986 §2: they must be percent-encoded), ``%00``-``%1F`` and ``%7F``;
* a malformed escape (``%``, ``%zz``) and escapes that decode to invalid UTF-8 (overlong
  ``%C0%AE`` for ``.``, CVE-2000-0884-style);
* empty segments (``//``), and dot segments ``.`` / ``..`` — also encoded (``%2E``) and with
  a ``;`` parameter (``..;``, which Tomcat treats as ``..``) — RFC 3986 §5.2.4 would remove
  them, but a request that needs them is probing, not navigating;
* anything that does not start with ``/`` (``OPTIONS *``).

Normalised (RFC 3986 §6.2.2):

* percent-encoded *unreserved* characters are decoded (§2.3: ``%6C`` → ``l``, ``%7E`` → ``~``);
  other escapes are kept, with upper-case hex (§6.2.2.1);
* one trailing slash is removed (except on ``/``), so ``/api/v1/auth/login/`` *is*
  ``/api/v1/auth/login`` — never a redirect (the contract forbids slash redirects).

Case is kept: paths are case-sensitive (RFC 3986 §6.2.2.1); the rate-limit layer folds case for
its own keys. Writes ``scope["raw_path"]`` (canonical, encoded) and ``scope["path"]`` (the same,
fully decoded — what uvicorn would have produced), in place. A path already in canonical form
(the usual case) is recognised by one compiled match and left untouched.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_to_bytes

from bastion.asgi import ASGIApp, Receive, Scope, Send, send_error
from bastion.caching import BoundedSet

__all__ = ["InvalidPath", "PathCanonicalMiddleware", "canonicalise"]

# A segment of pchars (RFC 3986 §3.3) without '%', not "." or "..": nothing to do.
_PCHARS = rb"[A-Za-z0-9\-._~!$&'()*+,;=:@]"
_ALREADY_CANONICAL = re.compile(rb"/|(?:/(?!\.\.?(?:[/;]|\Z))" + _PCHARS + rb"+)+").fullmatch
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})").search
_UNSAFE_BYTE = re.compile(rb"[^\x21-\x7e]|\\").search  # controls, space, DEL, non-ASCII, '\'
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_FORBIDDEN_ESCAPES = frozenset({0x2F, 0x5C, 0x7F, *range(0x20)})  # '/', '\', DEL, controls
_DOT_SEGMENTS = frozenset({b".", b".."})
_KNOWN_SIZE = 4096


class InvalidPath(ValueError):
    """The request path cannot be canonicalised safely; the client gets ``400``."""


def _decode_unreserved(match: re.Match[bytes]) -> bytes:
    byte = int(match.group(1), 16)
    if byte in _UNRESERVED:
        return bytes((byte,))  # RFC 3986 §2.3: %6C and l are the same URI
    if byte in _FORBIDDEN_ESCAPES:
        raise InvalidPath(f"encoded byte 0x{byte:02X}")
    return b"%" + match.group(1).upper()


def canonicalise(raw: bytes) -> tuple[bytes, str]:
    """The canonical encoded path and its decoded form; :class:`InvalidPath` when refused."""
    if not raw.startswith(b"/"):
        raise InvalidPath("does not start with /")
    if _UNSAFE_BYTE(raw):
        raise InvalidPath("control, space, backslash or non-ASCII byte")
    if _BAD_PERCENT(raw):
        raise InvalidPath("malformed percent-escape")
    encoded = _ESCAPE.sub(_decode_unreserved, raw)
    if b"//" in encoded:
        raise InvalidPath("empty segment")
    for segment in encoded.split(b"/"):
        if segment.split(b";", 1)[0] in _DOT_SEGMENTS:
            raise InvalidPath("dot segment")
    if len(encoded) > 1 and encoded.endswith(b"/"):
        encoded = encoded[:-1]
    try:
        decoded = unquote_to_bytes(encoded).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPath("escapes are not UTF-8") from None
    return encoded, decoded


class PathCanonicalMiddleware:
    """Refuse ambiguous paths with ``400``; rewrite the rest to their canonical form."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._known_canonical: BoundedSet[bytes] = BoundedSet(_KNOWN_SIZE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path")
        if raw:
            if type(raw) is not bytes:
                raw = bytes(raw)
            if b"?" in raw:  # some servers and clients leave the query in raw_path
                raw = raw.split(b"?", 1)[0]
                scope["raw_path"] = raw
        else:
            raw = quote(scope.get("path", ""), safe="/!$&'()*+,;=:@").encode("ascii")
        # A path seen before as canonical (the usual request) costs one set lookup.
        if raw not in self._known_canonical:
            if _ALREADY_CANONICAL(raw) is not None:
                self._known_canonical.put(raw)  # bounded: distinct ids must not grow memory
            else:
                try:
                    encoded, decoded = canonicalise(raw)
                except InvalidPath:
                    await send_error(scope, send, 400, "Invalid path")
                    return
                scope["raw_path"] = encoded
                scope["path"] = decoded
        await self.app(scope, receive, send)
