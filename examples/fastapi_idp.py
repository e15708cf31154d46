"""A FastAPI app whose callers bring access tokens from your identity provider.

Run it::

    pip install 'bastion[fastapi]' uvicorn
    export OIDC_ISSUER=https://your-tenant.eu.auth0.com/   # exactly the tokens' "iss"
    export OIDC_AUDIENCE=https://orders.example.com          # this API's identifier ("aud")
    uvicorn examples.fastapi_idp:app --port 8000

* ``GET /api/me`` — ``Depends(auth)``: any valid token of the issuer; answers with its subject
  and scopes. No token: ``401`` with ``WWW-Authenticate: Bearer``; a refused one: ``401`` with
  ``WWW-Authenticate: Bearer error="invalid_token"``.
* ``DELETE /api/orders/{order_id}`` — ``auth.require(scopes=["orders:write"])``: a valid token
  without that scope gets ``403`` with ``error="insufficient_scope"`` (RFC 6750 §3.1).

The issuer's keys are found through OpenID Connect discovery on the first request, cached
(5 min to 24 h, as its ``Cache-Control`` says) and refetched when a token names a new key,
at most once per 30 s. Every answer, errors included, carries the stack's headers.
"""

from __future__ import annotations

import os

from fastapi import Depends, FastAPI

from bastion import BearerAuth, Principal, secure

try:
    auth = BearerAuth(issuer=os.environ["OIDC_ISSUER"], audience=os.environ["OIDC_AUDIENCE"])
except KeyError as missing:
    raise SystemExit(f"set {missing.args[0]} (see the docstring of {__name__})") from None

api = FastAPI(title="Orders API", docs_url=None, redoc_url=None, redirect_slashes=False)


@api.get("/api/me")
async def me(user: Principal = Depends(auth)) -> dict[str, object]:  # noqa: B008
    return {"subject": user.subject, "scopes": sorted(user.scopes)}


@api.delete(
    "/api/orders/{order_id}",
    status_code=204,
    dependencies=[Depends(auth.require(scopes=["orders:write"]))],
)
async def delete_order(order_id: str) -> None:
    return None


app = secure(api)
