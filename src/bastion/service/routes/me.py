"""``GET /api/v1/me``: who the access token says the caller is."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from bastion.auth.bearer import RefusedToken
from bastion.service.deps import Auth, CurrentPrincipal
from bastion.service.errors import BEARER_SCHEME
from bastion.service.schemas import ErrorBody

router = APIRouter(prefix="/api/v1", tags=["auth"])


class Me(BaseModel):
    id: str
    email: str
    role: str


@router.get(
    "/me",
    summary="The account of the access token's subject",
    response_model=Me,
    responses={
        401: {
            "model": ErrorBody,
            "description": "Missing, malformed or refused access token",
            "headers": {
                "WWW-Authenticate": {
                    "description": 'Bearer (with error="invalid_token" when a token was refused)',
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
        },
        429: {"model": ErrorBody, "description": "Rate limit exceeded; see Retry-After"},
        500: {"model": ErrorBody, "description": "An internal error occurred"},
    },
    openapi_extra={"security": [{BEARER_SCHEME: []}]},
)
async def me(principal: CurrentPrincipal, auth: Auth) -> dict[str, str]:
    account = await auth.account(principal.user_id)
    if account is None:  # a valid token for a deleted account is no longer valid
        raise RefusedToken("subject has no account")
    return {"id": str(account.id), "email": account.email, "role": account.role}


__all__ = ["router"]
