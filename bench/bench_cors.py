"""Per-request cost of the strict CORS layer, measured as raw ASGI calls (no server, no I/O).

Run: ``.venv/bin/python bench/bench_cors.py``. Prints microseconds per request for the bare
app and for the app behind ``CORSMiddleware`` in each decision path.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bastion.middleware.cors import CORSMiddleware

ORIGINS = (*(f"https://app{i}.example.com" for i in range(20)), "https://app.example.com")
BASE_HEADERS = [
    (b"host", b"api.example.com"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0"),
    (b"accept", b"application/json"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"authorization", b"Bearer " + b"x" * 300),
]


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"{}"})


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Any) -> None:
    return None


def scope(method: str, path: str, extra: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "headers": BASE_HEADERS + extra}


async def measure(target: Any, s: dict[str, Any], n: int, repeats: int = 7) -> float:
    """Best of *repeats* runs (the least disturbed by other processes), in microseconds."""
    for _ in range(1000):
        await target(s, receive, send)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            await target(s, receive, send)
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


async def main(n: int = 20_000) -> None:
    strict = CORSMiddleware(app, origins=ORIGINS)
    off = CORSMiddleware(app, origins=())
    origin = [(b"origin", b"https://app.example.com")]
    cases = [
        ("bare app (no layer)", app, scope("GET", "/api/v1/orders", origin)),
        ("no origins configured", off, scope("GET", "/api/v1/orders", origin)),
        ("no Origin header", strict, scope("GET", "/api/v1/orders", [])),
        ("allowed origin", strict, scope("GET", "/api/v1/orders", origin)),
        (
            "allowed origin, upper case",
            strict,
            scope("GET", "/api/v1/orders", [(b"origin", b"HTTPS://APP.EXAMPLE.COM")]),
        ),
        (
            "disallowed origin",
            strict,
            scope("GET", "/api/v1/orders", [(b"origin", b"https://evil.example")]),
        ),
        (
            "preflight, allowed",
            strict,
            scope(
                "OPTIONS",
                "/api/v1/orders",
                [
                    *origin,
                    (b"access-control-request-method", b"POST"),
                    (b"access-control-request-headers", b"authorization,content-type"),
                ],
            ),
        ),
        ("excluded path", strict, scope("GET", "/oauth/authorize", origin)),
    ]
    base = None
    print(f"{'case':32} {'us/request':>10} {'overhead us':>12}")
    for name, target, s in cases:
        us = await measure(target, s, n)
        base = us if base is None else base
        print(f"{name:32} {us:10.2f} {us - base:12.2f}")


if __name__ == "__main__":
    asyncio.run(main())
