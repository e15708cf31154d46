"""The apps bench_layers.py compares: a bare Starlette route, the same in the stack, and the
bare route answering with the stack's extra headers (the ceiling: what the headers alone cost)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion.config import load_settings
from bastion.stack import secure


async def ping(_request: Request) -> JSONResponse:
    return JSONResponse({"pong": True})


def _app() -> Starlette:
    return Starlette(routes=[Route("/api/ping", ping, methods=["GET"])])


# The 13 headers the stack adds to this response (values of the same length): the server
# validates and writes every header, so they cost it even when the layers cost nothing.
STACK_HEADERS: list[tuple[bytes, bytes]] = [
    (b"ratelimit-policy", b'"api";q=999999999;w=900'),
    (b"ratelimit", b'"api";r=999999998;t=900'),
    (b"x-ratelimit-limit", b"999999999"),
    (b"x-ratelimit-remaining", b"999999998"),
    (b"vary", b"Origin"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"x-request-id", b"0123456789abcdef0123456789abcdef"),
]


class _WithStackHeaders(JSONResponse):
    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        super().init_headers(headers)
        self.raw_headers.extend(STACK_HEADERS)  # precomputed: no per-request encoding


async def ping_with_headers(_request: Request) -> JSONResponse:
    return _WithStackHeaders({"pong": True})


headers_only = Starlette(routes=[Route("/api/ping", ping_with_headers, methods=["GET"])])


bare = _app()

# Every layer on: trusted proxy (so wrk's X-Forwarded-Proto: https passes HTTPS enforcement),
# CORS with one origin, the /api/ rate limit (never reached: the bench measures the decision,
# not 429s), security headers, request ids, access log (at WARNING: the bench measures the
# layers, not the disk).
# secure() makes bastion's lines visible where logging is not configured (INFO on "bastion");
# an explicit level on the access logger is kept, so the layer stays and only checks it.
logging.getLogger("bastion.access").setLevel(logging.WARNING)
wrapped = secure(
    _app(),
    settings=load_settings(
        insecure_http=True,
        trusted_proxies=["127.0.0.1"],
        cors_origins=["https://app.example.com"],
        api_limit="999999999/15m",
        api_slowdown_after=999_999_999,
        data_dir="/tmp/bastion-bench",
    ),
)
