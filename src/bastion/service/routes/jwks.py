"""``GET /.well-known/jwks.json``: the public signing keys (RFC 7517 §5), for other verifiers.

Public members only (``kty``, ``crv``/``x``/``y`` or ``n``/``e``) plus ``kid``, ``alg`` and
``use: "sig"``. A retired key stays listed until every token it signed has expired.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from bastion.auth.keys import KeyRing

router = APIRouter(tags=["auth"])


@router.get("/.well-known/jwks.json", summary="The JSON Web Key Set of the token signer")
async def jwks(request: Request) -> dict[str, Any]:
    ring: KeyRing = request.app.state.key_ring
    ring.refresh()  # pick up a `bastion keys rotate` done by another process
    return ring.jwks()


__all__ = ["router"]
