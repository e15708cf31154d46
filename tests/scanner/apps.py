"""Fixture APIs for the scanner tests: a deliberately insecure one and a secure one.

Both are raw ASGI apps (no framework, so every header is exactly what the test says) and act
as *both* listeners: a request with scheme ``http`` is the plain-HTTP port, ``https`` the TLS
port. Tests drive them in-process through ``httpx.ASGITransport`` (no socket), or with
uvicorn on a free loopback port where real sockets matter (CLI, TLS, raw request targets).
"""

from __future__ import annotations

import json
import re
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())
KID = "fixture-key-1"
ISSUER = "https://api.test"


def mint(claims: Mapping[str, Any] | None = None, *, lifetime: int = 900, **extra: Any) -> str:
    """An ES256 access token the secure app accepts (contract shape: sub, role, type, exp...)."""
    now = int(time.time())
    payload = {
        "sub": "user-1",
        "role": "user",
        "type": "access",
        "iss": ISSUER,
        "aud": "fixture",
        "iat": now,
        "exp": now + lifetime,
        "jti": "j1",
    }
    payload.update(claims or {})
    payload.update(extra)
    return jwt.encode(payload, SIGNING_KEY, algorithm="ES256", headers={"kid": KID})


def public_jwk() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(SIGNING_KEY.public_key()))
    data.update({"kid": KID, "alg": "ES256", "use": "sig"})
    return data


def private_jwk() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(SIGNING_KEY))
    data.update({"kid": KID, "alg": "ES256", "use": "sig"})
    return data


@dataclass
class Request:
    method: str
    scheme: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    client: str

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Response:
    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = None

    def encoded(self) -> tuple[bytes, str | None]:
        if isinstance(self.body, dict | list):
            return json.dumps(self.body).encode(), self.content_type or "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), self.content_type or "text/plain; charset=utf-8"
        return self.body, self.content_type


Handler = Callable[[Request], Response]


class App:
    """A raw ASGI app: ``handle(request) -> Response``; ``decorate`` adds per-response headers."""

    def __init__(self, handle: Handler, decorate: Callable[[Request, Response], None]) -> None:
        self.handle = handle
        self.decorate = decorate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
                await receive()
                await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request = Request(
            method=scope["method"],
            scheme=scope["scheme"],
            path=scope["path"],
            query=parse_qs(scope.get("query_string", b"").decode("latin-1")),
            headers=headers,
            body=body,
            client=(scope.get("client") or ("?", 0))[0],
        )
        try:
            response = self.handle(request)
        except Exception:
            response = Response(500, "Internal Server Error")
        self.decorate(request, response)
        payload, ctype = response.encoded()
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        if ctype and not any(k.lower() == "content-type" for k, _ in response.headers):
            raw.append((b"content-type", ctype.encode()))
        raw.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": raw})
        await send(
            {"type": "http.response.body", "body": payload if request.method != "HEAD" else b""}
        )


def bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


