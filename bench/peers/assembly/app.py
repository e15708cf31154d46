"""The Python assembly bench/run measures bastion against: what a FastAPI user would put
together from the ecosystem's usual parts, each as its documentation shows it.

    FastAPI + slowapi (``Limiter`` with default limits, its pure-ASGI middleware, the
    X-RateLimit headers on) + Starlette's ``CORSMiddleware`` (exact origin list,
    credentials) + the ``secure`` package's default headers (``SecureASGIMiddleware``)
    + PyJWT verifying ES256 access tokens (algorithms pinned, issuer and audience checked).

Two styles (``ASSEMBLY_STYLE``), both measured by bench/run:

* ``documented`` (the default): each library as its quick start shows it. PyJWT's examples
  pass the PEM to ``jwt.decode`` (parsed again on every call); slowapi's global
  ``default_limits`` go with its ``SlowAPIMiddleware`` (a ``BaseHTTPMiddleware``).
* ``tuned``: what a careful user would change: the key parsed once, and slowapi's pure-ASGI
  ``SlowAPIASGIMiddleware``.

Limits are set out of reach: the bench measures the decisions, never a 429. Not part of
bastion; it runs from its own virtualenv (``bench/requirements-peers.txt``), never imports
bastion. Settings come from the environment (bench/run sets them): ``PUBLIC_KEY_FILE`` (PEM
of the ES256 verification key), ``ISSUER``, ``AUDIENCE``, ``USER_ID``, ``USER_EMAIL`` (the
one account ``/api/v1/me`` knows: a dict stands in for the database, so this peer does no
I/O per request, like the Express peer).

    bench/peers/.venv/bin/uvicorn --app-dir bench/peers/assembly app:app --port 8000
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import jwt
from cryptography.hazmat.primitives import serialization
from fastapi import Depends, FastAPI, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from secure import Secure
from secure.middleware import SecureASGIMiddleware
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.middleware import SlowAPIASGIMiddleware, SlowAPIMiddleware
from slowapi.util import get_remote_address

TUNED = os.environ.get("ASSEMBLY_STYLE", "documented") == "tuned"
with open(os.environ["PUBLIC_KEY_FILE"], "rb") as pem:
    PEM = pem.read()
# Given PEM bytes, PyJWT parses the key on every decode; tuned, it is parsed once.
PUBLIC_KEY: Any = serialization.load_pem_public_key(PEM) if TUNED else PEM
ISSUER = os.environ["ISSUER"]
AUDIENCE = os.environ["AUDIENCE"]
USERS = {os.environ["USER_ID"]: {"email": os.environ["USER_EMAIL"], "role": "user"}}

limiter = Limiter(
    key_func=get_remote_address,
    default_limits=["1000000000/15minutes"],  # out of reach
    headers_enabled=True,
)
app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
app.state.limiter = limiter
app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
app.add_middleware(SlowAPIASGIMiddleware if TUNED else SlowAPIMiddleware)
app.add_middleware(
    CORSMiddleware,
    allow_origins=["https://app.example.com"],
    allow_credentials=True,
    allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    allow_headers=["Content-Type", "Authorization", "X-Request-ID"],
    expose_headers=["X-RateLimit-Limit", "X-RateLimit-Remaining", "Retry-After", "X-Request-ID"],
    max_age=86400,
)
app.add_middleware(SecureASGIMiddleware, secure=Secure.with_default_headers())

bearer = HTTPBearer()


# async, as FastAPI's security tutorial writes it (a plain def would run in a thread pool).
async def claims(
    credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)],
) -> dict[str, Any]:
    try:
        return jwt.decode(
            credentials.credentials,
            PUBLIC_KEY,
            algorithms=["ES256"],
            issuer=ISSUER,
            audience=AUDIENCE,
            options={"require": ["exp", "iat", "sub"]},
        )
    except jwt.InvalidTokenError:
        raise HTTPException(
            401, "Unauthorized", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None


@app.get("/api/v1/ping")
async def ping() -> dict[str, bool]:
    return {"pong": True}


@app.get("/api/v1/me")
async def me(token: Annotated[dict[str, Any], Depends(claims)]) -> dict[str, str]:
    user = USERS.get(token["sub"])
    if user is None:
        raise HTTPException(401, "Unauthorized", headers={"WWW-Authenticate": "Bearer"})
    return {"id": token["sub"], "email": user["email"], "role": user["role"]}
