"""Helpers shared by the test suite: external programs, free ports, waiting for conditions."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_program(name: str, reason: str = "") -> str:
    """Path of *name*; skip the test without it, except under CI=true where absence fails."""
    path = shutil.which(name) or (name if os.path.isabs(name) and os.path.exists(name) else None)
    if path:
        return path
    message = f"{name} is not installed{': ' + reason if reason else ''}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: required)")
    pytest.skip(message)


def require_tcp(host: str, port: int, what: str) -> None:
    """Skip (or fail under CI) unless something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return
    except OSError:
        message = f"{what} is not reachable at {host}:{port}"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: required)")
        pytest.skip(message)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], T], timeout: float = 15.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll *condition* until it returns a truthy value; fail the test after *timeout* s."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except Exception as exc:  # the condition may raise until the thing is up
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what or condition}: {last_error!r}")


def start_nginx(prefix: Path, port: int, conf: Path, reason: str) -> subprocess.Popen[bytes]:
    """A real nginx with *conf*, its prefix and logs under *prefix*, once it listens on *port*
    (skips with *reason* where nginx is absent; a start that fails shows nginx's stderr)."""
    nginx = require_program("nginx", reason)
    log = prefix / "stderr.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )

    def listening() -> bool:
        if process.poll() is not None:
            pytest.fail(f"nginx exited with {process.returncode}: {log.read_text()}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, timeout=20, what="nginx listening")
    return process
