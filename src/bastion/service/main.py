"""The reference orders API: a FastAPI app assembled from routers, wrapped in the stack.

``create_app(settings)`` builds the bare FastAPI application (routes, exception handlers,
resources opened in its lifespan); ``build(settings)`` wraps it in every bastion layer through
the library's public call, ``bastion.secure(app, settings=...)``, and is what ``bastion serve``
runs; ``factory()`` does the same from the environment, for uvicorn worker processes.

With ``BASTION_EXPOSE_DOCS=true`` FastAPI serves ``/openapi.json`` and the stack serves the
Swagger UI page at ``/docs`` under its own nonce-based CSP (:mod:`bastion.docs`), never
FastAPI's CDN page.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from bastion.asgi import ASGIApp
from bastion.auth.passwords import PasswordHasher
from bastion.config import Settings, load_settings
from bastion.errors import HTTPError
from bastion.ratelimit.factory import store_from_settings
from bastion.ratelimit.store import Store
from bastion.service import errors, metrics
from bastion.service import migrate as migrations
from bastion.service.db import Database
from bastion.service.db_errors import connect_error
from bastion.service.health import HealthProbe
from bastion.service.routes import auth as auth_routes
from bastion.service.routes import oauth as oauth_routes
from bastion.service.routes import orders as orders_routes
from bastion.service.routes import reset_page
from bastion.stack import secure, secure_redirect

log = logging.getLogger("bastion.serve")

#: Seconds a load balancer is asked to wait before probing /readyz again after a 503.
READY_RETRY_AFTER = b"5"


def create_app(
    settings: Settings,
    *,
    ratelimit_store: Store | None = None,
    password_hasher: PasswordHasher | None = None,
) -> FastAPI:
    """The bare service. *ratelimit_store* (the stack's) is reported by /healthz and closed
    with the app.

    *password_hasher* defaults to the OWASP argon2id profile (tests may pass a cheaper one).
    """
    database = Database(settings.database)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await app.state.revocations.start()  # subscribed before the first request
        sampler = None
        if settings.metrics_port is not None and metrics.enabled():
            sampler = asyncio.create_task(metrics.sample_backends(health.body, database.pool_use))
        try:
            yield
        finally:
            if sampler is not None:
                sampler.cancel()
            await app.state.revocations.aclose()
            await _close_mailer(app)
            app.state.key_ring.close()  # a database ring's watcher thread and connections
            await database.close()
            if ratelimit_store is not None:
                await ratelimit_store.aclose()

    docs = settings.expose_docs
    app = FastAPI(
        title="bastion reference orders API",
        version="1",
        docs_url=None,  # the stack serves /docs (secure(docs=...)): strict CSP, local assets
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        swagger_ui_oauth2_redirect_url=None,
        redirect_slashes=False,  # a 307 to the slash variant would re-send credentials
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    errors.install(app)
    auth_routes.install(app, password_hasher=password_hasher)
    oauth_routes.install(app)  # after auth: it uses app.state.auth
    reset_page.install(app)  # after auth: it uses app.state.auth
    orders_routes.install(app)

    # /healthz: the backends' state, probed at most once a second (service/health.py).
    health = HealthProbe(database.ping, None if ratelimit_store is None else ratelimit_store.ping)

    @app.get("/healthz", tags=["health"], summary="Liveness, with the state of each backend")
    async def healthz() -> dict[str, Any]:
        return await health.body()

    # /readyz: may this process get traffic? Not when a request would fail for a backend.
    required = ["database"]
    if ratelimit_store is not None and settings.ratelimit_store_failure != "fail-open":
        required.append("ratelimit_store")  # fail-closed: auth answers 503 while it is down

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Readiness: 503 naming the failing dependency",
        responses={503: {"description": "A dependency requests need is down"}},
    )
    async def readyz() -> dict[str, Any]:
        body = await health.body()
        failing = [name for name in required if body[name] != "ok"]
        if failing:
            raise HTTPError(
                503,
                "Service unavailable",
                headers=[(b"retry-after", READY_RETRY_AFTER)],
                details={name: ["down"] for name in failing},
            )
        return {**body, "status": "ready"}

    _most_requested_first(app)
    return app


def _most_requested_first(app: FastAPI) -> None:
    """Order the app's routes by how often they are asked for: ``/me``, the orders, the
    probes, then the included routers (auth, OAuth, JWKS, the reset page).

    FastAPI tries its routes in order, and each one that does not match costs about 5 µs
    (FastAPI 0.165, measured in process): before this, a ``GET`` of one order went past 15
    entries first, a quarter of its CPU time. No two of the service's paths can match the
    same request (``tests/service/test_route_order.py`` checks it), so the order changes
    only the cost of finding a route, never which one is found.
    """

    def rank(route: object) -> int:
        path = getattr(route, "path", None)
        if path == "/api/v1/me":
            return 0
        if path is not None and path.startswith("/api/"):
            return 1
        return 2 if path is not None else 3

    app.router.routes.sort(key=rank)  # stable: each group keeps its order


async def _close_mailer(app: FastAPI) -> None:
    """Give mail still queued (SMTP) its few seconds to go out; a mailer may hold nothing."""
    close = getattr(app.state.auth.mailer, "aclose", None)
    if close is not None:
        await close()


def build(settings: Settings) -> ASGIApp:
    """The service wrapped in every protective layer, as `bastion serve` runs it; with the
    metrics on, counted and timed outside every layer (service/metrics.py)."""
    store = store_from_settings(settings)
    app = create_app(settings, ratelimit_store=store)
    if settings.metrics_port is None or not metrics.enabled():
        return secure(app, settings=settings, ratelimit_store=store)
    app.add_middleware(metrics.RouteTemplate)
    return metrics.RequestMetrics(secure(app, settings=settings, ratelimit_store=store))


async def prepare(settings: Settings, *, migrate: bool = False) -> None:
    """One-time work before workers start: Redis credentials, the signing keys, the schema.

    A database that cannot be reached or used stops the start with one line
    (:func:`bastion.service.db_errors.connect_error`), not a driver traceback. The schema is
    created in an empty database, and an outdated one stops the start naming
    ``bastion db upgrade`` unless *migrate* (``--migrate``) upgrades it
    (:mod:`bastion.service.migrate`).
    """
    if settings.redis_url:
        from bastion.service.redis_check import check_redis

        await check_redis(settings.redis_url)
    # The schema first: a database that cannot be reached is named with its fix here, before
    # the signing keys (kept in it with PostgreSQL) would report the same failure less clearly.
    database = Database(settings.database)
    try:
        before, after = await migrations.ensure(database, migrate=migrate)
    except (OSError, SQLAlchemyError) as exc:
        raise connect_error(exc, settings.database) from None
    finally:
        await database.close()
    if before.empty:
        log.info("database schema created at revision %s", after)
    elif before.current != after:
        log.info("database schema upgraded from revision %s to %s", before.current, after)
    elif before.legacy is not None:
        log.info("database schema made before migrations recorded as revision %s", after)
    auth_routes.prepare_keys(settings)


def redirect_factory() -> ASGIApp:
    """Uvicorn factory for the plain-HTTP listener: redirect GET/HEAD, refuse the rest."""
    return secure_redirect(load_settings())


def factory() -> ASGIApp:
    """Uvicorn factory for worker processes: settings come from the environment."""
    return build(load_settings())
