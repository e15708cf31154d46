"""Run an ASGI app under plain ``uvicorn`` (or gunicorn) in a subprocess, as a user would.

No logging configuration, no bastion serve: what a developer gets from
``uvicorn module:app``. The process's stderr goes to a file the test reads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Process:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "API_"))}
    env.update({"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)})
    env.update(extra or {})
    return env


@contextmanager
def running(
    target: str,
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    args: Sequence[str] = (),
    gunicorn: bool = False,
    ready_path: str = "/",
) -> Iterator[Process]:
    """``python -m uvicorn target`` (or gunicorn with uvicorn workers) on a free port."""
    port = free_port()
    log_path = tmp_path / f"server-{port}.log"
    if gunicorn:
        cmd = [sys.executable, "-m", "gunicorn", "-k", "uvicorn_worker.UvicornWorker"]
        cmd += ["-b", f"127.0.0.1:{port}", *args, target]
    else:
        cmd = [sys.executable, "-m", "uvicorn", target, "--port", str(port), *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, cwd=ROOT, env=_env(env), stdout=log, stderr=log)
    running_process = Process(process, port, log_path)

    def up() -> bool:
        if process.poll() is not None:
            pytest.fail(f"{target} exited with {process.returncode}:\n{running_process.log()}")
        httpx.get(running_process.url + ready_path, timeout=2)
        return True

    try:
        wait_until(up, timeout=30, what=f"{target} on port {port}")
        yield running_process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
