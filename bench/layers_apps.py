"""The two apps bench_layers.py compares: a bare Starlette route, and the same in the stack."""

from __future__ import annotations

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


bare = _app()

# Every layer on: trusted proxy (so wrk's X-Forwarded-Proto: https passes HTTPS enforcement),
# CORS with one origin, the /api/ rate limit (never reached: the bench measures the decision,
# not 429s), security headers, request ids, access log (at WARNING: the bench measures the
# layers, not the disk).
wrapped = secure(
    _app(),
    load_settings(
        insecure_http=True,
        trusted_proxies=["127.0.0.1"],
        cors_origins=["https://app.example.com"],
        api_limit="999999999/15m",
        api_slowdown_after=999_999_999,
        data_dir="/tmp/bastion-bench",
    ),
)
