"""Method policy: each path answers only the methods it implements; ``405`` lists them all.

Why not Starlette's own 405: its router answers with the ``Allow`` of the *first* route whose
path matches (Starlette 1.10 ``Route.handle``; https://github.com/fastapi/fastapi/issues/4478),
so with ``GET /orders/{id}`` and
``DELETE /orders/{id}`` declared as two routes, ``PUT`` gets ``Allow: GET, HEAD`` — DELETE is
missing, although RFC 9110 §10.2.1 and §15.5.6 want every supported method listed. It also
routes ``TRACE``/``TRACK`` like any other method. This layer, placed before the router,
computes for the (canonical) path the union of the methods of every route whose pattern
matches, the way Starlette's router would reach them, and:

* ``TRACE`` and ``TRACK`` (any case) → ``405`` everywhere, even on unknown paths (cross-site
  tracing, CVE-2004-2320/2005-3398 family; the contract says "everywhere");
* ``OPTIONS`` → ``405``: the contract answers it only as a CORS preflight, and the CORS layer,
  placed outside this one, answers preflights before they get here;
* a method the path does not serve → ``405`` + ``Allow: <sorted, comma-separated list>`` in the
  contract's error shape ``{"error":"Method not allowed","requestId":...}``;
* ``HEAD`` is allowed wherever ``GET`` is (RFC 9110 §9.3.2). Starlette's ``Route`` adds HEAD
  itself; FastAPI's ``APIRoute`` does not, so for such a path a ``HEAD`` is passed on as
  ``GET`` in a copy of the scope (the server still sees HEAD and drops the body, as
  uvicorn and every HTTP/1.1 server must);
* a path no route matches passes through untouched (the app answers ``404``).

Routes understood: ``Route``/``APIRoute`` (their compiled ``path_regex`` and ``methods``), a
``Route`` to an ``HTTPEndpoint`` class (its handler methods), ``Mount`` (recursing into the
mounted app's ``routes``; a mount of an app without routes — static files, another ASGI app —
is opaque) and ``WebSocketRoute`` (ignored: not HTTP). Any other route class (FastAPI 0.16x's
``include_router`` adds lazy ``_IncludedRouter`` routes) is asked through Starlette's public
``BaseRoute.matches`` with each method in turn: ``FULL`` means served. ``Host`` routes and
endpoints that are plain ASGI apps are opaque: from there on, the path is passed through
(only TRACE/TRACK are still refused). ``routes`` may instead be a callable
``path -> set of methods | None``.

Results are cached per route path (bounded; a flood of distinct paths only costs the regex
walk). A route list that grows after construction is noticed and the table rebuilt.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Sequence
from typing import Any

from starlette.endpoints import HTTPEndpoint
from starlette.routing import BaseRoute, Host, Match, Mount, Route, WebSocketRoute

from bastion.asgi import ASGIApp, Receive, Scope, Send, send_error
from bastion.caching import BoundedDict
from bastion.errors import ConfigError

__all__ = ["MethodPolicyMiddleware", "MethodsLookup", "methods_for_path"]

MethodsLookup = Callable[[str], Collection[str] | None]

_BANNED = frozenset({"TRACE", "TRACK"})
# Never listed in Allow, never served here (OPTIONS: preflights only, in the CORS layer).
_NOT_SERVED = frozenset({"TRACE", "TRACK", "OPTIONS"})
_ENDPOINT_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_CACHE_SIZE = 4096
_ALLOW = b"allow"


class _Opaque(Exception):
    """A route whose methods cannot be known statically; the path is passed through."""


# A table entry: ("route", regex, methods) | ("mount", regex, sub-table | None)
#                | ("probe", route) | ("opaque",)
_Entry = tuple[Any, ...]


def _endpoint_methods(endpoint: Any) -> frozenset[str] | None:
    if inspect.isclass(endpoint) and issubclass(endpoint, HTTPEndpoint):
        methods = {m for m in _ENDPOINT_METHODS if callable(getattr(endpoint, m.lower(), None))}
        if "GET" in methods:
            methods.add("HEAD")  # HTTPEndpoint serves HEAD with its get()
        return frozenset(methods)
    return None


def _compile(routes: Sequence[BaseRoute]) -> list[_Entry]:
    table: list[_Entry] = []
    for route in routes:
        if isinstance(route, WebSocketRoute):
            continue
        if isinstance(route, Route):
            methods = route.methods
            found = (
                frozenset(m.upper() for m in methods)
                if methods is not None
                else _endpoint_methods(route.endpoint)
            )
            table.append(("route", route.path_regex, found))
        elif isinstance(route, Mount):
            inner = getattr(route, "_base_app", None)
            sub = getattr(inner, "routes", None)
            table.append(("mount", route.path_regex, _compile(sub) if sub is not None else None))
        elif isinstance(route, Host):  # matches on the Host header: not a function of the path
            table.append(("opaque",))
        else:  # another BaseRoute: ask it, method by method
            table.append(("probe", route))
    return table


def _probe(route: BaseRoute, path: str) -> set[str] | None:
    """The methods *route* fully matches at *path*; None when it does not match the path."""
    served: set[str] = set()
    matched = False
    for method in _ENDPOINT_METHODS:
        scope = {"type": "http", "path": path, "root_path": "", "method": method, "headers": []}
        result = route.matches(scope)[0]
        if result is Match.FULL:
            served.add(method)
        matched = matched or result is not Match.NONE
    return served if matched else None


def _walk(table: list[_Entry], path: str) -> set[str] | None:
    """Methods of every route matching *path* (None: no route matched); raises _Opaque."""
    found: set[str] | None = None
    for entry in table:
        kind = entry[0]
        if kind == "opaque":
            raise _Opaque
        if kind == "probe":
            probed = _probe(entry[1], path)
            if probed is not None:
                found = (found or set()) | probed
            continue
        match = entry[1].match(path)
        if match is None:
            continue
        if kind == "route":
            if entry[2] is None:
                raise _Opaque
            found = (found or set()) | entry[2]
        else:  # a Mount matches fully: Starlette's router stops here and hands over
            if entry[2] is None:
                raise _Opaque
            sub = _walk(entry[2], "/" + match.group("path"))
            return found if sub is None else (found or set()) | sub
    return found


def methods_for_path(routes: Sequence[BaseRoute], path: str) -> set[str] | None:
    """Every method the routes serve at *path*; ``None`` when unknown or unmatched."""
    try:
        return _walk(_compile(routes), path)
    except _Opaque:
        return None


def _route_path(scope: Scope) -> str:
    """The path the router matches (Starlette's get_route_path: root_path removed)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        if path == root:
            return ""
        if path[len(root)] == "/":
            return path[len(root) :]
    return path


class MethodPolicyMiddleware:
    """405 with a complete ``Allow`` for unserved methods; TRACE/TRACK/OPTIONS refused."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute] | MethodsLookup) -> None:
        self.app = app
        self._lookup: MethodsLookup | None = None
        self._routes: Sequence[BaseRoute] = ()
        if isinstance(routes, Sequence) and not isinstance(routes, str | bytes):
            if not all(isinstance(r, BaseRoute) for r in routes):
                raise ConfigError("MethodPolicyMiddleware(routes=...)", "not Starlette routes")
            self._routes = routes
        elif callable(routes):
            self._lookup = routes
        else:
            raise ConfigError(
                "MethodPolicyMiddleware(routes=...)",
                "give a router's route list or a callable path -> methods",
            )
        self._count = -1
        self._table: list[_Entry] = []
        # bounded: distinct paths (ids, scans) must not grow memory
        self._cache: BoundedDict[str, tuple[frozenset[str], bytes, bool] | None] = BoundedDict(
            _CACHE_SIZE
        )
        self._refresh()

    def _refresh(self) -> None:
        if self._lookup is None and len(self._routes) != self._count:
            self._table = _compile(self._routes)
            self._count = len(self._routes)
            self._cache.clear()

    def _policy(self, path: str) -> tuple[frozenset[str], bytes, bool] | None:
        """(allowed methods, Allow value, whether HEAD is served natively) or None: pass."""
        if self._lookup is not None:
            found = self._lookup(path)
            served = {m.upper() for m in found} if found is not None else None
        else:
            try:
                served = _walk(self._table, path)
            except _Opaque:
                served = None
        if served is None:
            return None
        allowed = set(served) - _NOT_SERVED
        if "GET" in allowed:
            allowed.add("HEAD")
        allow = ", ".join(sorted(allowed)).encode("ascii")
        return frozenset(allowed), allow, "HEAD" in served

    def allow_header(self, path: str) -> bytes:
        """The ``Allow`` value for *path* (``b""`` when unknown), for refusals made before the
        app is reached (the HTTP parser's 405 for a method it does not know)."""
        self._refresh()
        policy = self._policy(path)
        return policy[1] if policy is not None else b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._lookup is None and len(self._routes) != self._count:
            self._refresh()  # the route list grew (routes added after construction)
        # _route_path without the call when there is no root_path (the usual mount-less app).
        path = _route_path(scope) if scope.get("root_path") else scope["path"]
        try:
            policy = self._cache[path]
        except KeyError:
            policy = self._cache.put(path, self._policy(path))
        method: str = scope["method"]
        if policy is not None and method in policy[0] and method != "HEAD":
            await self.app(scope, receive, send)  # the usual case; allowed never holds TRACE
            return
        if method in _BANNED or method.upper() in _BANNED:
            await self._refuse(scope, send, policy[1] if policy else b"")
            return
        if policy is None:
            await self.app(scope, receive, send)
            return
        allowed, allow, native_head = policy
        if method not in allowed:
            await self._refuse(scope, send, allow)
            return
        if method == "HEAD" and not native_head:
            scope = dict(scope)  # a copy: the server keeps seeing HEAD and drops the body
            scope["method"] = "GET"
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, allow: bytes) -> None:
        await send_error(scope, send, 405, "Method not allowed", headers=[(_ALLOW, allow)])
