"""``GET /api/v1/me``: who the access token says the caller is.

The account is read on the database's direct path (one primary-key lookup, see
:mod:`bastion.service.db`) on every request. Not cached, although no endpoint changes an
email or a role: the lookup is what makes a deleted account's still-valid token stop
working at once, an operator's change in SQL shows at once, and a cache would pay off only
for a client calling ``/me`` several times a second (a benchmark, not a browser). On SQLite
the lookup costs 6 µs of a 120 µs request (in process, ``bench/bench_service_inprocess.py``);
on PostgreSQL the round trip makes it 170 µs, the price of a networked database. (The token's
signature, which cost more than either, is verified once per token: see
:mod:`bastion.auth.tokens`.)
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel
from sqlalchemy import bindparam, select

from bastion.auth.bearer import RefusedToken
from bastion.service.db import Database, Query
from bastion.service.deps import CurrentPrincipal
from bastion.service.errors import BEARER_SCHEME
from bastion.service.models import User
from bastion.service.responses import JSONBody
from bastion.service.schemas import ErrorBody

router = APIRouter(prefix="/api/v1", tags=["auth"])

_ACCOUNT = Query(select(User.email, User.role).where(User.id == bindparam("id")))


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
async def me(principal: CurrentPrincipal, request: Request) -> JSONBody:
    # The database from the request, not from a dependency: FastAPI solves each dependency
    # on every request, and this one cost 5% of the route (10 µs, in process).
    database: Database = request.app.state.database
    account = await database.direct.one(_ACCOUNT, id=principal.user_id)
    if account is None:  # a valid token for a deleted account is no longer valid
        raise RefusedToken("subject has no account")
    email, role = account
    # Written here, as the orders are (routes/orders.py): FastAPI would validate the dict
    # against ``Me`` and serialise it again, 12 µs of a 125 µs request; ``Me`` documents it.
    return JSONBody({"id": str(principal.user_id), "email": email, "role": role})


def install(app: FastAPI) -> None:
    """Add ``/me`` to *app* as a plain route, not an included router: the app's router tries
    its entries in order, and :func:`bastion.service.main.build` puts this one first."""
    app.router.routes.extend(router.routes)


__all__ = ["install", "router"]