# =============================================================================================
# The secure API: what the contract asks for.
# =============================================================================================
SECURE_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
]
ALLOWED_ORIGIN = "https://app.example"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def secure_app(
    *,
    hsts: str | None = "max-age=31536000; includeSubDomains; preload",
    extra_headers: list[tuple[str, str]] | None = None,
    drop_headers: tuple[str, ...] = (),
    cookies: tuple[str, ...] = ("__Host-sid=abc123; Path=/; Secure; HttpOnly; SameSite=Strict",),
    auth_limit: int = 5,
    bare_errors: bool = False,
    allow_on_405: bool = True,
    redirect: tuple[int, str | None] = (301, None),
    retry_after: bool = True,
    key_on_forwarded_for: bool = False,
    leeway: int = 0,
) -> App:
    """The contract's API in miniature. Keyword options let a test change one thing."""
    counters: dict[str, int] = {}
    api_hits: dict[str, int] = {}
    failures: dict[str, int] = {}

    def error(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
        headers = [h for h in headers or [] if allow_on_405 or h[0] != "Allow"]
        return Response(status, {"error": message, "requestId": "r-1"}, headers)

    def verify(request: Request) -> dict[str, Any] | Response:
        token = bearer(request)
        if token is None:
            return error(401, "Authentication required", [("WWW-Authenticate", "Bearer")])
        try:
            return jwt.decode(
                token,
                SIGNING_KEY.public_key(),
                algorithms=["ES256"],
                audience="fixture",
                issuer=ISSUER,
                leeway=leeway,  # bastion serve allows 30 s of clock skew
            )
        except jwt.PyJWTError:
            return error(
                401, "Invalid token", [("WWW-Authenticate", 'Bearer error="invalid_token"')]
            )

    def handle(request: Request) -> Response:
        if request.scheme == "http":
            if request.method in {"GET", "HEAD"}:
                host = redirect[1] or request.headers.get("host", "api.test").split(":")[0]
                return Response(redirect[0], b"", [("Location", f"https://{host}{request.path}")])
            return error(403, "HTTPS required")
        origin = request.headers.get("origin")
        if request.method == "OPTIONS":
            if origin == ALLOWED_ORIGIN:
                return Response(
                    204,
                    b"",
                    [
                        ("Access-Control-Allow-Origin", origin),
                        ("Access-Control-Allow-Credentials", "true"),
                        ("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE"),
                        ("Access-Control-Allow-Headers", "Content-Type, Authorization"),
                        ("Access-Control-Max-Age", "86400"),
                        ("Vary", "Origin"),
                    ],
                )
            if origin:
                return error(403, "Origin not allowed")
            return error(405, "Method not allowed", [("Allow", "GET, HEAD")])
        if request.method in {"TRACE", "TRACK"}:
            return error(405, "Method not allowed", [("Allow", "GET, HEAD")])
        path = request.path
        if path.startswith("/api/"):
            api_hits["n"] = api_hits.get("n", 0) + 1
        if path == "/":
            if request.method not in {"GET", "HEAD"}:
                return error(405, "Method not allowed", [("Allow", "GET, HEAD")])
            response = Response(200, {"status": "ok"})
            response.headers += [("Set-Cookie", c) for c in cookies]
            return response
        if path == "/.well-known/jwks.json":
            return Response(200, {"keys": [public_jwk()]})
        if path == "/api/v1/me":
            if request.method != "GET":
                return error(405, "Method not allowed", [("Allow", "GET")])
            claims = verify(request)
            if isinstance(claims, Response):
                return claims
            return Response(200, {"id": claims["sub"], "email": "u@example.com", "role": "user"})
        if path == "/api/v1/auth/login":
            if request.method != "POST":
                return error(405, "Method not allowed", [("Allow", "POST")])
            client = request.client
            if key_on_forwarded_for:  # the mistake: believe any client's forwarding header
                client = request.headers.get("x-forwarded-for", client)
            if failures.get(client, 0) >= auth_limit:
                extra = [("Retry-After", "900")] if retry_after else []
                return error(429, "Too many authentication attempts", extra)
            failures[client] = failures.get(client, 0) + 1
            return error(401, "Invalid email or password")
        counters["404"] = counters.get("404", 0) + 1
        return error(404, "Not found")

    def decorate(request: Request, response: Response) -> None:
        if bare_errors and response.status >= 400:
            return  # the classic gap: headers added only on successful responses
        headers = [h for h in SECURE_HEADERS if h[0].lower() not in drop_headers]
        if request.scheme == "https" and hsts and "strict-transport-security" not in drop_headers:
            headers.append(("Strict-Transport-Security", hsts))
        rid = request.headers.get("x-request-id", "")
        headers.append(("X-Request-ID", rid if _REQUEST_ID.match(rid) else "generated-1"))
        if request.path.startswith("/api/"):
            used = api_hits.get("n", 0)
            headers += [
                ("RateLimit-Policy", '"api";q=100;w=900'),
                ("RateLimit", f'"api";r={max(0, 100 - used)};t=900'),
                ("X-RateLimit-Limit", "100"),
                ("X-RateLimit-Remaining", str(max(0, 100 - used))),
            ]
        origin = request.headers.get("origin")
        if origin == ALLOWED_ORIGIN and request.method != "OPTIONS":
            headers += [
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Allow-Credentials", "true"),
                ("Vary", "Origin"),
            ]
        response.headers = headers + (extra_headers or []) + response.headers

    return App(handle, decorate)


# =============================================================================================
# The insecure API: every mistake the controls look for.
# =============================================================================================
TRACEBACK_500 = (
    "Traceback (most recent call last):\n"
    '  File "/home/app/venv/lib/python3.11/site-packages/app/views.py", line 42, in login\n'
    "    user = db.execute(query)\n"
    'sqlite3.OperationalError: near "\'": syntax error\n'
)
DEBUG_404 = (
    "<!DOCTYPE html><html><head><title>Page not found at /</title></head><body>"
    "<p>You're seeing this error because you have <code>DEBUG = True</code> in your Django "
    "settings file.</p><center>nginx/1.22.1</center></body></html>"
)


def _unverified(token: str | None) -> dict[str, Any] | None:
    """The classic mistake: decode without verifying anything."""
    if not token:
        return None
    try:
        return jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
    except jwt.PyJWTError:
        raise ValueError(f"bad token {token!r}") from None


def insecure_app() -> App:
    def handle(request: Request) -> Response:
        path = request.path
        origin = request.headers.get("origin")
        if request.method in {"TRACE", "TRACK"}:
            echo = f"{request.method} {path} HTTP/1.1\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in request.headers.items()
            )
            return Response(200, echo, content_type="message/http")
        if request.method == "OPTIONS":
            asked_m = request.headers.get("access-control-request-method", "GET")
            asked_h = request.headers.get("access-control-request-headers", "")
            return Response(
                200,
                b"",
                [
                    ("Allow", "GET, HEAD, POST, PUT, DELETE, TRACE, OPTIONS"),
                    ("Access-Control-Allow-Origin", origin or "*"),
                    ("Access-Control-Allow-Credentials", "true"),
                    ("Access-Control-Allow-Methods", asked_m),
                    ("Access-Control-Allow-Headers", asked_h),
                ],
            )
        override = request.headers.get("x-http-method-override")
        method = override.upper() if override else request.method
        if path == "/":
            if method in {"PUT", "DELETE"}:
                return Response(204 if method == "DELETE" else 201, b"")
            if method == "POST":
                request.json()  # malformed JSON raises -> traceback below
                return Response(200, {"ok": True})
            return Response(
                200,
                {"service": "orders", "version": "1.0"},
                [
                    (
                        "Set-Cookie",
                        "sessionid=abc123; Path=/; Domain=api.test; SameSite=None; "
                        "Max-Age=31536000",
                    )
                ],
            )
        if path == "/.git/HEAD":
            return Response(200, "ref: refs/heads/main\n")
        if path == "/.git/config":
            return Response(200, "[core]\n\trepositoryformatversion = 0\n")
        if path == "/.env":
            return Response(200, "DATABASE_URL=postgres://app:hunter2@db/app\nSECRET_KEY=abc\n")
        if path == "/.DS_Store":
            return Response(
                200, b"\x00\x00\x00\x01Bud1\x00\x00", content_type="application/octet-stream"
            )
        if path == "/backup.zip":
            return Response(200, b"PK\x03\x04rest", content_type="application/zip")
        if path == "/config.json":
            return Response(200, {"database": {"password": "hunter2"}})
        if path == "/openapi.json":
            return Response(200, {"openapi": "3.1.0", "paths": {}})
        if path == "/docs":
            return Response(200, "<html><div id=swagger-ui></div></html>", content_type="text/html")
        if path == "/graphql" and request.method == "POST":
            return Response(200, {"data": {"__schema": {"queryType": {"name": "Query"}}}})
        if path == "/actuator":
            return Response(200, {"_links": {"self": {"href": "/actuator"}}})
        if path == "/server-status":
            return Response(
                200, "<h1>Apache Server Status for api.test</h1>", content_type="text/html"
            )
        if path == "/metrics":
            return Response(
                200, "# HELP http_requests_total Total\n# TYPE http_requests_total counter\n"
            )
        if path == "/debug/pprof/":
            return Response(
                200, "<html>Types of profiles available:</html>", content_type="text/html"
            )
        if path == "/phpinfo.php":
            return Response(
                200, "<title>phpinfo()</title>PHP Version 8.1", content_type="text/html"
            )
        if path == "/static/":
            return Response(
                200, "<html><title>Index of /static/</title></html>", content_type="text/html"
            )
        if path == "/crossdomain.xml":
            return Response(
                200,
                '<cross-domain-policy><allow-access-from domain="*"/></cross-domain-policy>',
                content_type="text/xml",
            )
        if path == "/.well-known/jwks.json":
            return Response(200, {"keys": [private_jwk()]})
        if path == "/api/v1/me":
            claims = _unverified(bearer(request))
            return Response(200, {"id": (claims or {}).get("sub", "anonymous")})
        if path == "/api/me":
            token = bearer(request) or next(iter(request.query.get("access_token", [])), None)
            claims = _unverified(token)
            if claims is None:
                return Response(401, {"error": "unauthorized"})
            return Response(200, {"id": claims.get("sub"), "role": claims.get("role")})
        if path == "/api/v1/auth/login" and request.method != "POST":
            return Response(405, {"error": "Method Not Allowed"})
        if path == "/api/v1/auth/login":
            email = request.json().get("email", "")
            if email.startswith("admin@"):
                return Response(401, {"error": "Wrong password"})
            return Response(404, {"error": "No such user"})
        if path in {"/api/v0/", "/v0/"}:
            return Response(200, {"version": 0})
        return Response(404, DEBUG_404, content_type="text/html")

    def decorate(request: Request, response: Response) -> None:
        headers = [
            ("Server", "nginx/1.22.1"),
            ("X-Powered-By", "Express 4.17.1"),
            ("X-Backend-Server", "app-01.internal"),
            ("X-Debug-Token-Link", "/_profiler/abc"),
            ("Strict-Transport-Security", "max-age=3600; max-age=3600"),
            ("Cache-Control", "public, max-age=3600"),
            ("X-XSS-Protection", "1; mode=block"),
            ("Referrer-Policy", "unsafe-url"),
            ("Cross-Origin-Resource-Policy", "everyone"),
            ("X-Frame-Options", "ALLOW-FROM https://x.example"),
            ("Content-Security-Policy-Report-Only", "default-src 'self'"),
        ]
        origin = request.headers.get("origin")
        if origin and request.method != "OPTIONS":
            headers += [
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Allow-Credentials", "true"),
            ]
        rid = request.headers.get("x-request-id")
        if rid:
            headers.append(("X-Request-ID", rid))
        if response.status == 500:
            response.body = TRACEBACK_500
        response.headers = headers + response.headers

    return App(_catching(handle), decorate)


