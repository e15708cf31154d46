"""A plain Starlette app with rate limits on its own routes (no FastAPI needed).

Run it::

    uvicorn examples.starlette_ratelimits:app --port 8000

* ``POST /login``: 5 *failed* attempts per 15 minutes per client (a success gives its charge
  back), and once spent every attempt is ``429`` — a right password too, or 200-versus-429
  would tell a guesser when they are right.
* ``/search``: 30 requests a minute per client, with progressive slow-down after 20.
* ``POST /export``: a per-route :class:`bastion.RateLimit` awaited in the endpoint itself,
  3 per hour, sharing the stack's store and adding its policy to the same headers.

Everything else keeps the stack's defaults: local plain HTTP on loopback, HTTPS enforced for
anyone else, the contract's headers, request ids, JSON access lines on stderr.
"""

from __future__ import annotations

import hmac

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion import RateLimit, Rule, secure

USERS = {"ada@example.com": "correct horse battery staple"}  # a stand-in for your user store

export_limit = RateLimit("3/1h", name="export")


async def login(request: Request) -> Response:
    body = await request.json()
    expected = USERS.get(str(body.get("email")), "")
    if not hmac.compare_digest(expected.encode(), str(body.get("password", "")).encode()):
        return JSONResponse({"error": "Invalid email or password"}, status_code=401)
    return JSONResponse({"status": "signed in"})


async def search(request: Request) -> Response:
    return JSONResponse({"query": request.query_params.get("q", ""), "results": []})


async def export(request: Request) -> Response:
    await export_limit(request)  # raises HTTPError(429) when spent: the stack answers it
    return JSONResponse({"status": "export started"}, status_code=202)


api = Starlette(
    routes=[
        Route("/login", login, methods=["POST"]),
        Route("/search", search, methods=["GET"]),
        Route("/export", export, methods=["POST"]),
    ]
)

app = secure(
    api,
    rate_limits=[
        Rule(
            "login",
            "5/15m",
            paths=["/login"],
            methods={"POST"},
            count="failures",
            message="Too many authentication attempts",
            on_store_failure="fail-closed",
        ),
        Rule("search", "30/1m", paths=["/search"], slowdown_after=20, slowdown_delay_ms=100),
    ],
    body_paths=["/"],  # every POST body here is JSON: the body rules apply everywhere
)
