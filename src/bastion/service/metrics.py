"""Prometheus metrics of ``bastion serve``, on a listener of their own (``BASTION_METRICS_PORT``).

Off unless the port is set; bound to loopback unless ``BASTION_METRICS_HOST`` says otherwise;
never on the public port (the contract answers ``/metrics`` there with 404): route names,
counts and failure rates help an attacker time a guessing run.

Every worker process counts into prometheus_client's multiprocess files (one directory,
``<data dir>/metrics``, emptied at start), and one exposition server, run by the process that
binds the sockets, adds the workers up. So a scrape sees the whole service, however many
workers, and a restarted worker's counts are not lost.

What is measured, and where:

* ``bastion_http_requests_total`` / ``bastion_http_request_duration_seconds`` per method,
  route *template* (``/api/v1/orders/{order_id}``, never the raw path: an attacker must not
  be able to create series) and status, by :class:`RequestMetrics`, the outermost layer, so
  requests the stack refuses (429, 401, 413) are counted and timed too. A request that
  matched no route is ``route="unmatched"``.
* Security events, from what the responses already say: failed logins (``401`` from the
  login endpoints), rate-limit refusals (``429``), refused tokens (``401`` carrying
  ``WWW-Authenticate: ... error="invalid_token"``); refresh-token reuse is counted where it is
  detected (:func:`refresh_token_reused`, routes/auth.py), since its 401 looks like any other.
* Backends, sampled every :data:`SAMPLE_INTERVAL` seconds by each worker: database and
  rate-limit store up (``/healthz``'s cached probe), and the database pools' connections in
  use and idle.

Cost: ``bench/bench_metrics.py`` (the README "Metrics" section has the figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bastion.asgi import ASGIApp, Message, Receive, Scope, Send
from bastion.config import Settings

__all__ = [
    "MULTIPROC_ENV",
    "RequestMetrics",
    "RouteTemplate",
    "enabled",
    "prepare_directory",
    "refresh_token_reused",
    "sample_backends",
    "start_exposition",
]

log = logging.getLogger("bastion.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SAMPLE_INTERVAL = 2.0
#: Scope key of the one-item list the inner layer writes the matched route template into
#: (a list, so that layers that copy the scope still share it).
ROUTE_KEY = "bastion.route"
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Endpoints where a 401 is a failed password.
LOGIN_PATHS = frozenset({"/api/v1/auth/login"})
#: Latency buckets (seconds): a cached lookup near 1 ms, an argon2 login near 50-500 ms.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def enabled() -> bool:
    """True in a process whose metrics are collected (``bastion serve`` set the directory)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def prepare_directory(settings: Settings) -> Path:
    """Empty ``<data dir>/metrics`` and point prometheus_client at it, before any worker
    exists or prometheus_client is imported (it reads the variable once, at import)."""
    directory = (settings.data_dir / "metrics").resolve()
    if directory.exists():
        shutil.rmtree(directory)  # counts of an earlier run would be added to this one's
    directory.mkdir(mode=0o700, parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


class _Metrics:
    """The metric objects (made once per process, after the directory is set)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter(
            "bastion_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
        )
        self.duration = Histogram(
            "bastion_http_request_duration_seconds",
            "Time from the request's arrival at the stack to the end of its response",
            ["method", "route"],
            buckets=BUCKETS,
        )
        self.failed_logins = Counter(
            "bastion_failed_logins", "Logins refused for a wrong email or password"
        )
        self.ratelimit_refusals = Counter(
            "bastion_ratelimit_refusals", "Requests refused with 429 by a rate limit"
        )
        self.refresh_reuse = Counter(
            "bastion_refresh_token_reuse",
            "Revoked refresh tokens presented again (each revoked the user's tokens)",
        )
        self.refused_tokens = Counter(
            "bastion_refused_access_tokens",
            "Bearer tokens refused (expired, forged, revoked, malformed)",
        )
        self.backend_up = Gauge(
            "bastion_backend_up",
            "1 when the backend answered this worker's last probe, 0 when it did not",
            ["backend"],
            multiprocess_mode="livemin",
        )
        self.pool = Gauge(
            "bastion_db_pool_connections",
            "Database connections of the workers' pools, by pool and state",
            ["pool", "state"],
            multiprocess_mode="livesum",
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.duration.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)


_metrics: _Metrics | None = None


def _get() -> _Metrics:
    global _metrics
    if _metrics is None:
        _metrics = _Metrics()
    return _metrics


def refresh_token_reused() -> None:
    """Count a revoked refresh token presented again (no-op when metrics are off)."""
    if enabled():
        _get().refresh_reuse.inc()


class RouteTemplate:
    """Innermost layer (inside FastAPI's own middleware): once the router has matched, hand
    the route's template to :class:`RequestMetrics` through the scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        slot = scope.get(ROUTE_KEY)
        if slot is None:
            await self.app(scope, receive, send)
            return

        async def send_with_route(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = scope.get("route")
                path = getattr(route, "path", None)
                if path is not None:
                    slot[0] = path
            await send(message)

        await self.app(scope, receive, send_with_route)


class RequestMetrics:
    """Outermost layer: count and time every HTTP request, and the security events its
    response shows (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.metrics = _get()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        slot: list[str] = [UNMATCHED]
        scope[ROUTE_KEY] = slot
        status = 500  # what the server answers when the app fails before responding
        refused_token = False

        async def counting_send(message: Message) -> None:
            nonlocal status, refused_token
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 401:
                    refused_token = _invalid_token(message.get("headers", ()))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            metrics = self.metrics
            method = scope["method"]
            if method not in _METHODS:
                method = "other"
            route = slot[0]
            metrics.observe(method, route, status, time.perf_counter() - start)
            if status == 429:
                metrics.ratelimit_refusals.inc()
            elif status == 401:
                if refused_token:
                    metrics.refused_tokens.inc()
                elif route in LOGIN_PATHS:
                    metrics.failed_logins.inc()


def _invalid_token(headers: Any) -> bool:
    return any(
        name.lower() == b"www-authenticate" and b"invalid_token" in value for name, value in headers
    )


Pool = Callable[[], dict[str, int]]


async def sample_backends(
    probe: Callable[[], Awaitable[dict[str, Any]]], pools: Pool, interval: float = SAMPLE_INTERVAL
) -> None:
    """Until cancelled: every *interval* seconds, the backends' state and the pools' use."""
    metrics = _get()
    while True:
        try:
            body = await probe()
            for backend in ("database", "ratelimit_store"):
                metrics.backend_up.labels(backend).set(1 if body.get(backend) == "ok" else 0)
            for name, value in pools().items():
                pool, _, state = name.partition(".")
                metrics.pool.labels(pool, state).set(value)
        except Exception:  # a sampler must never die: the next round tries again
            log.exception("metrics sampling failed")
        await asyncio.sleep(interval)


def mark_process_dead(pid: int) -> None:
    """Forget the live gauges of a worker that exited (its counters stay counted)."""
    if enabled():
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid)


def start_exposition(settings: Settings) -> Any:
    """Serve ``/metrics`` (the workers' counts added up) on the metrics listener, in a
    daemon thread of this process. A busy port is one ConfigError line."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    from bastion.errors import ConfigError

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    port = settings.metrics_port
    if port is None:  # pragma: no cover - callers check
        raise ValueError("metrics_port is not set")
    try:
        server, _thread = start_http_server(port, addr=settings.metrics_host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            "BASTION_METRICS_PORT (or metrics_port in bastion.toml)",
            f"cannot listen on {settings.metrics_host}:{port}: {exc.strerror}",
        ) from None
    return server