def _catching(handle: Handler) -> Handler:
    """Turn exceptions into 500s whose body is the traceback (debug mode left on)."""

    def wrapped(request: Request) -> Response:
        try:
            return handle(request)
        except Exception:
            return Response(500, TRACEBACK_500 + traceback.format_exc(limit=1))

    return wrapped


async def run_checks(
    app: App,
    ids: list[str] | None = None,
    *,
    target: str = "https://api.test/",
    **options: Any,
) -> dict[str, Any]:
    """Scan ``app`` in-process (ASGI, no socket) with the given controls (default: every
    non-TLS control); returns findings by id. ``options`` are ScanOptions fields."""
    import httpx

    from bastion.scanner.context import ScanOptions
    from bastion.scanner.registry import load_default_checks
    from bastion.scanner.runner import scan

    registry = load_default_checks()
    checks = [registry.get(i) for i in ids] if ids else [c for c in registry if c.category != "tls"]
    report = await scan(
        target, ScanOptions(**options), checks=checks, transport=httpx.ASGITransport(app)
    )
    return {f.id: f for f in report.findings}


def custom_app(routes: Mapping[str, Response], default: Response | None = None) -> App:
    """A bare app: fixed responses by path (for a control that needs one odd behaviour)."""
    fallback = default or Response(404, {"error": "Not found"})

    def handle(request: Request) -> Response:
        found = routes.get(request.path, fallback)
        return Response(found.status, found.body, list(found.headers), found.content_type)

    return App(handle, lambda request, response: None)
