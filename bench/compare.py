"""``bench/run``: bastion against the stacks it is measured by, in one table.

Every server runs in turn on core 0 (``taskset``), loaded by wrk on core 1 (``-t1 -c32``, 10 s
by default), over loopback and plain HTTP (TLS would cost every row the same and hide the
rest). Each case is warmed up before it is measured; the servers are started afresh in every
round and the rounds are interleaved, so slow drift of a shared machine hits every row alike.
The table gives the median of the rounds, their spread, p50/p99 latency (wrk's own histogram,
printed by a small Lua ``done()``), and the server process's CPU time per request (from
/proc: the cost the server would have on a quiet machine). The goal ratios are computed round
by round (the two cases of a ratio ran minutes apart, not hours) and their median is shown.

Cases:

* bare Starlette, and bastion's protective layer around the same route (``layers_apps.py``);
* ``bastion serve --insecure-http`` on SQLite and on PostgreSQL: ``/healthz``, ``GET
  /api/v1/me``, ``GET /api/v1/orders/{id}``, ``GET /api/v1/orders?limit=20`` (a full page
  with a next cursor), ``POST /api/v1/orders``; limits are set out of reach with the
  ``BASTION_*`` settings and the log level is ``warning``, as for the layer's own bench;
* the guide's Express stack (``peers/express``; skipped with a message where Node is
  absent) and a FastAPI + slowapi + CORSMiddleware + secure + PyJWT assembly
  (``peers/assembly``, in its own virtualenv ``peers/.venv``): ``/api/v1/ping`` and
  ``/api/v1/me`` with an ES256 token. The peers' ``/me`` reads the account from memory.
  The assembly runs twice: as its libraries' quick starts show it (the row the goal is
  measured against, as in the issue that set it) and tuned (key parsed once, slowapi's
  pure-ASGI middleware); the Express stack's key is always parsed once.

PostgreSQL is the one at 127.0.0.1:5432 (trust auth): a database of its own is created for
the run and dropped at the end. The table and the machine's description are written to
``bench/RESULTS.md`` (``--output``).

    bench/run [--seconds 10] [--rounds 3] [--warmup 2] [--only me,orders] [--output FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.auth.key_encryption import generate

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PEERS = BENCH / "peers"
PEER_VENV = PEERS / ".venv"
PEER_REQUIREMENTS = BENCH / "requirements-peers.txt"
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
OUT_OF_REACH = 999_999_999  # the most digits a BASTION_* rate takes
ISSUER = "https://bench.invalid"
AUDIENCE = "bench-api"
PASSWORD = "correct horse battery staple, benched"
ORDER = {
    "productId": "0b8e7a52-6f1c-4d8e-9a3b-2f6c1d0e9a77",
    "quantity": 2,
    "address": {"street": "1 Rue de Rivoli", "city": "Paris", "country": "fr"},
}
SERVER_CORE, LOAD_CORE = 0, 1


# --- processes ------------------------------------------------------------------------------


def _pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of *pid* (Linux /proc), or None where that is not available."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    base: str
    log: Path


def _start(command: list[str], env: dict[str, str], port: int, probe: str, log: Path) -> Running:
    """*command* pinned to the server core; returns once *probe* answers 200."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*_pin(SERVER_CORE), *command],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit(f"{command[0]} exited ({process.returncode}):\n{_tail(log)}")
        with contextlib.suppress(httpx.TransportError):
            answer = httpx.get(base + probe, headers={"X-Forwarded-Proto": "https"}, timeout=2)
            if answer.status_code == 200:
                return Running(process, base, log)
        if time.monotonic() > deadline:
            _stop(Running(process, base, log))
            raise SystemExit(f"{command[0]} did not come up:\n{_tail(log)}")
        time.sleep(0.1)


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-15:])


def _stop(running: Running) -> None:
    running.process.terminate()
    try:
        running.process.wait(15)
    except subprocess.TimeoutExpired:
        running.process.kill()
        running.process.wait()


