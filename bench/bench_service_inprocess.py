"""CPU time per request of the reference service, in process: ``bastion serve``'s ASGI app
(every protective layer, the real routes, a real database) driven without a server.

The wrk figures of ``bench/run`` move with everyone else's load on a shared machine; this
drives the app that ``bastion serve`` builds (``bastion.service.main.build``) directly with
ASGI messages and counts process CPU time (user + system time of the process: the database driver's
work in this process included, the PostgreSQL server's excluded). Requests run 32 at a time
on one uvloop loop, as 32 wrk connections drive a worker; each case is timed in several
interleaved rounds and the fastest round is kept (noise only ever adds time). The HTTP
server's own cost (parsing, writing) is not in these figures: ``bench/run`` has it.

    .venv/bin/python bench/bench_service_inprocess.py [--database sqlite|postgres]
        [--requests 2000] [--repeats 5] [--only TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bastion.auth.key_encryption import generate
from bastion.config import Settings, load_settings
from bastion.log import configure
from bastion.service.main import build, prepare
from bench.compare import ORDER, OUT_OF_REACH, PASSWORD, postgres_database

CONCURRENCY = 32


def _scope(method: str, target: str, headers: dict[str, str]) -> dict[str, Any]:
    path, _, query = target.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8443")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 55555),
        "server": ("127.0.0.1", 8443),
    }


async def call(
    app: Any, method: str, target: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, bytes]:
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)  # a client that is still there
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(_scope(method, target, headers), receive, send)
    return status, b"".join(chunks)


@contextlib.contextmanager
def bench_database(kind: str, tmp: Path) -> Iterator[str | None]:
    if kind == "postgres":
        with postgres_database() as url:
            yield url
    else:
        yield None


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, bench_database(args.database, Path(tmp)) as url:
        uvloop.run(measure(args, Path(tmp), url))


def service_settings(tmp: Path, url: str | None = None, **overrides: Any) -> Settings:
    """The service's settings for an in-process bench: limits out of reach, access log off
    (``warning``), and on PostgreSQL a key-encryption key (the signing keys live there)."""
    return load_settings(
        data_dir=tmp,
        database_url=url,
        insecure_http=True,
        api_limit=f"{OUT_OF_REACH}/15m",
        api_slowdown_after=OUT_OF_REACH,
        auth_limit=f"{OUT_OF_REACH}/15m",
        log_level="warning",
        key_encryption_key=None if url is None else generate(),
        **overrides,
    )


async def cpu_per_request(
    app: Any, case: tuple[str, str, dict[str, str], bytes], expected: int, requests: int
) -> tuple[float, float]:
    """User and system CPU µs per request for *requests* calls of *case*, CONCURRENCY in
    flight on this loop; any answer but *expected* stops the bench."""
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status, _ = await call(app, *case)
            if status != expected:
                raise SystemExit(f"{case[0]} {case[1]}: {status}")

    before = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    after = resource.getrusage(resource.RUSAGE_SELF)
    user = (after.ru_utime - before.ru_utime) / requests * 1e6
    return user, (after.ru_stime - before.ru_stime) / requests * 1e6


async def measure(args: argparse.Namespace, tmp: Path, url: str | None) -> None:
    settings = service_settings(tmp, url)
    configure(settings.log_level)  # as bastion serve does: the access log off at "warning"
    await prepare(settings)
    app = build(settings)
    json_type = {"Content-Type": "application/json"}
    login = json.dumps({"email": "inprocess@bench.invalid", "password": PASSWORD}).encode()
    status, answer = await call(app, "POST", "/api/v1/auth/register", json_type, login)
    assert status == 202, answer
    status, answer = await call(app, "POST", "/api/v1/auth/login", json_type, login)
    assert status == 200, answer
    auth = {"Authorization": f"Bearer {json.loads(answer)['access_token']}"}
    post = {**auth, **json_type}
    order = b""
    for _ in range(25):
        status, order = await call(app, "POST", "/api/v1/orders", post, json.dumps(ORDER).encode())
        assert status == 201
    order_id = json.loads(order)["id"]
    order_body = json.dumps(ORDER).encode()
    cases = {
        "GET /healthz": ("GET", "/healthz", {}, b"", 200),
        "GET /api/v1/me": ("GET", "/api/v1/me", auth, b"", 200),
        "GET /api/v1/orders/{id}": ("GET", f"/api/v1/orders/{order_id}", auth, b"", 200),
        "GET /api/v1/orders?limit=20": ("GET", "/api/v1/orders?limit=20", auth, b"", 200),
        "POST /api/v1/orders": ("POST", "/api/v1/orders", post, order_body, 201),
    }  # fmt: skip
    if args.only:
        cases = {name: case for name, case in cases.items() if args.only in name}
    best = {name: (float("inf"), 0.0) for name in cases}
    for _ in range(args.repeats):
        for name, (method, target, headers, body, expected) in cases.items():
            case = (method, target, headers, body)
            user, system = await cpu_per_request(app, case, expected, args.requests)
            if user + system < sum(best[name]):
                best[name] = (user, system)
    print(f"{args.database}: CPU µs per request (best of {args.repeats} rounds)")
    print(f"  {'':<30}{'total':>8}{'user':>8}{'system':>8}")
    for name, (user, system) in best.items():
        print(f"  {name:<30}{user + system:>8.1f}{user:>8.1f}{system:>8.1f}")
    inner: Any = app  # an ASGI callable whose layers each hold the next in .app
    while not hasattr(inner, "state"):  # down the layers to the FastAPI app
        inner = inner.app
    await inner.state.database.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", help="only the cases whose name contains this text")
    main(parser.parse_args())
