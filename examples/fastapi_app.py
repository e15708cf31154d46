"""A FastAPI app: per-route limits as dependencies, contract-shaped errors, docs under a
strict CSP.

Run it::

    pip install 'bastion[fastapi,docs]' uvicorn
    uvicorn examples.fastapi_app:app --port 8000     # then open http://127.0.0.1:8000/docs

* ``POST /api/reports`` — ``Depends(RateLimit("5/15m"))``: five reports per client per
  15 minutes, on top of the stack's ``/api/`` rule; both policies are in ``RateLimit-Policy``.
* validation errors are ``400 {"error":"Invalid request body","details":{...}}`` instead of
  FastAPI's ``422`` (:func:`bastion.fastapi.install_error_handlers`).
* ``/docs`` is Swagger UI served by the stack with a nonce-based CSP and its files from the
  ``swagger-ui-bundle-v2`` package (``docs=True``); every other path keeps
  ``default-src 'none'``. FastAPI's own ``/docs`` (scripts from a CDN) is turned off.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from pydantic import BaseModel, ConfigDict, Field

from bastion import RateLimit, secure
from bastion.fastapi import install_error_handlers


class ReportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=100)
    months: int = Field(ge=1, le=24)


api = FastAPI(title="Reports API", docs_url=None, redoc_url=None, redirect_slashes=False)
install_error_handlers(api)


@api.get("/api/reports/{report_id}")
async def get_report(report_id: int) -> dict[str, object]:
    return {"id": report_id, "status": "ready"}


@api.post("/api/reports", status_code=202, dependencies=[Depends(RateLimit("5/15m"))])
async def create_report(report: ReportRequest) -> dict[str, object]:
    return {"title": report.title, "months": report.months, "status": "queued"}


app = secure(api, docs=True)
