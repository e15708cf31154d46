"""`bastion serve` as a user runs it: a real subprocess, real TLS, real sockets."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bastion.server.tls import ensure_self_signed
from tests.conftest import Server, start_server
from tests.support import free_port, wait_until

pytestmark = pytest.mark.integration


def _client_context(
    server: Server,
    *,
    version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(server.cert_path))
    if version is not None:
        with warnings.catch_warnings():  # setting TLS 1.0/1.1 warns: that is the point here
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = version
            ctx.maximum_version = version
    if ciphers is not None or (version is not None and version < ssl.TLSVersion.TLSv1_2):
        # Let this client *offer* legacy protocols and suites; the server must refuse them.
        ctx.set_ciphers((ciphers or "ALL") + ":@SECLEVEL=0")
    return ctx


def _handshake(port: int, ctx: ssl.SSLContext) -> tuple[str | None, str | None]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        cipher = tls.cipher()
        return tls.version(), cipher[0] if cipher else None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("serve"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def permissive_tls_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A deliberately weak TLS server: proves this client *can* speak what bastion refuses."""
    paths = ensure_self_signed(tmp_path_factory.mktemp("weak"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.load_cert_chain(paths.cert, paths.key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def loop() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join(2)
    listener.close()


def test_healthz_over_verified_tls(server: Server) -> None:
    with server.client() as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "ratelimit_store": "ok"}
    assert "server" not in response.headers


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_modern_protocols_are_accepted(server: Server, version: ssl.TLSVersion) -> None:
    negotiated, _cipher = _handshake(server.port, _client_context(server, version=version))
    assert negotiated == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_legacy_protocols_are_refused(
    server: Server, permissive_tls_port: int, version: ssl.TLSVersion
) -> None:
    probe = _client_context(server, version=version)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    try:
        negotiated, _ = _handshake(permissive_tls_port, probe)
    except ssl.SSLError as exc:
        pytest.skip(f"this OpenSSL cannot speak {version.name} even to a permissive server: {exc}")
    assert negotiated is not None
    with pytest.raises(ssl.SSLError):
        _handshake(server.port, probe)


@pytest.mark.parametrize(
    "cipher",
    ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "AES128-GCM-SHA256"],
    ids=["cbc-sha1", "cbc-sha384", "rsa-kex-no-forward-secrecy"],
)
def test_weak_tls12_suites_are_refused(server: Server, cipher: str) -> None:
    ctx = _client_context(server, version=ssl.TLSVersion.TLSv1_2, ciphers=cipher)
    with pytest.raises(ssl.SSLError):
        _handshake(server.port, ctx)


def test_tls12_negotiates_ecdhe_aead(server: Server) -> None:
    _, cipher = _handshake(server.port, _client_context(server, version=ssl.TLSVersion.TLSv1_2))
    assert (
        cipher is not None
        and cipher.startswith("ECDHE-")
        and ("GCM" in cipher or "CHACHA" in cipher)
    )


def test_plain_http_get_and_head_redirect_to_https(server: Server) -> None:
    for method in ("GET", "HEAD"):
        response = httpx.request(method, f"{server.http_url}/api/v1/orders?limit=5&x=%2F")
        assert response.status_code == 301
        assert response.headers["location"] == (
            f"https://127.0.0.1:{server.port}/api/v1/orders?limit=5&x=%2F"
        )
        assert "strict-transport-security" not in response.headers


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_plain_http_with_other_methods_is_refused_not_redirected(
    server: Server, method: str
) -> None:
    # A body sent over plain HTTP is already exposed; a redirect would make clients re-send it.
    response = httpx.request(
        method, f"{server.http_url}/api/v1/auth/login", json={"email": "a@b.c", "password": "x"}
    )
    assert response.status_code == 403
    assert response.json()["error"] == "HTTPS required"
    assert "location" not in response.headers


def test_spoofed_forwarded_proto_does_not_fake_https(server: Server) -> None:
    # uvicorn would believe X-Forwarded-Proto from 127.0.0.1 by default; bastion must not.
    response = httpx.post(
        f"{server.http_url}/api/v1/auth/login",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"},
        json={},
    )
    assert response.status_code == 403


def test_redirect_listener_refuses_a_hostile_host_header(server: Server) -> None:
    response = httpx.get(f"{server.http_url}/x", headers={"Host": "evil.example/@"})
    assert response.status_code == 400
    assert "location" not in response.headers


def _run_cli(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    full_env["BASTION_DATA_DIR"] = str(tmp_path / "data")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bastion", *args],
        env=full_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "args", "needle"),
    [
        ({"BASTION_API_LIMIT": "many"}, [], "BASTION_API_LIMIT"),
        ({"BASTION_JWT_ALG": "none"}, [], "BASTION_JWT_ALG"),
        ({"BASTION_TRUSTED_PROXIES": "*"}, [], "BASTION_TRUSTED_PROXIES"),
        ({}, ["--workers", "0"], "BASTION_WORKERS"),
        ({}, ["--port", "x"], "--port"),
        ({}, ["--cert", "/nonexistent.pem"], "--cert/--key"),
    ],
)
def test_bad_settings_stop_the_start_with_one_line(
    tmp_path: Path, env: dict[str, str], args: list[str], needle: str
) -> None:
    result = _run_cli(tmp_path, "serve", "--port", str(free_port()), *args, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 3, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_a_busy_port_is_one_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = _run_cli(tmp_path, "serve", "--port", str(port), "--http-port", "0")
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_the_server_cleanly(tmp_path: Path, sig: int) -> None:
    srv = start_server(tmp_path)
    assert srv.stop(sig) == 0
    assert "Traceback" not in srv.log()


def test_several_workers_serve_and_stop_cleanly(tmp_path: Path) -> None:
    srv = start_server(tmp_path, args=["--workers", "2"])
    try:
        with srv.client() as client:
            assert all(client.get("/healthz").status_code == 200 for _ in range(20))
    finally:
        assert srv.stop() == 0
    assert "Traceback" not in srv.log()


def test_own_certificate_is_served(tmp_path: Path) -> None:
    mine = ensure_self_signed(tmp_path / "mine")
    srv = start_server(tmp_path, args=["--cert", str(mine.cert), "--key", str(mine.key)])
    try:
        response = httpx.get(
            f"{srv.url}/healthz", verify=ssl.create_default_context(cafile=str(mine.cert))
        )
        assert response.status_code == 200
        assert not (srv.data_dir / "tls").exists()
    finally:
        srv.stop()


def test_insecure_http_says_so_loudly(tmp_path: Path) -> None:
    srv = start_server(tmp_path, insecure_http=True)
    try:
        assert httpx.get(f"{srv.url}/healthz").status_code == 200
        wait_until(lambda: "WARNING: --insecure-http" in srv.log(), what="the warning banner")
    finally:
        srv.stop()


def test_certificate_and_key_are_created_private_and_reused(tmp_path: Path) -> None:
    data = tmp_path / "shared-data"
    first = start_server(tmp_path, data_dir=data)
    first.stop()
    cert = (data / "tls" / "cert.pem").read_bytes()
    assert oct((data / "tls" / "key.pem").stat().st_mode & 0o777) == "0o600"
    second = start_server(tmp_path, data_dir=data)
    second.stop()
    assert (data / "tls" / "cert.pem").read_bytes() == cert
