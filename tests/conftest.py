"""Fixtures shared by the whole suite, notably real `bastion serve` subprocesses."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import free_port, wait_until


@dataclass
class Server:
    """A running `bastion serve` subprocess and how to reach it."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    http_port: int
    data_dir: Path
    log_path: Path
    insecure_http: bool = False
    env: dict[str, str] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        return "http" if self.insecure_http else "https"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    own_cert: Path | None = None

    @property
    def cert_path(self) -> Path:
        return self.own_cert or self.data_dir / "tls" / "cert.pem"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What httpx's ``verify=`` needs to trust this server (its own certificate)."""
        if self.insecure_http:
            return True
        return ssl.create_default_context(cafile=str(self.cert_path))

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client that trusts this server's certificate."""
        return httpx.Client(base_url=self.url, verify=self.verify, timeout=10, **kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, verify=self.verify, timeout=10, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return int(self.process.returncode)


def start_server(
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    insecure_http: bool = False,
    data_dir: Path | None = None,
    wait: bool = True,
) -> Server:
    """Start `bastion serve` on free loopback ports with its own data dir and wait for /healthz."""
    port, http_port = free_port(), free_port()
    data_dir = data_dir or tmp_path / f"data-{port}"
    log_path = tmp_path / f"serve-{port}.log"
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BASTION_") or k == "BASTION_SKIP_TIMING"
    }
    full_env.update({"BASTION_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"})
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "bastion", "serve", "--port", str(port)]
    if insecure_http:
        cmd.append("--insecure-http")
    else:
        cmd += ["--http-port", str(http_port)]
    cmd += args or []
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    server = Server(
        process, "127.0.0.1", port, http_port, data_dir, log_path, insecure_http, full_env
    )
    if "--cert" in cmd:
        server.own_cert = Path(cmd[cmd.index("--cert") + 1])
    if wait:

        def healthy() -> bool:
            if process.poll() is not None:
                pytest.fail(f"bastion serve exited with {process.returncode}:\n{server.log()}")
            if not insecure_http and not server.cert_path.exists():
                return False
            response = httpx.get(f"{server.url}/healthz", verify=server.verify, timeout=2)
            # Behind a trusted proxy a direct plain-HTTP request is redirected: it is up.
            return response.status_code == 200 or (insecure_http and response.status_code == 301)

        try:
            wait_until(healthy, timeout=30, what="bastion serve /healthz")
        except BaseException:
            server.stop()
            raise
    return server


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: ``serve(env={...}, args=[...])`` starts a real server; all stop at teardown."""
    started: list[Server] = []

    def factory(**kwargs: Any) -> Server:
        server = start_server(tmp_path, **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
