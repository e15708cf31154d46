"""Requests/s of a trivial route, bare Starlette vs wrapped in bastion's whole protective layer.

One uvicorn worker pinned to core 0, wrk pinned to core 1, loopback, plain HTTP (TLS cost is
the same for both and would only hide the layers' cost). Prints both figures and the ratio;
the goal is that the layers keep >= 65% of bare Starlette's throughput.

    .venv/bin/python bench/bench_layers.py [--seconds 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and os.cpu_count() else []


def measure(app: str, seconds: int, connections: int) -> float:
    port = _free_port()
    server = subprocess.Popen(
        [
            *_pin(0),
            sys.executable,
            "-m",
            "uvicorn",
            f"bench.layers_apps:{app}",
            "--port",
            str(port),
            "--no-access-log",
            "--no-proxy-headers",
            "--no-server-header",
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/ping"
        headers = {"X-Forwarded-Proto": "https"}
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url, headers=headers).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{app}: server did not come up")
            time.sleep(0.1)
        cmd = [*_pin(1), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
        cmd += ["-H", "X-Forwarded-Proto: https", url]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if non2xx:
            raise SystemExit(f"{app}: {non2xx.group(1)} non-2xx responses; the bench is invalid")
        match = re.search(r"Requests/sec:\s+([\d.]+)", out)
        if match is None:
            raise SystemExit(f"unexpected wrk output:\n{out}")
        return float(match.group(1))
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    bare = measure("bare", args.seconds, args.connections)
    wrapped = measure("wrapped", args.seconds, args.connections)
    print(f"{'app':<28}{'requests/s':>12}")
    print(f"{'bare Starlette':<28}{bare:>12,.0f}")
    print(f"{'Starlette + bastion layers':<28}{wrapped:>12,.0f}")
    print(f"ratio: {wrapped / bare:.0%} of bare (goal >= 65%)")


if __name__ == "__main__":
    main()
