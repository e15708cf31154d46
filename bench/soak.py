"""Soak: `bastion serve` at saturation on loopback, creating and reading orders with real tokens.

A real server (one worker, TLS, SQLite in a temporary data directory, rate limits raised so
that the run measures the server and not the limiter) is loaded for ``--seconds`` by
``--concurrency`` keep-alive clients, each looping: create an order (``POST
/api/v1/orders``), read it back (``GET /api/v1/orders/{id}``), and every tenth time list the
caller's orders. Tokens are real: each client logs in as one of ``--users`` registered users.

Printed: requests, throughput, p50/p99 latency, errors by kind (anything but the expected
status; a ``429`` is counted apart and is expected only if the limits were not raised), and
the server's resident memory (from /proc) after a warm-up and at the end, with the growth.
The goal: 0 errors, growth under 10%.

    .venv/bin/python bench/soak.py [--seconds 60] [--concurrency 32] [--users 4]

``soak()`` is also what the suite's short soak (tests/integration/test_soak.py) runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PASSWORD = "soak test password, long enough %d"
ORDER = {"quantity": 2, "address": {"street": "1 Rue de la Paix", "city": "Paris", "country": "fr"}}
# Rate limits raised for the soak (the limiter is measured by bench_ratelimit.py).
RAISED_LIMITS = {
    "BASTION_API_LIMIT": "999999999/15m",
    "BASTION_API_SLOWDOWN_AFTER": "999999999",
    "BASTION_AUTH_LIMIT": "1000000/15m",
}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class SoakResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    throttled: int = 0
    rss_start_kib: int = 0
    rss_end_kib: int = 0

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def growth(self) -> float:
        return (self.rss_end_kib - self.rss_start_kib) / self.rss_start_kib

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000 if ordered else 0.0

    def report(self) -> str:
        rate = self.requests / self.seconds if self.seconds else 0
        errors = ", ".join(f"{k}: {v}" for k, v in self.errors.most_common()) or "0"
        return (
            f"requests {self.requests:,} in {self.seconds:.1f} s = {rate:,.0f} req/s\n"
            f"latency p50 {self.percentile(0.50):.1f} ms, p99 {self.percentile(0.99):.1f} ms\n"
            f"errors {errors}; 429s {self.throttled}\n"
            f"server RSS {self.rss_start_kib / 1024:.1f} MiB after warm-up, "
            f"{self.rss_end_kib / 1024:.1f} MiB at the end ({self.growth:+.1%}; goal < 10%)"
        )


async def _token(client: httpx.AsyncClient, user: int) -> str:
    email = f"soak-{user}@example.com"
    body = {"email": email, "password": PASSWORD % user}
    await client.post("/api/v1/auth/register", json=body)
    response = await client.post("/api/v1/auth/login", json=body)
    response.raise_for_status()
    return str(response.json()["access_token"])


async def _client_loop(
    base_url: str,
    verify: ssl.SSLContext,
    token: str,
    stop_at: float,
    warm_until: float,
    result: SoakResult,
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(
        base_url=base_url, verify=verify, headers=headers, timeout=30, limits=limits
    ) as client:
        turn = 0
        while time.monotonic() < stop_at:
            turn += 1
            steps: list[tuple[str, str, int]] = [("POST", "/api/v1/orders", 201)]
            for method, path, expected in steps:
                started = time.monotonic()
                try:
                    if method == "POST":
                        response = await client.post(
                            path, json={"productId": str(uuid.uuid4()), **ORDER}
                        )
                    else:
                        response = await client.get(path)
                except httpx.HTTPError as exc:
                    result.errors[type(exc).__name__] += 1
                    continue
                elapsed = time.monotonic() - started
                if started >= warm_until:
                    result.latencies.append(elapsed)
                if response.status_code == 429:
                    result.throttled += 1
                elif response.status_code != expected:
                    result.errors[f"{method} {response.status_code}"] += 1
                elif method == "POST":
                    steps.append(("GET", f"/api/v1/orders/{response.json()['id']}", 200))
                    if turn % 10 == 0:
                        steps.append(("GET", "/api/v1/orders?limit=20", 200))


async def soak(
    base_url: str,
    verify: ssl.SSLContext,
    pid: int,
    *,
    seconds: float,
    concurrency: int,
    users: int = 4,
    warm_up: float = 2.0,
) -> SoakResult:
    """Load *base_url* for *seconds* after *warm_up*; memory of process *pid* from /proc."""
    async with httpx.AsyncClient(base_url=base_url, verify=verify, timeout=30) as client:
        tokens = [await _token(client, user) for user in range(users)]
    result = SoakResult(seconds)
    start = time.monotonic()
    warm_until = start + warm_up
    stop_at = warm_until + seconds

    async def sample_start() -> None:
        await asyncio.sleep(max(warm_until - time.monotonic(), 0))
        result.rss_start_kib = rss_kib(pid)

    loops = [
        _client_loop(base_url, verify, tokens[i % users], stop_at, warm_until, result)
        for i in range(concurrency)
    ]
    await asyncio.gather(sample_start(), *loops)
    result.seconds = time.monotonic() - warm_until
    result.rss_end_kib = rss_kib(pid)
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--users", type=int, default=4)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bastion-soak-"))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(RAISED_LIMITS, BASTION_DATA_DIR=str(data_dir), BASTION_LOG_LEVEL="warning")
    command = [sys.executable, "-m", "bastion", "serve", "--port", str(port), "--http-port", "0"]
    server = subprocess.Popen(
        [*_pin(0), *command],
        env=env,
        cwd=data_dir,
    )
    try:
        cert = data_dir / "tls" / "cert.pem"
        deadline = time.monotonic() + 30
        while True:
            try:
                if cert.exists():
                    verify = ssl.create_default_context(cafile=str(cert))
                    url = f"https://127.0.0.1:{port}"
                    if httpx.get(f"{url}/healthz", verify=verify).status_code == 200:
                        break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("bastion serve did not come up")
            time.sleep(0.2)
        result = asyncio.run(
            soak(url, verify, server.pid, seconds=args.seconds, concurrency=args.concurrency)
        )
        print(result.report())
        print(
            f"{args.concurrency} clients, {args.users} users, one worker pinned to core 0; "
            f"load average {os.getloadavg()[0]:.2f}"
        )
    finally:
        server.terminate()
        server.wait(15)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