# --- wrk ------------------------------------------------------------------------------------

_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d status=%d socket=%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def _lua(method: str, headers: dict[str, str], body: str | None) -> str:
    lines = [f"wrk.method = {json.dumps(method)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"wrk.body = {json.dumps(body)}")
    return "\n".join(lines) + "\n" + _DONE


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float | None


def _wrk(url: str, script: Path, seconds: int, connections: int, pid: int, label: str) -> Sample:
    cpu_before = _cpu_seconds(pid)
    command = [
        *_pin(LOAD_CORE),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
    ]
    out = subprocess.run(
        [*command, "-s", str(script), url], capture_output=True, text=True, check=True
    ).stdout
    cpu_after = _cpu_seconds(pid)
    found = re.search(
        r"BENCH requests=(\d+) duration_us=(\d+) p50_us=(\d+) p99_us=(\d+) status=(\d+) "
        r"socket=(\d+)",
        out,
    )
    if found is None:
        raise SystemExit(f"{label}: unexpected wrk output:\n{out}")
    requests, duration, p50, p99, status, sock = (int(g) for g in found.groups())
    if status or sock:
        raise SystemExit(f"{label}: {status} error statuses, {sock} socket errors; invalid run")
    cpu = None
    if cpu_before is not None and cpu_after is not None and requests:
        cpu = (cpu_after - cpu_before) / requests * 1e6
    return Sample(requests / (duration / 1e6), p50 / 1000, p99 / 1000, cpu)


# --- cases and servers ----------------------------------------------------------------------


@dataclass
class Case:
    key: str
    label: str
    method: str
    path: str  # may name {order} (an order of the benched user)
    status: int
    body: str | None = None
    authorized: bool = True


@dataclass
class Server:
    """How to start one server, and the cases measured while it runs."""

    key: str
    cases: list[Case]
    command: Callable[[int], tuple[list[str], dict[str, str]]]
    probe: str
    prepare: Callable[[Running], dict[str, str]] = lambda _r: {}
    skip: str | None = None  # why this server cannot run here
    context: dict[str, str] = field(default_factory=dict)


def _uvicorn(
    python: str, app: str, *extra: str
) -> Callable[[int], tuple[list[str], dict[str, str]]]:
    def command(port: int) -> tuple[list[str], dict[str, str]]:
        args = [python, "-m", "uvicorn", app, "--port", str(port), "--loop", "uvloop"]
        args += ["--no-access-log", "--no-server-header", "--log-level", "warning", *extra]
        return args, {}

    return command


class Tokens:
    """An ES256 key pair and an access token for the peers (the claims bastion issues)."""

    def __init__(self, workdir: Path) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        self.public_file = workdir / "peer-public.pem"
        self.public_file.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self.user_id = str(uuid.uuid4())
        self.email = "peer@bench.invalid"
        now = int(time.time())
        claims = {
            "sub": self.user_id,
            "role": "user",
            "type": "access",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 24 * 3600,
            "jti": uuid.uuid4().hex,
        }
        self.token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "bench"})

    def env(self) -> dict[str, str]:
        return {
            "PUBLIC_KEY_FILE": str(self.public_file),
            "ISSUER": ISSUER,
            "AUDIENCE": AUDIENCE,
            "USER_ID": self.user_id,
            "USER_EMAIL": self.email,
        }


def _peer_cases(prefix: str, name: str) -> list[Case]:
    return [
        Case(f"{prefix}.ping", f"{name}, ping", "GET", "/api/v1/ping", 200, authorized=False),
        Case(f"{prefix}.me", f"{name}, `GET /api/v1/me`", "GET", "/api/v1/me", 200),
    ]


