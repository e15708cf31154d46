"""Structured access log — one JSON object per line — that never writes a credential.

Why its own layer: logs are read by more people, kept longer and copied to more places than
the data they describe, so a token in a log is a token leaked (OWASP Logging Cheat Sheet,
"data to exclude"; CWE-532). The contract says tokens never appear in logs or URLs; this layer
makes that true for the access log; :mod:`bastion.redaction` masks the free text (the error log
uses it too).

What a line holds (logger ``bastion.access``, level INFO, or WARNING for 5xx)::

    {"timestamp":"2025-06-01T12:00:00.123Z","level":"info","event":"access","method":"POST",
     "path":"/api/v1/auth/login","query":["next"],"status":401,"duration_ms":3.21,
     "client":"203.0.113.9","request_id":"..."}

* ``timestamp`` (RFC 3339, UTC) and ``level`` are in the line itself, so it stays a complete
  record under any handler or formatter the application configures; with none configured
  (plain uvicorn), :func:`bastion.log.ensure_handler` writes it to stderr.

* ``path`` without the query string; the query contributes its parameter *names* only (a
  reset link ends in ``?token=<token>``; OAuth puts ``code`` in the query).
* no request or response headers at all: not ``Authorization``, not ``Cookie``/``Set-Cookie``,
  not ``User-Agent`` (free text chosen by the client), and no bodies.
* ``client`` is read when the response ends, so it is the address the trusted-proxy layer
  resolved (that layer rewrites the scope in place), likewise the request id.
* every free-text field goes through :func:`redact`, so a path segment that looks like a JWT
  or a long random secret is masked; JSON encoding escapes CR/LF, so a client cannot forge a
  second line (log injection, CWE-117).

Place it just inside the request-id layer and outside safe-errors, so it sees the final status
of every response (a 500 made from an exception included). When the logger is not enabled for
INFO the layer costs one level check.
"""

from __future__ import annotations

import logging
import re
import time
from json.encoder import encode_basestring_ascii as _json_string

from bastion.asgi import REQUEST_ID_KEY, ASGIApp, Message, Receive, Scope, Send
from bastion.caching import BoundedDict
from bastion.log import JSON_RECORD, timestamp
from bastion.redaction import REDACTED, log_line, redact

__all__ = ["ACCESS_LOGGER", "REDACTED", "AccessLogMiddleware", "log_line", "redact"]

ACCESS_LOGGER = "bastion.access"

_MAX_PATH = 2048  # a path longer than this is cut: a log line must not be a flooding tool
_MAX_QUERY_NAMES = 20
_MAX_NAME = 64

# --- the access log ------------------------------------------------------------------------
_NAME_OK = re.compile(r"[A-Za-z0-9._\[\]-]{1,64}").fullmatch


def _query_names(query: bytes) -> list[str]:
    """The distinct parameter names of a query string, never a value (e.g. ``?token=``)."""
    names: list[str] = []
    for part in query.split(b"&"):
        name = part.split(b"=", 1)[0].decode("latin-1")
        if not name:
            continue
        # A name may itself be a secret sent as ``?<token>``; a strange one shows as "?".
        name = redact(name[:_MAX_NAME])
        if name != REDACTED and not _NAME_OK(name):
            name = "?"
        if name not in names:
            names.append(name)
            if len(names) >= _MAX_QUERY_NAMES:
                break
    return names


_PATH_CACHE_SIZE = 4096
_path_cache: BoundedDict[str, str] = BoundedDict(_PATH_CACHE_SIZE)


def _redacted_path(path: str) -> str:
    """:func:`redact` for paths, memoised: the same few paths come back on every request."""
    cached = _path_cache.get(path)
    if cached is None:
        # bounded: unique paths (ids, attacks) must not grow memory
        cached = _path_cache.put(path, redact(path[:_MAX_PATH]))
    return cached


_LEVELS = {logging.INFO: "info", logging.WARNING: "warning"}


def _access_line(
    when: str,
    level: str,
    method: object,
    path: str,
    query: list[str] | None,
    status: int,
    duration_ms: float,
    client: object,
    rid: object,
) -> str:
    """The access line, exactly as :func:`log_line` would write its fields, built directly.

    The fields and their order are fixed, so the line is one f-string around json's own
    string escaper (the one ``JSONEncoder(ensure_ascii=True)`` uses: CR, LF, quotes and
    non-ASCII escaped), ``int``/``float`` written as json writes them (their ``repr``).
    Anything of an unexpected type goes through :func:`log_line`, whose ``default=str`` decides.
    ``when`` and ``level`` are made by this module (a timestamp and a level name): plain text
    needing no escape.
    """
    if (
        type(method) is not str
        or type(rid) is not str
        or (client is not None and type(client) is not str)
        or type(status) is not int
        or type(duration_ms) is not float
    ):
        fields: dict[str, object] = {
            "timestamp": when,
            "level": level,
            "event": "access",
            "method": method,
            "path": path,
        }
        if query is not None:
            fields["query"] = query
        fields.update(status=status, duration_ms=duration_ms, client=client, request_id=rid)
        return log_line(fields)
    names = "" if query is None else f'"query":[{",".join(map(_json_string, query))}],'
    where = "null" if client is None else _json_string(client)
    return (
        f'{{"timestamp":"{when}","level":"{level}","event":"access",'
        f'"method":{_json_string(method)},"path":{_json_string(path)},'
        f'{names}"status":{status},"duration_ms":{duration_ms!r},"client":{where},'
        f'"request_id":{_json_string(rid)}}}'
    )


class AccessLogMiddleware:
    """Write one redacted JSON line per HTTP request to the ``bastion.access`` logger."""

    def __init__(self, app: ASGIApp, *, logger: logging.Logger | str = ACCESS_LOGGER) -> None:
        self.app = app
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return

        start = time.perf_counter()
        # Captured before inner layers rewrite it: the path the client asked for.
        path = scope.get("path", "")
        query = scope.get("query_string", b"")
        status = 0

        async def send_logged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        except Exception:
            # Normally the safe-errors layer inside turns exceptions into responses.
            status = status or 500
            raise
        finally:
            self._write(scope, path, query, status, start)

    def _write(self, scope: Scope, path: str, query: bytes, status: int, start: float) -> None:
        duration_ms = round((time.perf_counter() - start) * 1000, 2)
        level = logging.WARNING if status >= 500 or status == 0 else logging.INFO
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        client = scope.get("client")
        line = _access_line(
            timestamp(),
            _LEVELS[level],
            scope.get("method", ""),
            _redacted_path(path),
            _query_names(bytes(query)) if query else None,
            status,
            duration_ms,
            client[0] if client else None,
            scope.get(REQUEST_ID_KEY, ""),
        )
        # makeRecord + handle, not logger.log: skips the stack walk that finds the caller's
        # file and line, which would be this line on every request anyway.
        record = logger.makeRecord(logger.name, level, __file__, 0, line, (), None)
        setattr(record, JSON_RECORD, True)  # JSONFormatter writes it as is
        logger.handle(record)
