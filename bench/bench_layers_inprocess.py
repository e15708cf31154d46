"""CPU time per request of bastion's protective layer, in process: bare vs wrapped, per layer.

The wrk benchmark (bench_layers.py) measures what a client sees, but on a shared machine its
requests/s move with everyone else's load. This one drives the ASGI apps of
bench/layers_apps.py directly — no server, no sockets — and counts process CPU time
(``time.process_time``), which other processes barely disturb. It is the measure to tune by.

Per-layer figures come from the real composition: the wrapped app is walked down its
``.app`` attributes (outermost first), each sub-stack is timed on its own, and a layer's
cost is its sub-stack minus the one inside it. Every variant is timed in many short rounds,
interleaved, and the fastest round is kept (noise only ever adds time). The total is steady
to about a microsecond on a shared machine; single layers move by one or two.

The request is the one wrk sends: ``GET /api/ping`` with ``Host`` and
``X-Forwarded-Proto: https`` from a trusted proxy (127.0.0.1), no ``Origin``.

    .venv/bin/python bench/bench_layers_inprocess.py [--requests 3000] [--repeats 20] [--info]

``--info`` adds a row for the whole stack with the access log at INFO, written through a
``%(message)s`` handler to /dev/null (what ``bastion serve`` does, minus the terminal).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.layers_apps import bare, wrapped

ACCESS_LOGGER = "bastion.access"

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/api/ping",
    "raw_path": b"/api/ping",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"127.0.0.1:8000"), (b"x-forwarded-proto", b"https")],
    "client": ("127.0.0.1", 55555),
    "server": ("127.0.0.1", 8000),
}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(_message: Any) -> None:
    return None


def _scope_for(app: Any) -> dict[str, Any]:
    """The request as *app* would receive it inside the full stack.

    A sub-stack without the trusted-proxy layer gets the scheme that layer would have
    resolved from ``X-Forwarded-Proto`` (else HTTPS enforcement would answer 301).
    """
    names = {type(layer).__name__ for layer in layers_of(app)}
    return SCOPE if "TrustedProxyMiddleware" in names else {**SCOPE, "scheme": "https"}


async def _check(app: Any) -> None:
    """The bench is only valid if every variant answers 200 (no 429, no redirect)."""
    statuses: list[int] = []

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app({**_scope_for(app), "state": {}}, _receive, send)
    if statuses != [200]:
        raise SystemExit(f"{type(app).__name__}: answered {statuses}, not [200]")


async def _time(app: Any, requests: int) -> float:
    """Microseconds of process CPU time per request."""
    scope = _scope_for(app)
    receive, send = _receive, _send
    start = time.process_time()
    for _ in range(requests):
        # A fresh scope per request, as a server makes one (layers rewrite it in place).
        await app({**scope, "state": {}}, receive, send)
    return (time.process_time() - start) / requests * 1e6


def layers_of(app: Any) -> list[Any]:
    """The chain of bastion layers, outermost first, down to (not including) the app."""
    chain = []
    while type(app).__module__.startswith("bastion."):
        chain.append(app)
        app = app.app
    return chain


async def measure(requests: int, repeats: int) -> tuple[dict[str, float], list[tuple[str, float]]]:
    chain = layers_of(wrapped)
    # Sub-stacks from the innermost outwards: chain[i] is layer i and everything inside it.
    variants: list[tuple[str, Any]] = [("bare", bare)]
    variants += [(type(layer).__name__, layer) for layer in reversed(chain)]
    for _name, app in variants:
        await _check(app)
        await _time(app, 500)  # warm caches (paths, methods, store key, ip keys)
    best = {name: float("inf") for name, _ in variants}
    for _ in range(repeats):
        for name, app in variants:
            best[name] = min(best[name], await _time(app, requests))
    per_layer: list[tuple[str, float]] = []
    inside = best["bare"]
    for name, _app in variants[1:]:
        per_layer.append((name, best[name] - inside))
        inside = best[name]
    return best, per_layer[::-1]


async def measure_info(requests: int, repeats: int) -> float:
    logger = logging.getLogger(ACCESS_LOGGER)
    level, propagate = logger.level, logger.propagate
    with open(os.devnull, "w") as devnull:
        handler = logging.StreamHandler(devnull)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        try:
            await _time(wrapped, 500)
            return min([await _time(wrapped, requests) for _ in range(repeats)])
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--info", action="store_true", help="also time the access log at INFO")
    args = parser.parse_args()
    # The same as bench_layers.py: the layers, not the disk.
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)
    best, per_layer = asyncio.run(measure(args.requests, args.repeats))
    bare_us = best["bare"]
    whole = best[per_layer[0][0]]
    print(f"{'layer (outermost first)':<34}{'µs/request':>11}")
    for name, cost in per_layer:
        print(f"  {name:<32}{cost:>11.1f}")
    print(f"{'bare Starlette':<34}{bare_us:>11.1f}")
    print(f"{'wrapped (all layers)':<34}{whole:>11.1f}")
    print(f"{'added by the layers':<34}{whole - bare_us:>11.1f}")
    if args.info:
        info = asyncio.run(measure_info(args.requests, args.repeats))
        print(f"{'wrapped, access log at INFO':<34}{info:>11.1f}  (+{info - whole:.1f})")
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"load average (1 min): {load:.2f}; CPU time, best of {args.repeats}")


if __name__ == "__main__":
    main()