def _bastion_cases(db: str) -> list[Case]:
    def case(key: str, method: str, path: str, status: int = 200, **more: Any) -> Case:
        shown = path.replace("{order}", "{id}")
        return Case(f"{db}.{key}", f"`bastion serve` ({db}), `{method} {shown}`", method, path,
                    status, **more)  # fmt: skip

    return [
        case("healthz", "GET", "/healthz", authorized=False),
        case("me", "GET", "/api/v1/me"),
        case("get", "GET", "/api/v1/orders/{order}"),
        case("list", "GET", "/api/v1/orders?limit=20"),
        case("post", "POST", "/api/v1/orders", 201, body=json.dumps(ORDER)),
    ]


def _bastion(db: str, data_dir: Path, database_url: str | None) -> Server:
    email = f"bench-{db}@bench.invalid"
    state: dict[str, str] = {}
    kek = generate()  # one per database: every round's server opens the keys the first sealed

    def command(port: int) -> tuple[list[str], dict[str, str]]:
        env = {
            "BASTION_DATA_DIR": str(data_dir),
            "BASTION_API_LIMIT": f"{OUT_OF_REACH}/15m",
            "BASTION_API_SLOWDOWN_AFTER": str(OUT_OF_REACH),
            "BASTION_AUTH_LIMIT": f"{OUT_OF_REACH}/15m",
            # wrk's warm-up connections may not be closed on the server's side yet when the
            # measured run opens its own: out of reach, like the rate limits.
            "BASTION_MAX_CONNECTIONS_PER_CLIENT": "4096",
            "BASTION_LOG_LEVEL": "warning",
        }
        if database_url is not None:
            env["BASTION_DATABASE_URL"] = database_url
            env["BASTION_KEY_ENCRYPTION_KEY"] = kek  # PostgreSQL keeps the keys, sealed
        args = [sys.executable, "-m", "bastion", "serve", "--insecure-http", "--port", str(port)]
        return [*args, "--http-port", "0", "--workers", "1"], env

    def prepare(running: Running) -> dict[str, str]:
        """Log in (a fresh token each start: they live 15 minutes); the first time, register
        and create 25 orders, so the list is a full page of 20 with a next cursor."""
        with httpx.Client(base_url=running.base, timeout=30) as client:
            if not state:
                credentials = {"email": email, "password": PASSWORD}
                answer = client.post("/api/v1/auth/register", json=credentials)
                if answer.status_code != 202:
                    raise SystemExit(f"{db}: register answered {answer.status_code}")
            login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
            if login.status_code != 200:
                raise SystemExit(f"{db}: login answered {login.status_code}")
            token = login.json()["access_token"]
            if not state:
                headers = {"Authorization": f"Bearer {token}"}
                for _ in range(25):
                    made = client.post("/api/v1/orders", json=ORDER, headers=headers)
                    if made.status_code != 201:
                        raise SystemExit(f"{db}: POST /api/v1/orders answered {made.status_code}")
                    state["order"] = made.json()["id"]
        return {"token": token, "order": state["order"]}

    return Server(f"bastion-{db}", _bastion_cases(db), command, "/healthz", prepare)


def _node_peer(tokens: Tokens) -> Server:
    express = PEERS / "express"
    skip = None
    if shutil.which("node") is None or shutil.which("npm") is None:
        skip = "Node.js (node and npm) is not installed: the Express peer is skipped"
    else:
        stamp = express / "node_modules" / ".bench-lock"
        lock = (express / "package-lock.json").read_bytes()
        digest = hashlib.sha256(lock).hexdigest()
        if not stamp.exists() or stamp.read_text() != digest:
            print("installing the Express peer (npm ci)...", file=sys.stderr)
            done = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--omit=dev"],
                cwd=express,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                skip = f"npm ci failed, the Express peer is skipped: {done.stderr.strip()[-300:]}"
            else:
                stamp.write_text(digest)

    def command(port: int) -> tuple[list[str], dict[str, str]]:
        env = {**tokens.env(), "PORT": str(port), "NODE_ENV": "production"}
        return ["node", str(express / "server.js")], env

    def prepare(_running: Running) -> dict[str, str]:
        return {"token": tokens.token}

    return Server("express", _peer_cases("express", "the Express stack"), command,
                  "/api/v1/ping", prepare, skip)  # fmt: skip


