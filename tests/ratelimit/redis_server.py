"""Test helpers for rate limiting: a fake clock and a private ``redis-server`` process.

A private server (on a free port, in the test's tmp_path) lets a test stop and restart Redis
under a running store or ``bastion serve``, and read its command statistics, without
touching the shared Redis on 6379 that other tests use in parallel.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from pathlib import Path

import redis

from tests.support import free_port, require_program, require_tcp, wait_until

SHARED_REDIS_URL = "redis://127.0.0.1:6379/0"


class FakeClock:
    """A clock the test moves by hand. Start away from 0 so ``now - window`` stays positive."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def require_shared_redis() -> str:
    """The shared Redis URL; skips (fails under CI) when nothing listens on 6379."""
    require_tcp("127.0.0.1", 6379, "Redis")
    return SHARED_REDIS_URL


def unique_prefix() -> str:
    """A key prefix no other test uses (tests share one Redis and run in parallel)."""
    return f"bastion-test:{uuid.uuid4().hex[:12]}:"


def delete_prefix(url: str, prefix: str) -> None:
    """Remove every key a test created under *prefix*."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class RedisServer:
    """A ``redis-server`` of our own on a free loopback port; stop and start it at will."""

    def __init__(self, tmp_path: Path) -> None:
        self.binary = require_program("redis-server", "Redis outage and restart tests")
        self.port = free_port()
        self.dir = tmp_path / f"redis-{self.port}"
        self.dir.mkdir()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.dir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--protected-mode",
                "yes",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(self.accepts, timeout=10, what=f"redis-server on port {self.port}")

    def accepts(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}")
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)


def silent_server() -> tuple[socket.socket, int]:
    """A listening socket that accepts connections and never answers (a hung Redis)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, int(sock.getsockname()[1])
