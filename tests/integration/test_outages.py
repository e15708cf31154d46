"""Outages survived by a real `bastion serve`: its own Redis and PostgreSQL (started here, on
free ports, never the shared ones) broken under load, and SIGTERM in the middle of requests.

* Redis killed, then restarted on the same port: the configured fail policy holds (``auto``:
  the ``/api/`` limit fails open, the auth limit fails closed with 503), never a 500, and the
  limits come back without restarting bastion; ``/readyz`` says 503 meanwhile.
* PostgreSQL stopped: requests that need it answer ``503 {"error":"Service unavailable"}``
  with ``Retry-After``, never a 500; every order is either fully created or absent; the
  service recovers when PostgreSQL is back.
* SIGTERM with a request in flight: it finishes, new connections are refused, exit status 0.

Each scenario takes 10-30 s on two busy cores (a private PostgreSQL is an initdb).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.auth.key_encryption import generate
from tests.conftest import Server, start_server
from tests.support import free_port, require_program, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PASSWORD = "correct horse battery staple"
ORDER: dict[str, Any] = {
    "productId": "0b6a3f4e-52a5-4c3e-9d1c-3b2f8e6a7c10",
    "quantity": 2,
    "address": {"street": "1 Main St", "city": "Springfield", "country": "us"},
}
GENEROUS = {"BASTION_API_LIMIT": "1000000/15m", "BASTION_API_SLOWDOWN_AFTER": "1000000"}


class Load:
    """Threads sending *request* in a loop, recording every status (an exception: 0)."""

    def __init__(self, request: Callable[[httpx.Client], httpx.Response], server: Server) -> None:
        self.request = request
        self.server = server
        self.statuses: list[int] = []
        self.responses: list[httpx.Response] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def _run(self) -> None:
        with self.server.client() as client:
            while not self._stop.is_set():
                try:
                    response = self.request(client)
                except httpx.HTTPError:
                    self.statuses.append(0)
                    continue
                self.statuses.append(response.status_code)
                self.responses.append(response)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def count(self) -> int:
        return len(self.statuses)

    def wait_for_more(self, n: int, what: str) -> None:
        start = self.count()
        wait_until(lambda: self.count() >= start + n, timeout=60, what=what)


def _login(client: httpx.Client) -> dict[str, str]:
    email = f"o-{secrets.token_hex(5)}@example.test"
    assert client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


# --- Redis ------------------------------------------------------------------------------------


class OwnRedis:
    """A redis-server of this test's own (password, no persistence), restartable on its port."""

    def __init__(self, directory: Path) -> None:
        self.binary = require_program("redis-server", "the Redis outage")
        self.directory = directory
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly"]
        args += ["no", "--requirepass", self.password, "--dir", str(self.directory)]
        self.process = subprocess.Popen(
            [self.binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self._answers, timeout=15, what="redis-server")

    def _answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
            return b"PONG" in sock.recv(100)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no goodbye to the clients
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[OwnRedis]:
    own = OwnRedis(tmp_path)
    yield own
    own.stop()


def test_redis_killed_and_restarted_under_load(tmp_path: Path, redis_server: OwnRedis) -> None:
    server = start_server(
        tmp_path,
        env={**GENEROUS, "BASTION_REDIS_URL": redis_server.url, "BASTION_AUTH_LIMIT": "1000/15m"},
    )
    try:
        with server.client() as client:
            auth = _login(client)

        def order_list(c: httpx.Client) -> httpx.Response:
            return c.get("/api/v1/orders", headers=auth)

        def bad_login(c: httpx.Client) -> httpx.Response:
            body = {"email": "nobody@example.test", "password": "not the password!!"}
            return c.post("/api/v1/auth/login", json=body)

        with Load(order_list, server) as orders, Load(bad_login, server) as logins:
            orders.wait_for_more(20, "orders before the outage")
            redis_server.kill()
            with server.client() as probe:
                wait_until(
                    lambda: probe.get("/readyz").status_code == 503, timeout=20, what="readyz 503"
                )
                ready = probe.get("/readyz")
                assert ready.json()["details"] == {"ratelimit_store": ["down"]}
                assert ready.json()["error"] == "Service unavailable"
                assert probe.get("/healthz").json()["ratelimit_store"] == "down"
                during_orders, during_logins = orders.count(), logins.count()
                orders.wait_for_more(20, "orders during the outage")
                logins.wait_for_more(5, "logins during the outage")
                refused = bad_login(probe)
                assert refused.status_code == 503 and "retry-after" in refused.headers
            outage_orders = Counter(orders.statuses[during_orders:])
            outage_logins = Counter(logins.statuses[during_logins:])
            redis_server.start()
            with server.client() as probe:
                wait_until(
                    lambda: probe.get("/readyz").status_code == 200, timeout=30, what="recovery"
                )
                wait_until(lambda: bad_login(probe).status_code == 401, timeout=30, what="401")
            after_logins = logins.count()
            logins.wait_for_more(5, "logins after the recovery")
            after = Counter(logins.statuses[after_logins:])
        all_statuses = Counter(orders.statuses) + Counter(logins.statuses)
        print(f"redis outage: orders {dict(outage_orders)}, logins {dict(outage_logins)}")
        print(f"after recovery: logins {dict(after)}; overall {dict(all_statuses)}")
        assert 500 not in all_statuses and 0 not in all_statuses
        # auto: /api/ fails open (the orders keep being served) ...
        assert set(outage_orders) == {200}
        # ... and the auth limit fails closed (no password guessing while it cannot count).
        assert outage_logins[503] > 0 and set(outage_logins) <= {401, 503}
        assert set(after) == {401}
    finally:
        assert server.stop() == 0


# --- PostgreSQL -------------------------------------------------------------------------------


class OwnPostgres:
    """A PostgreSQL cluster of this test's own (initdb in a temporary directory)."""

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        binary = str(found[-1]) if found else "initdb"
        self.bin = Path(require_program(binary, "a private PostgreSQL")).parent
        # Not under pytest's tmp_path: as root, the cluster runs as postgres, which cannot
        # enter root's 0700 pytest directories.
        self.directory = Path(tempfile.mkdtemp(prefix="bastion-outage-pg-"))
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.directory), "-A", "trust", "-U", "postgres")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "bastion")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/bastion"

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.directory / "server.log")
        self._run("pg_ctl", "-D", str(self.directory), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.directory), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.directory / "postmaster.pid").exists()