def _python_peers(tokens: Tokens) -> list[Server]:
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".bench-requirements"
    digest = hashlib.sha256(PEER_REQUIREMENTS.read_bytes()).hexdigest()
    skip = None
    if not stamp.exists() or stamp.read_text() != digest:
        print("installing the Python assembly (bench/peers/.venv)...", file=sys.stderr)
        made = subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], capture_output=True)
        pip = [str(python), "-m", "pip", "install", "-q", "-r", str(PEER_REQUIREMENTS)]
        done = subprocess.run(pip, capture_output=True, text=True) if made.returncode == 0 else made
        if done.returncode != 0:
            skip = f"the Python assembly could not be installed: {str(done.stderr).strip()[-300:]}"
        else:
            stamp.write_text(digest)

    def prepare(_running: Running) -> dict[str, str]:
        return {"token": tokens.token}

    def server(key: str, style: str, name: str) -> Server:
        def command(port: int) -> tuple[list[str], dict[str, str]]:
            args, _ = _uvicorn(str(python), "app:app", "--http", "httptools")(port)
            env = {**tokens.env(), "ASSEMBLY_STYLE": style}
            return [*args, "--app-dir", str(PEERS / "assembly")], env

        return Server(key, _peer_cases(key, name), command, "/api/v1/ping", prepare, skip)

    stack = "FastAPI + slowapi + CORS + secure + PyJWT"
    return [
        server("assembly", "documented", f"the {stack} assembly (as documented)"),
        server("assembly-tuned", "tuned", f"the {stack} assembly (tuned)"),
    ]


def _layers() -> list[Server]:
    protocol = "bastion.server.protocol:BastionHttpProtocol"  # what `bastion serve` runs
    return [
        Server(
            "starlette",
            [Case("starlette.ping", "bare Starlette, ping", "GET", "/api/ping", 200,
                  authorized=False)],
            _uvicorn(sys.executable, "bench.layers_apps:bare", "--http", protocol),
            "/api/ping",
        ),
        Server(
            "stack",
            [Case("stack.ping", "bastion's stack around the same ping", "GET", "/api/ping", 200,
                  authorized=False)],
            _uvicorn(sys.executable, "bench.layers_apps:wrapped", "--http", protocol),
            "/api/ping",
        ),
    ]  # fmt: skip


# --- PostgreSQL -----------------------------------------------------------------------------


def _postgres_up() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 5432), timeout=1):
        return True
    return False


async def _pg_admin(sql: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN)
    try:
        return str(await conn.fetchval(sql) if sql.startswith("SHOW") else await conn.execute(sql))
    finally:
        await conn.close()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    name = f"bastion_bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- the run --------------------------------------------------------------------------------


def _headers(case: Case, context: dict[str, str]) -> dict[str, str]:
    # X-Forwarded-Proto passes the HTTPS check of the layer bench's app (its trusted proxy
    # is 127.0.0.1); everyone else ignores it.
    headers = {"X-Forwarded-Proto": "https"}
    if case.authorized:
        headers["Authorization"] = f"Bearer {context['token']}"
    if case.body is not None:
        headers["Content-Type"] = "application/json"
    return headers


def _check(running: Running, case: Case, path: str, headers: dict[str, str]) -> None:
    """One request first: a case that does not answer as expected would measure nothing."""
    answer = httpx.request(
        case.method, running.base + path, headers=headers, content=case.body, timeout=10
    )
    if answer.status_code != case.status:
        raise SystemExit(f"{case.label}: answered {answer.status_code}: {answer.text[:200]}")


