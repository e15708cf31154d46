"""A private, production-like Redis for tests: a password, TLS, or cluster mode.

Each instance is a ``redis-server`` of its own on a free loopback port (not the shared one on
6379), so a test can lock it down without disturbing parallel tests.
"""

from __future__ import annotations

import random
import secrets
import socket
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from bastion.server.tls import ensure_self_signed
from tests.support import free_port, require_program, wait_until


class PrivateRedis:
    """``redis-server`` on a free loopback port with a password, TLS if the build has it,
    or cluster mode (one node holding every slot)."""

    def __init__(self, directory: Path, *, tls: bool = False, cluster: bool = False) -> None:
        self.binary = require_program("redis-server", "a Redis shared by several hosts")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = _cluster_port() if cluster else free_port()
        self.password = "p@ss:w/rd " + secrets.token_hex(8)  # needs percent-encoding in a URL
        self.tls = tls
        args = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(directory), "--requirepass", self.password]
        if tls:
            self.cert = ensure_self_signed(directory / "tls").cert  # for 127.0.0.1 and localhost
            key = directory / "tls" / "key.pem"
            args += ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", str(self.cert), "--tls-key-file", str(key)]
            args += ["--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        log = (directory / "redis.log").open("ab")
        self.process = subprocess.Popen([self.binary, *args], stdout=log, stderr=log)
        log.close()
        wait_until(self.answers, timeout=15, what=f"redis-server on {self.port}")
        if cluster:
            # redis-py leaves execute_command unannotated.
            self.client().execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)  # type: ignore[no-untyped-call]
            wait_until(
                lambda: b"cluster_state:ok" in self.client().execute_command("CLUSTER", "INFO"),  # type: ignore[no-untyped-call]
                timeout=15,
                what="the one-node cluster to be ok",
            )

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        query = f"?ssl_ca_certs={quote(str(self.cert))}" if self.tls else ""
        return f"{scheme}://:{quote(self.password, safe='')}@127.0.0.1:{self.port}/0{query}"

    def client(self, **kwargs: Any) -> redis.Redis:
        if self.tls:
            kwargs.update(ssl=True, ssl_ca_certs=str(self.cert))
        return redis.Redis(port=self.port, password=self.password, socket_timeout=2, **kwargs)

    def answers(self) -> bool:
        if self.process.poll() is not None:
            log = (self.directory / "redis.log").read_text(errors="replace")
            raise RuntimeError(f"redis-server exited with {self.process.returncode}: {log}")
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def start_redis(directory: Path) -> PrivateRedis:
    """With TLS when this redis-server build has it (Debian's does), else password only."""
    try:
        return PrivateRedis(directory, tls=True)
    except RuntimeError as exc:
        if "tls" not in str(exc).lower():
            raise
    return PrivateRedis(directory / "plain", tls=False)


def _cluster_port() -> int:
    """A free port whose cluster-bus port (10,000 higher, so at most 55535) is free too."""
    for _ in range(200):
        port = random.randint(20_000, 55_535)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")