@pytest.fixture
def postgres_server() -> Iterator[OwnPostgres]:
    if shutil.which("runuser") is None and os.geteuid() == 0:
        pytest.skip("runuser is needed to run initdb as root")
    own = OwnPostgres()
    try:
        yield own
    finally:
        if own.running():
            own.stop()
        shutil.rmtree(own.directory, ignore_errors=True)


def _all_orders(client: httpx.Client, auth: dict[str, str]) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    cursor = None
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/orders", headers=auth, params=params)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return items


@pytest.mark.postgres
def test_postgres_stopped_under_load(tmp_path: Path, postgres_server: OwnPostgres) -> None:
    env = {**GENEROUS, "BASTION_DATABASE_URL": postgres_server.url}
    env["BASTION_KEY_ENCRYPTION_KEY"] = generate()
    server = start_server(tmp_path, env=env)
    try:
        with server.client() as client:
            auth = _login(client)

        def create(c: httpx.Client) -> httpx.Response:
            return c.post("/api/v1/orders", headers=auth, json=ORDER)

        with Load(create, server) as load:
            load.wait_for_more(20, "orders before the outage")
            postgres_server.stop()
            with server.client() as probe:
                wait_until(
                    lambda: probe.get("/readyz").status_code == 503, timeout=20, what="readyz 503"
                )
                assert probe.get("/readyz").json()["details"] == {"database": ["down"]}
                mark = load.count()
                load.wait_for_more(10, "orders during the outage")
                during = Counter(load.statuses[mark:])
                refused = create(probe)
                assert refused.status_code == 503
                assert refused.json() == {
                    "error": "Service unavailable",
                    "requestId": refused.headers["x-request-id"],
                }
                assert refused.headers["retry-after"] == "5"
                me = probe.get("/api/v1/me", headers=auth)  # a read, on the direct path
                assert me.status_code == 503 and me.json()["error"] == "Service unavailable"
            postgres_server.start()
            with server.client() as probe:
                wait_until(lambda: create(probe).status_code == 201, timeout=30, what="recovery")
            # A write that meets a pooled connection PostgreSQL closed is not retried (its
            # outcome is unknown): one 503 per such connection, then fresh ones serve.
            wait_until(
                lambda: load.statuses[-6:] == [201] * 6, timeout=30, what="the load recovered"
            )
            mark = load.count()
            load.wait_for_more(10, "orders after the recovery")
            after = Counter(load.statuses[mark:])
        statuses = Counter(load.statuses)
        print(f"postgres outage: during {dict(during)}, after {dict(after)}, overall {statuses}")
        assert 500 not in statuses and 0 not in statuses
        assert set(statuses) <= {201, 503}
        assert set(during) == {503} and set(after) == {201}
        created = {r.json()["id"]: r.json() for r in load.responses if r.status_code == 201}
        with server.client() as client:
            stored = {order["id"]: order for order in _all_orders(client, auth)}
        # Every 201 is there, whole; anything else is an order whose 503 raced its commit
        # (at most one per in-flight request when PostgreSQL went away), whole as well.
        for order_id, order in created.items():
            assert stored[order_id] == order
        extra = set(stored) - set(created)
        assert len(extra) <= 2 + 1  # two load threads + the recovery probe's 201
        for order_id in extra:
            assert stored[order_id]["quantity"] == 2
            assert stored[order_id]["address"] == {**ORDER["address"], "country": "US"}
    finally:
        assert server.stop() == 0