def run_round(
    servers: list[Server], args: argparse.Namespace, workdir: Path, results: dict[str, list[Sample]]
) -> None:
    for server in servers:
        port = _free_port()
        command, env = server.command(port)
        running = _start(command, env, port, server.probe, workdir / f"{server.key}.log")
        try:
            context = server.prepare(running)
            for case in server.cases:
                path = case.path.format(order=context.get("order", ""))
                headers = _headers(case, context)
                _check(running, case, path, headers)
                script = workdir / f"{case.key}.lua"
                script.write_text(_lua(case.method, headers, case.body))
                url = running.base + path
                pid = running.process.pid
                if args.warmup:
                    _wrk(url, script, args.warmup, args.connections, pid, case.label)
                try:
                    sample = _wrk(url, script, args.seconds, args.connections, pid, case.label)
                except SystemExit as exc:
                    raise SystemExit(f"{exc}\nserver log:\n{_tail(running.log)}") from None
                results.setdefault(case.key, []).append(sample)
                print(
                    f"  {case.label}: {sample.rps:,.0f} req/s, p50 {sample.p50_ms:.2f} ms, "
                    f"p99 {sample.p99_ms:.2f} ms",
                    file=sys.stderr,
                )
        finally:
            _stop(running)


GOALS: list[tuple[str, str, str, float]] = [
    # (label, numerator case, denominator case, goal)
    *[
        (f"{db}: `/me` ÷ the Express stack's `/me`", f"{db}.me", "express.me", 1.0)
        for db in ("sqlite", "postgres")
    ],
    *[
        (f"{db}: `/me` ÷ the Python assembly's `/me`", f"{db}.me", "assembly.me", 2.0)
        for db in ("sqlite", "postgres")
    ],
    *[
        (f"{db}: `/me` ÷ the tuned assembly's `/me`", f"{db}.me", "assembly-tuned.me", 0.0)
        for db in ("sqlite", "postgres")
    ],
    *[
        (f"{db}: {what} ÷ `/me`", f"{db}.{case}", f"{db}.me", goal)
        for db in ("sqlite", "postgres")
        for case, what, goal in (
            ("get", "`GET /api/v1/orders/{id}`", 0.8),
            ("list", "list 20", 0.5),
            ("post", "`POST`", 0.5),
        )
    ],
    ("the stack ÷ bare Starlette (ping)", "stack.ping", "starlette.ping", 0.0),
]


def _fmt_range(values: list[float], text: str) -> str:
    return f"{text.format(min(values))}–{text.format(max(values))}"


