"""The transport attacks of issue 12, run against a real `bastion serve`, with figures.

Each attack runs against a fresh-enough server (default settings: 16 KiB heads, 10 s head
timeout, 10 s / 60 s body, 5 s keep-alive, 64 connections per client) and reports what the
attacker got (status or close), the time until the server closed the connection, the
server's CPU seconds and resident memory (from /proc) before, at the peak and after, and
how long a bystander's ``GET /healthz`` took meanwhile. Observation stops after
``--give-up`` seconds (">N s" in the table).

``--src DIR`` serves bastion from another checkout's ``src`` (``git archive <commit> src``),
to compare with the code before a change:

    .venv/bin/python bench/transport_attacks.py                 # this tree
    .venv/bin/python bench/transport_attacks.py --src /tmp/base/src
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Target:
    """A `bastion serve` subprocess on free ports, from this tree or *src*."""

    def __init__(self, src: Path | None) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="bastion-attacks-"))
        self.port, self.http_port = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
        env.update(BASTION_DATA_DIR=str(self.data), BASTION_LOG_LEVEL="warning")
        if src is not None:
            env["PYTHONPATH"] = str(src.resolve())
        command = [sys.executable, "-m", "bastion", "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--http-port", str(self.http_port)],
            env=env,
            cwd=self.data,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"https://127.0.0.1:{self.port}"
        cert = self.data / "tls" / "cert.pem"
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError, OSError, ssl.SSLError):
                if cert.exists():
                    self.ctx = ssl.create_default_context(cafile=str(cert))
                    if httpx.get(f"{self.url}/healthz", verify=self.ctx).status_code == 200:
                        return
            if time.monotonic() > deadline:
                raise SystemExit("server did not start")
            time.sleep(0.2)

    def connect(
        self, tls: bool, handshake: bool = True, source: str = "127.0.0.1"
    ) -> socket.socket:
        raw = socket.create_connection(
            ("127.0.0.1", self.port if tls else self.http_port),
            timeout=5,
            source_address=(source, 0),
        )
        if tls and handshake:
            return self.ctx.wrap_socket(raw, server_hostname="localhost")
        return raw

    def healthz_seconds(self) -> float:
        start = time.monotonic()
        try:
            httpx.get(f"{self.url}/healthz", verify=self.ctx, timeout=60)
        except httpx.HTTPError:
            return float("inf")
        return time.monotonic() - start

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.data, ignore_errors=True)


@dataclass
class Outcome:
    answer: str
    close_s: float | None  # None: still open when observation stopped


def _wait_close(sock: socket.socket, give_up: float) -> Outcome:
    start = time.monotonic()
    sock.settimeout(0.5)
    data = b""
    while time.monotonic() - start < give_up:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except (OSError, ssl.SSLError):
            break
        if not chunk:
            break
        data += chunk
    else:
        return Outcome(_status(data), None)
    return Outcome(_status(data), time.monotonic() - start)


def _status(data: bytes) -> str:
    if not data:
        return "close"
    return data.split(b"\r\n", 1)[0].split(b" ", 2)[1].decode() if b" " in data else "bytes"


def stream_head(
    target: Target, tls: bool, prefix: bytes, megabytes: int, give_up: float
) -> Outcome:
    sock = target.connect(tls)
    sock.sendall(prefix)
    piece = b"a" * 65536
    sent = 0
    start = time.monotonic()
    sock.settimeout(give_up)
    try:
        while sent < megabytes * 2**20 and time.monotonic() - start < give_up:
            sock.sendall(piece)
            sent += len(piece)
    except (OSError, ssl.SSLError):
        pass
    outcome = _wait_close(sock, max(give_up - (time.monotonic() - start), 1))
    sock.close()
    outcome.answer += f" after {sent / 2**20:.1f} MB"
    return outcome


def attacks(give_up: float) -> dict[str, Callable[[Target], Outcome]]:
    def huge_header(tls: bool) -> Callable[[Target], Outcome]:
        return lambda t: stream_head(t, tls, b"GET / HTTP/1.1\r\nHost: a\r\nX: ", 200, give_up)

    def huge_url(t: Target) -> Outcome:
        return stream_head(t, True, b"GET /", 200, give_up)

    def many_fields(t: Target) -> Outcome:
        sock = t.connect(True)
        with contextlib.suppress(OSError, ssl.SSLError):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: a\r\n" * 10000 + b"\r\n")
        return _wait_close(sock, give_up)

    def silent(tls: bool, handshake: bool = True) -> Callable[[Target], Outcome]:
        return lambda t: _wait_close(t.connect(tls, handshake), give_up)

    def slowloris(t: Target) -> Outcome:
        sock = t.connect(True)
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        start = time.monotonic()
        sock.settimeout(1)
        data = b""
        while time.monotonic() - start < give_up:
            try:
                sock.sendall(b"X-a: b\r\n")
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except (OSError, ssl.SSLError):
                break
            data += chunk
            if not chunk or data:
                break
        rest = _wait_close(sock, give_up)
        return Outcome(_status(data) if data else rest.answer, time.monotonic() - start)

    def partial_body(t: Target) -> Outcome:
        sock = t.connect(True)
        sock.sendall(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json"
            b"\r\nContent-Length: 100\r\n\r\n{"
        )
        return _wait_close(sock, give_up)

    def idle_keepalive(tls: bool) -> Callable[[Target], Outcome]:
        def run(t: Target) -> Outcome:
            sock = t.connect(tls)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            sock.settimeout(5)
            response = b""
            while b"\r\n\r\n" not in response:  # the whole response, then idleness
                response += sock.recv(65536)
            head, _, body = response.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += sock.recv(65536)
            return _wait_close(sock, give_up)

        return run

    def websocket(t: Target) -> Outcome:
        sock = t.connect(True)
        sock.sendall(
            b"GET /api/v1/orders HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        outcome = _wait_close(sock, 5)
        return outcome

    def flood(t: Target) -> Outcome:
        held = []
        for _ in range(1100):
            try:
                held.append(t.connect(True, handshake=False, source="127.0.0.9"))
            except OSError:
                break
        try:
            ok = t.healthz_seconds()
            fds = len(os.listdir(f"/proc/{t.process.pid}/fd"))
        finally:
            for sock in held:
                sock.close()
        return Outcome(f"/healthz in {ok:.2f} s, {fds} fds", 0.0)

    return {
        "4 x 200 MB header, HTTPS (in parallel)": huge_header(True),
        "200 MB header, redirect port": huge_header(False),
        "200 MB URL, HTTPS": huge_url,
        "10,000 header fields": many_fields,
        "TLS connect, no handshake": silent(True, handshake=False),
        "TLS handshake, then nothing": silent(True),
        "redirect port, nothing sent": silent(False),
        "slowloris head (a field/s)": slowloris,
        "partial body": partial_body,
        "idle keep-alive, HTTPS": idle_keepalive(True),
        "idle keep-alive, redirect port": idle_keepalive(False),
        "WebSocket handshake (GET /api/v1/orders)": websocket,
        "1,100 idle connections from one address": flood,
    }


def run(target: Target, name: str, attack: Callable[[Target], Outcome]) -> str:
    pid = target.process.pid
    rss_before, cpu_before, peak = _rss_mib(pid), _cpu(pid), [0.0]
    stop = threading.Event()
    bystander: list[float] = []

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mib(pid))
            stop.wait(0.05)

    def probe() -> None:
        while not stop.is_set():
            bystander.append(target.healthz_seconds())
            stop.wait(0.5)

    threads = [threading.Thread(target=watch), threading.Thread(target=probe)]
    for thread in threads:
        thread.start()
    try:
        if name.startswith("4 x"):
            results: list[Outcome] = []
            workers = [
                threading.Thread(target=lambda: results.append(attack(target))) for _ in range(4)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            outcome = results[0]
        else:
            outcome = attack(target)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    time.sleep(1)
    close = f"{outcome.close_s:.1f} s" if outcome.close_s is not None else "> give-up"
    worst = max(bystander) if bystander else 0.0
    return (
        f"| {name} | {outcome.answer} | {close} | {_cpu(pid) - cpu_before:.2f} | "
        f"{rss_before:.0f} / {max(peak[0], rss_before):.0f} / {_rss_mib(pid):.0f} | "
        f"{worst:.2f} s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, help="serve bastion from this checkout's src")
    parser.add_argument("--give-up", type=float, default=30.0)
    parser.add_argument("--only", help="run the attacks whose name contains this text")
    args = parser.parse_args()
    print(
        "| attack | answer | closed after | server CPU s | RSS MiB before / peak / after "
        "| slowest bystander /healthz |"
    )
    print("|---|---|---|---|---|---|")
    for name, attack in attacks(args.give_up).items():
        if args.only and args.only not in name:
            continue
        target = Target(args.src)
        try:
            print(run(target, name, attack), flush=True)
        finally:
            target.stop()
    print(f"load average {os.getloadavg()[0]:.2f}; observation stops after {args.give_up:.0f} s")


if __name__ == "__main__":
    main()
