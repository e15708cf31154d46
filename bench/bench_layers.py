"""Requests/s of a trivial route, bare Starlette vs wrapped in bastion's whole protective layer.

One uvicorn worker pinned to core 0, wrk pinned to core 1, loopback, plain HTTP (TLS cost is
the same for both and would only hide the layers' cost). Prints both figures and the ratio;
the goal is that the layers keep >= 65% of bare Starlette's throughput.

On a virtual machine requests/s move by 10-20% from one run to the next, with the host's load,
so the apps are measured in many short alternating rounds: each round gives a ratio (its apps
ran back to back, under the same conditions), and the median ratio is the figure, printed with
the lowest and highest round. The server's own CPU time per request (from /proc, user +
system) gives a second ratio: with the server saturated, it is the throughput ratio the apps
would have on a quiet machine.

Every app runs on the same server protocol: bastion's (``--protocol bastion``, the default,
what ``bastion serve`` runs: uvicorn's httptools protocol with the transport limits, see
``bastion/server/protocol.py``) or uvicorn's own (``--protocol uvicorn``).

``--together`` adds the steadier measure: both apps served at once, sharing core 0, each
loaded by its own wrk on core 1 (``measure_together``); the ratio of the requests they served
is the cost ratio, and load from outside hits both alike.

``--compare-protocols A B`` serves the stack on two server protocols at once (same
method) and prints A's requests per B's: how a protocol change moves a plain request.

``--ceiling`` adds bare Starlette answering with the same 13 headers the stack adds: the
server validates and writes each header, so that row is the best ratio the contract's headers
allow even if the layers cost nothing.

    .venv/bin/python bench/bench_layers.py [--seconds 4] [--connections 64] [--rounds 8]
        [--protocol bastion|uvicorn] [--together] [--ceiling] [--compare-protocols A B]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
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


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of *pid* (Linux /proc), or None where that is not available."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PROTOCOLS = {
    "bastion": "bastion.server.protocol:BastionHttpProtocol",  # what `bastion serve` runs
    "uvicorn": "httptools",  # uvicorn's own httptools protocol
}


def _protocol(spec: str) -> tuple[str, dict[str, str]]:
    """``--http`` value and extra environment for a protocol name or ``SRC_DIR::module:Class``.

    ``SRC_DIR::...`` imports bastion from another checkout's ``src`` (``git worktree add`` or
    ``git archive`` of the commit to compare with), so a change can be measured against the
    code before it, both served at once (``--compare-protocols``).
    """
    if "::" in spec:
        src, protocol = spec.split("::", 1)
        return protocol, {"PYTHONPATH": str(Path(src).resolve())}
    return PROTOCOLS[spec], {}


def _start(app: str, protocol: str) -> tuple[subprocess.Popen[bytes], str]:
    """One uvicorn worker for *app* pinned to core 0, answering 200 on /api/ping."""
    port = _free_port()
    http, extra_env = _protocol(protocol)
    server = subprocess.Popen(
        [
            *_pin(0),
            sys.executable,
            "-m",
            "uvicorn",
            app if ":" in app else f"bench.layers_apps:{app}",  # or any module:attribute
            "--port",
            str(port),
            "--no-access-log",
            "--no-proxy-headers",
            "--no-server-header",
            "--http",
            http,
            "--loop",
            "uvloop",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, **extra_env},
    )
    url = f"http://127.0.0.1:{port}/api/ping"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(url, headers={"X-Forwarded-Proto": "https"}).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            _stop(server)
            raise SystemExit(f"{app}: server did not come up")
        time.sleep(0.1)


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(10)


def _wrk(url: str, seconds: int, connections: int) -> list[str]:
    """The wrk command line, pinned to core 1; wrk's X-Forwarded-Proto passes HTTPS checks."""
    command = [*_pin(1), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    return [*command, "-H", "X-Forwarded-Proto: https", url]


def _read_wrk(app: str, out: str) -> tuple[float, int]:
    """(requests/s, requests) from wrk's output; any non-2xx answer invalidates the run."""
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{app}: {non2xx.group(1)} non-2xx responses; the bench is invalid")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rate is None or total is None:
        raise SystemExit(f"unexpected wrk output:\n{out}")
    return float(rate.group(1)), int(total.group(1))


def measure(
    app: str, seconds: int, connections: int, protocol: str = "bastion"
) -> tuple[float, float | None]:
    """(requests/s, server CPU µs per request or None) for one wrk run against *app*."""
    server, url = _start(app, protocol)
    try:
        cpu_before = _cpu_seconds(server.pid)
        cmd = _wrk(url, seconds, connections)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        cpu_after = _cpu_seconds(server.pid)
        rate, total = _read_wrk(app, out)
        cpu = None
        if cpu_before is not None and cpu_after is not None:
            cpu = (cpu_after - cpu_before) / total * 1e6
        return rate, cpu
    finally:
        _stop(server)


def measure_together(
    first: str,
    second: str,
    seconds: int,
    connections: int,
    protocol: str = "bastion",
    second_protocol: str | None = None,
) -> float:
    """Requests served by *first* per request served by *second*, both loaded at once.

    Both servers share core 0 (the scheduler gives each half of it) and both wrk processes
    share core 1, so whatever the host does to the virtual machine during the run, it does
    to both: the ratio of the requests they served is the inverse ratio of their costs per
    request. Two copies of one app give 0.97-1.00 here, against 0.8-1.2 between
    alternating runs.
    """
    servers = [_start(first, protocol)]
    try:
        servers.append(_start(second, second_protocol or protocol))
        runs = [
            subprocess.Popen(_wrk(url, seconds, connections), stdout=subprocess.PIPE, text=True)
            for _, url in servers
        ]
        outs = [run.communicate()[0] for run in runs]
        served = [_read_wrk(app, out)[1] for app, out in zip((first, second), outs, strict=True)]
        return served[0] / served[1]
    finally:
        for server, _ in servers:
            _stop(server)


def _ratios(first: list[float], second: list[float]) -> list[float]:
    """Per-round ratios: the apps of one round ran back to back, under the same load."""
    return [a / b for a, b in zip(first, second, strict=True) if b]


def _spread(values: list[float], text: str = "{:.0%}") -> str:
    """Median, with the lowest and highest round."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{text.format(mid)} (rounds: {text.format(low)}–{text.format(high)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        default="bastion",
        help="the server's HTTP protocol for every app (default: bastion's, as `bastion serve`)",
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="also measure both apps loaded at once on one core (the steadier ratio)",
    )
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="also measure bare Starlette sending the stack's 13 headers (no layers)",
    )
    parser.add_argument(
        "--compare-protocols",
        nargs=2,
        metavar=("A", "B"),
        help="only: the stack served on protocol A and on protocol B at once, A's requests "
        "per B's (a name, or SRC_DIR::module:Class to import bastion from another checkout)",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    if args.compare_protocols:
        first, second = args.compare_protocols
        ratios = [
            measure_together(
                "wrapped", "wrapped", args.seconds, args.connections // 2, first, second
            )
            for _ in range(args.rounds)
        ]
        print(f"requests served on {first} per request on {second}, both at once on core 0:")
        print(f"  {_spread(ratios, '{:.3f}')}")
        print(
            f"{args.rounds} rounds of {args.seconds} s, {args.connections // 2} connections "
            f"each; load average {os.getloadavg()[0]:.2f}"
        )
        return
    apps = ["bare", "wrapped", *(["headers_only"] if args.ceiling else [])]
    rps: dict[str, list[float]] = {app: [] for app in apps}
    cpu: dict[str, list[float]] = {app: [] for app in apps}
    for _ in range(args.rounds):
        for app in apps:
            got, used = measure(app, args.seconds, args.connections, args.protocol)
            rps[app].append(got)
            cpu[app].append(used if used is not None else 0.0)
    labels = {
        "bare": "bare Starlette",
        "wrapped": "Starlette + bastion layers",
        "headers_only": "bare + the 13 headers only",
    }
    print(f"{'app (medians)':<28}{'requests/s':>12}{'server CPU µs/request':>24}")
    for app in apps:
        print(
            f"{labels[app]:<28}{statistics.median(rps[app]):>12,.0f}"
            f"{statistics.median(cpu[app]):>24.1f}"
        )
    print(f"ratio by requests/s: {_spread(_ratios(rps['wrapped'], rps['bare']))} (goal >= 65%)")
    print(f"ratio by server CPU per request: {_spread(_ratios(cpu['bare'], cpu['wrapped']))}")
    if args.ceiling:
        ceiling = _spread(_ratios(rps["headers_only"], rps["bare"]))
        print(f"ceiling (the headers alone, no layers): {ceiling}")
    if args.together:
        together = [
            measure_together("wrapped", "bare", args.seconds, args.connections // 2, args.protocol)
            for _ in range(args.rounds)
        ]
        print(f"ratio with both loaded at once on core 0: {_spread(together)}")
    print(
        f"{args.rounds} alternating rounds of {args.seconds} s, protocol {args.protocol}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