def table(cases: list[Case], results: dict[str, list[Sample]]) -> list[str]:
    lines = [
        "| case | requests/s (median) | rounds | p50 ms | p99 ms | server CPU µs/request |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        samples = results.get(case.key)
        if not samples:
            continue
        rps = [s.rps for s in samples]
        cpus = [s.cpu_us for s in samples if s.cpu_us is not None]
        cpu = f"{statistics.median(cpus):,.0f}" if cpus else "—"
        lines.append(
            f"| {case.label} | {statistics.median(rps):,.0f} | {_fmt_range(rps, '{:,.0f}')} "
            f"| {statistics.median(s.p50_ms for s in samples):.2f} "
            f"| {statistics.median(s.p99_ms for s in samples):.2f} | {cpu} |"
        )
    return lines


def goals(results: dict[str, list[Sample]]) -> list[str]:
    lines = [
        "| ratio | requests/s (median of rounds) | rounds | by server CPU/request | goal | met |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for label, top, bottom, goal in GOALS:
        if top not in results or bottom not in results:
            continue
        pairs = list(zip(results[top], results[bottom], strict=False))
        ratios = [a.rps / b.rps for a, b in pairs if b.rps]
        mid = statistics.median(ratios)
        # The inverse ratio of CPU per request: what requests/s would give if each server had
        # its core to itself (on a loaded machine, the scheduler's shares decide requests/s).
        cpu = [b.cpu_us / a.cpu_us for a, b in pairs if a.cpu_us and b.cpu_us]
        by_cpu = f"{statistics.median(cpu):.2f}×" if cpu else "—"
        met = "—" if not goal else ("yes" if mid >= goal else "**no**")
        shown = f"≥ {goal:.1f}×" if goal else "—"
        spread = _fmt_range(ratios, "{:.2f}")
        lines.append(f"| {label} | {mid:.2f}× | {spread} | {by_cpu} | {shown} | {met} |")
    return lines


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def machine(postgres: bool) -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    node = "absent"
    if shutil.which("node"):
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    express_versions = []
    lock = PEERS / "express" / "package-lock.json"
    if lock.exists():
        packages = json.loads(lock.read_text()).get("packages", {})
        for name in ("express", "helmet", "cors", "express-rate-limit", "express-slow-down",
                     "jsonwebtoken"):  # fmt: skip
            version = packages.get(f"node_modules/{name}", {}).get("version", "?")
            express_versions.append(f"{name} {version}")
    pg = asyncio.run(_pg_admin("SHOW server_version")) if postgres else "not running"
    ours = ("starlette", "fastapi", "uvicorn", "uvloop", "httptools", "pydantic", "sqlalchemy",
            "aiosqlite", "asyncpg", "pyjwt", "cryptography")  # fmt: skip
    return [
        f"- CPU: {cpu}; {os.cpu_count()} cores; kernel {platform.release()}",
        f"- Python {platform.python_version()}; bastion commit {commit or '?'}; "
        + ", ".join(f"{name} {_version(name)}" for name in ours),
        f"- SQLite {sqlite3.sqlite_version}; PostgreSQL {pg}",
        f"- Node {node}; " + ", ".join(express_versions),
        "- Python assembly: " + ", ".join(
            line.strip() for line in PEER_REQUIREMENTS.read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per case")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk before each case")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--only", help="comma-separated servers to run (starlette, stack, express, assembly, "
        "assembly-tuned, bastion-sqlite, bastion-postgres)",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--no-output", action="store_true", help="print, do not write the file")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bastion-bench-")))
        tokens = Tokens(workdir)
        servers = _layers()
        servers.append(_node_peer(tokens))
        servers.extend(_python_peers(tokens))
        servers.append(_bastion("sqlite", workdir / "sqlite", None))
        postgres = _postgres_up()
        if postgres:
            url = stack.enter_context(postgres_database())
            servers.append(_bastion("postgres", workdir / "postgres", url))
        else:
            notes.append("PostgreSQL is not running on 127.0.0.1:5432: its cases are skipped.")
        if args.only:
            wanted = {name.strip() for name in args.only.split(",")}
            servers = [s for s in servers if s.key in wanted]
        for server in servers:
            if server.skip:
                notes.append(server.skip)
                print(server.skip, file=sys.stderr)
        servers = [s for s in servers if not s.skip]
        results: dict[str, list[Sample]] = {}
        load_before = os.getloadavg()
        started = datetime.now(UTC)
        for number in range(args.rounds):
            print(f"round {number + 1}/{args.rounds}", file=sys.stderr)
            run_round(servers, args, workdir, results)
        load_after = os.getloadavg()
        description = machine(postgres)
    cases = [case for server in servers for case in server.cases]
    conditions = (
        f"{args.rounds} interleaved rounds; wrk -t1 -c{args.connections} -d{args.seconds}s on "
        f"core {LOAD_CORE} after {args.warmup} s of warm-up, each server alone on core "
        f"{SERVER_CORE}; loopback, plain HTTP. Load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after."
    )
    lines = [
        "# bench/run results",
        "",
        f"Measured {started:%Y-%m-%d %H:%M} UTC with `{' '.join(['bench/run', *sys.argv[1:]])}`. "
        + conditions,
        "",
        *description,
        "",
        *table(cases, results),
        "",
        "Goals (each ratio computed round by round, then the median):",
        "",
        *goals(results),
        *([""] + [f"- {note}" for note in notes] if notes else []),
        "",
    ]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    if not args.no_output:
        args.output.write_text(text)
        print(f"written to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