# --- SIGTERM ----------------------------------------------------------------------------------


def _tls(server: Server) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(server.cert_path))
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


def _read_response(sock: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
    }
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of a body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def test_sigterm_lets_in_flight_requests_finish_and_exits_0(tmp_path: Path) -> None:
    server = start_server(tmp_path, env=GENEROUS)
    with server.client() as client:
        auth = _login(client)

    def healthz(c: httpx.Client) -> httpx.Response:
        return c.get("/healthz")

    body = json.dumps(ORDER).encode()
    in_flight = _tls(server)
    head = (
        f"POST /api/v1/orders HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: {auth['Authorization']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with Load(healthz, server) as load:
        load.wait_for_more(10, "load before the signal")
        in_flight.sendall(head + body[:10])  # the head and part of the body: mid-request
        # A complete exchange on another connection after those bytes were sent: the server's
        # one event loop has had them readable before it could answer this one.
        with server.client() as barrier:
            assert barrier.get("/healthz").status_code == 200
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            except ConnectionRefusedError:
                return True
            return False

        wait_until(refused, timeout=15, what="new connections refused")
        print(f"sigterm: new connections refused after {time.monotonic() - signalled:.2f} s")
        in_flight.sendall(body[10:])
        status, headers, payload = _read_response(in_flight)
    in_flight.close()
    assert status == 201, payload
    assert json.loads(payload)["quantity"] == 2
    assert headers.get("connection") == "close"
    server.process.wait(20)
    assert server.process.returncode == 0
    print(f"sigterm: in-flight POST answered {status}; load {dict(Counter(load.statuses))}")
    # The load saw answers, then refused connections (0): never a 500 or a cut response.
    assert set(load.statuses) <= {200, 0}
