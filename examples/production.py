"""Going to production behind a TLS-terminating proxy, with limits shared through Redis.

The app is configured from the environment (your deployment decides the values)::

    API_TRUSTED_PROXIES=10.0.0.5              # the proxy's address(es), comma-separated
    API_ALLOWED_HOSTS=api.example.com         # the names clients use
    API_CORS_ORIGINS=https://app.example.com  # the browser apps that call the API
    API_REDIS_URL=redis://10.0.0.7:6379/0     # one budget for every worker and host

    uvicorn --workers 4 --no-proxy-headers --no-server-header examples.production:app
    # or: gunicorn -k uvicorn_worker.UvicornWorker -w 4 examples.production:app

``--no-proxy-headers``: forwarding headers are the stack's job (right-to-left, from the
listed proxies only); uvicorn's own handling would believe any sent from 127.0.0.1 before
the stack sees the request. Under gunicorn, give ``--forwarded-allow-ips`` the proxy's
addresses only, for the same reason.

What each setting buys:

* ``trusted_proxies``: only the proxy's ``X-Forwarded-For``/``-Proto`` are believed, so the
  rate limits key on the real client and anyone else's forged headers change nothing.
* ``https="redirect"``: plain HTTP is never served — a ``GET`` is sent to ``https://`` (on
  port 443), anything else gets ``403 HTTPS required`` — decided on the scheme the proxy
  reports. No "local development" exception in production.
* ``allowed_hosts``: a redirect is built only for your host names (no Host-header poisoning).
* ``ratelimit_store``: a Redis URL, so 4 workers on 3 hosts share one budget per client.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion import api_rule, auth_rule, secure


def _list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def whoami(request: Request) -> Response:
    client = request.client.host if request.client else None
    return JSONResponse({"client": client, "scheme": request.url.scheme})


async def token(request: Request) -> Response:
    return JSONResponse({"error": "Invalid credentials"}, status_code=401)


api = Starlette(
    routes=[
        Route("/healthz", health),
        Route("/api/whoami", whoami),
        Route("/api/token", token, methods=["POST"]),
    ]
)

app = secure(
    api,
    https="redirect",
    trusted_proxies=_list("API_TRUSTED_PROXIES"),
    allowed_hosts=_list("API_ALLOWED_HOSTS") or None,
    cors_origins=_list("API_CORS_ORIGINS"),
    ratelimit_store=os.environ.get("API_REDIS_URL", "memory"),
    rate_limits=[api_rule("100/15m"), auth_rule("5/15m", paths=["/api/token"])],
)
