"""Fixture targets for the risk-tracking grades and the CI mode (issue 16, part B).

Each wraps the contract-shaped :func:`~tests.scanner.apps.secure_app` and changes one thing,
so a test can assert, control by control, that the one thing (and nothing else) is judged:

* :func:`plain_api`: the API answering over plain HTTP, no TLS anywhere (it believes a
  TLS-terminating proxy is in front, which there is not);
* :func:`reflecting_api`: copies any ``Origin`` into ``Access-Control-Allow-Origin`` with
  credentials (one root cause, six CORS symptoms);
* :func:`quota_api`: advertises a quota of 1e9 requests per 15 minutes;
* :func:`spa_login_api`: ``/api/v1/auth/login`` is not a login at all (a catch-all that
  answers 200 to everything), so a burst of "failed logins" there proves nothing;

and :func:`nginx_front` runs the real nginx in front of an upstream, with its own default
error pages for what it refuses itself (TRACE, a malformed request target).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.scanner.apps import Receive, Scope, Send, secure_app
from tests.scanner.servers import Certs
from tests.support import free_port, start_nginx

ASGI = Any


def _rewrite_headers(
    app: ASGI, edit: Any, *, scheme: str | None = None
) -> ASGI:  # edit(request_headers, response_headers) -> response_headers
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        if scheme is not None:
            scope = {**scope, "scheme": scheme}
        request = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in message["headers"]
                ]
                headers = edit(scope, request, headers)
                message = {
                    **message,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
                }
            await send(message)

        await app(scope, receive, sending)

    return wrapped


def plain_api() -> ASGI:
    """The secure API, served over plain HTTP with no redirect (TLS assumed, never there)."""
    return _rewrite_headers(secure_app(), lambda scope, request, headers: headers, scheme="https")


CORS = {"access-control-allow-origin", "access-control-allow-credentials", "vary"}


def reflecting_api() -> ASGI:
    """The secure API, except that any Origin is copied back with credentials allowed."""

    def reflect(scope: Scope, request: dict[str, str], headers: list[tuple[str, str]]) -> Any:
        origin = request.get("origin")
        if origin is None:
            return headers
        kept = [(k, v) for k, v in headers if k.lower() not in CORS]
        return [
            *kept,
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
        ]

    return _rewrite_headers(secure_app(), reflect)


ABSURD_QUOTA = 1_000_000_000


def quota_api(quota: int = ABSURD_QUOTA) -> ASGI:
    """The secure API advertising ``quota`` requests per 15 minutes (counting down)."""
    used = {"n": 0}

    def advertise(scope: Scope, request: dict[str, str], headers: list[tuple[str, str]]) -> Any:
        if not scope["path"].startswith("/api/"):
            return headers
        used["n"] += 1
        limits = {"ratelimit-policy", "ratelimit", "x-ratelimit-limit", "x-ratelimit-remaining"}
        kept = [(k, v) for k, v in headers if k.lower() not in limits]
        left = quota - used["n"]
        return [
            *kept,
            ("RateLimit-Policy", f'"api";q={quota};w=900'),
            ("RateLimit", f'"api";r={left};t=900'),
            ("X-RateLimit-Limit", str(quota)),
            ("X-RateLimit-Remaining", str(left)),
        ]

    return _rewrite_headers(secure_app(), advertise)


def spa_login_api() -> ASGI:
    """The secure API where the login path is a catch-all page: every method gets 200."""
    inner = secure_app()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/v1/auth/login":
            while (await receive()).get("more_body"):
                pass
            body = b"<!doctype html><html><body><div id=app></div></body></html>"
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/html"),
                        (b"content-length", str(len(body)).encode()),
                        (b"cache-control", b"no-store"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await inner(scope, receive, send)

    return app


# --- a real nginx in front ---------------------------------------------------------------------
NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {tmp}/temp;
    proxy_temp_path {tmp}/temp;
    fastcgi_temp_path {tmp}/temp;
    uwsgi_temp_path {tmp}/temp;
    scgi_temp_path {tmp}/temp;
    server {{
        listen 127.0.0.1:{port} ssl{http2};
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers "ECDHE+AESGCM:ECDHE+CHACHA20";
        ssl_ecdh_curve X25519:prime256v1:secp384r1;
        keepalive_requests {keepalive};
        # The security headers come from the API behind: nginx's own pages (TRACE, a bad
        # request target) cannot carry them. That is the deployment the issue saw.
        location / {{
            proxy_pass {upstream};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
}}
"""


@contextmanager
def nginx_front(
    upstream: str, tmp: Path, certs: Certs, *, http2: bool = False, keepalive: int = 1000
) -> Iterator[str]:
    """Real nginx on a free loopback port terminating TLS with ``certs`` and proxying to
    ``upstream``; yields its https:// URL. Over HTTP/2 nginx ends a connection after
    ``keepalive`` requests with a GOAWAY: streams already sent above its last id fail."""
    (tmp / "temp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            tmp=tmp,
            port=port,
            upstream=upstream.rstrip("/"),
            cert=certs.cert,
            key=certs.key,
            http2=" http2" if http2 else "",
            keepalive=keepalive,
        )
    )
    process = start_nginx(tmp, port, conf, "the proxy fixture needs a real nginx")
    try:
        yield f"https://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(10)
