"""``bastion serve``: the reference service over HTTPS, plus the plain-HTTP redirect listener.

Process model: the parent validates the settings, prepares the data directory (certificate,
signing keys, database schema) once, binds both listening sockets (so a busy port is one
clear line, not a traceback), then serves them itself (``--workers 1``) or hands them to N
spawned worker processes. Each worker runs two uvicorn servers in one event loop: the
hardened HTTPS one and the redirect one. SIGINT/SIGTERM stop everything gracefully.

uvicorn is told not to trust ``X-Forwarded-*`` (``proxy_headers=False``: forwarding is the
trusted-proxy layer's job) and not to announce itself (``server_header=False``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Iterator
from multiprocessing.context import SpawnProcess
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from bastion.config import Settings, load_settings
from bastion.errors import ConfigError
from bastion.http_protocol import ContractHttpToolsProtocol
from bastion.tls import TLS12_CIPHERS, ensure_self_signed, harden

log = logging.getLogger("bastion.serve")

INSECURE_BANNER = """\
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! WARNING: --insecure-http: serving PLAIN HTTP on {addr}.
!! Tokens, passwords and cookies cross the network unencrypted unless a
!! TLS-terminating proxy sits in front (list it in BASTION_TRUSTED_PROXIES).
!! Never expose this port directly.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("serve", help="run the reference orders API over HTTPS")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTPS port (default 8443)")
    p.add_argument("--http-port", type=int, help="plain-HTTP redirect port (default 8080; 0: off)")
    p.add_argument("--cert", type=Path, help="PEM certificate chain (with --key)")
    p.add_argument("--key", type=Path, help="PEM private key (with --cert)")
    p.add_argument(
        "--insecure-http",
        action="store_true",
        default=None,
        help="serve plain HTTP on --port, for use behind a TLS-terminating proxy only",
    )
    p.add_argument("--workers", type=int, help="worker processes (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(
        host=args.host,
        port=args.port,
        http_port=args.http_port,
        cert=args.cert,
        key=args.key,
        insecure_http=args.insecure_http,
        workers=args.workers,
    )
    if (settings.cert is None) != (settings.key is None):
        raise ConfigError("--cert/--key", "give both a certificate and its key, or neither")
    _configure_logging(settings)
    _export(settings)  # worker processes rebuild the settings from the environment
    prepare(settings)
    https_sock, http_sock = _bind(settings)
    if settings.insecure_http:
        print(INSECURE_BANNER.format(addr=f"{settings.host}:{settings.port}"), file=sys.stderr)
    scheme = "http" if settings.insecure_http else "https"
    log.info("bastion serving %s://%s:%d", scheme, _url_host(settings.host), settings.port)
    if http_sock is not None:
        log.info("redirecting http://%s:%d to HTTPS", _url_host(settings.host), settings.http_port)
    if settings.workers == 1:
        _run_loop(_serve_both(https_sock, http_sock))
        return 0
    return _supervise(settings.workers, https_sock, http_sock)


def prepare(settings: Settings) -> None:
    """One-time start-up work done by the parent before any worker exists."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not settings.insecure_http and settings.cert is None:
        ensure_self_signed(settings.data_dir / "tls")
    if settings.cert is not None and settings.key is not None:
        from bastion.tls import server_context

        server_context(settings.cert, settings.key)  # a bad pair fails here, in one line

    from bastion.service.main import prepare as prepare_service

    asyncio.run(prepare_service(settings))


def _tls_files(settings: Settings) -> tuple[str, str]:
    if settings.cert is not None and settings.key is not None:
        return str(settings.cert), str(settings.key)
    tls_dir = settings.data_dir / "tls"
    return str(tls_dir / "cert.pem"), str(tls_dir / "key.pem")


class HardenedConfig(uvicorn.Config):
    """uvicorn's Config, with bastion's TLS policy applied to the context it builds.

    uvicorn exposes ciphers but not the minimum protocol version; this subclass stays
    picklable, so spawned workers rebuild the same hardened context.
    """

    def load(self) -> None:
        super().load()
        if self.ssl is not None:
            harden(self.ssl)


class _Server(uvicorn.Server):
    """A uvicorn server whose signals are handled by bastion (two servers share a loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _configs(settings: Settings) -> tuple[uvicorn.Config, uvicorn.Config | None]:
    common: dict[str, Any] = {
        "proxy_headers": False,
        "server_header": False,
        "date_header": True,
        "access_log": False,
        "log_config": None,
        "http": ContractHttpToolsProtocol,
        "loop": "none",
        "timeout_graceful_shutdown": 10,
        "timeout_keep_alive": 5,
        "h11_max_incomplete_event_size": 16 * 1024,
    }
    tls: dict[str, Any] = {}
    if not settings.insecure_http:
        certfile, keyfile = _tls_files(settings)
        tls = {"ssl_certfile": certfile, "ssl_keyfile": keyfile, "ssl_ciphers": TLS12_CIPHERS}
    main = HardenedConfig(
        "bastion.service.main:factory", factory=True, lifespan="on", **common, **tls
    )
    redirect = None
    if not settings.insecure_http and settings.http_port:
        redirect = uvicorn.Config(
            "bastion.service.main:redirect_factory", factory=True, lifespan="off", **common
        )
    return main, redirect


async def _serve_both(https_sock: socket.socket, http_sock: socket.socket | None) -> None:
    settings = load_settings()
    main_config, redirect_config = _configs(settings)
    servers = [(_Server(main_config), https_sock)]
    if redirect_config is not None and http_sock is not None:
        servers.append((_Server(redirect_config), http_sock))

    def stop(sig: int, _frame: FrameType | None = None) -> None:
        for server, _sock in servers:
            if server.should_exit and sig == signal.SIGINT:
                server.force_exit = True
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    # If one listener stops (a signal, or a failure), the others must stop too.
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server, _sock in servers:
        server.should_exit = True
    await asyncio.wait(tasks)
    for task in tasks:
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    if any(server.started is False for server, _sock in servers):
        raise SystemExit(1)


def _worker(https_sock: socket.socket, http_sock: socket.socket | None) -> None:
    """Entry point of a spawned worker process."""
    _configure_logging(load_settings())
    _run_loop(_serve_both(https_sock, http_sock))


def _supervise(count: int, https_sock: socket.socket, http_sock: socket.socket | None) -> int:
    """Run *count* workers; restart one that dies; stop them all on SIGINT/SIGTERM."""
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def spawn() -> SpawnProcess:
        process = ctx.Process(target=_worker, args=(https_sock, http_sock), daemon=False)
        process.start()
        return process

    def stop(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    workers = [spawn() for _ in range(count)]
    while not stopping:
        for i, process in enumerate(workers):
            process.join(timeout=0.2 / count)
            if stopping:
                break
            if process.exitcode is not None:
                log.error("worker %d exited with %s; restarting it", process.pid, process.exitcode)
                workers[i] = spawn()
    for process in workers:
        if process.exitcode is None and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    for process in workers:
        process.join(timeout=15)
        if process.exitcode is None:
            process.kill()
    return 0


def _bind(settings: Settings) -> tuple[socket.socket, socket.socket | None]:
    https_sock = _listen(settings.host, settings.port, "BASTION_PORT (--port)")
    http_sock = None
    if not settings.insecure_http and settings.http_port:
        http_sock = _listen(settings.host, settings.http_port, "BASTION_HTTP_PORT (--http-port)")
    return https_sock, http_sock


def _listen(host: str, port: int, name: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(name, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _export(settings: Settings) -> None:
    """Put the effective settings that flags may have changed into the environment."""
    values: dict[str, Any] = {
        "HOST": settings.host,
        "PORT": settings.port,
        "HTTP_PORT": settings.http_port,
        "INSECURE_HTTP": str(settings.insecure_http).lower(),
        "WORKERS": settings.workers,
        "DATA_DIR": settings.data_dir.resolve(),
    }
    if settings.cert is not None and settings.key is not None:
        values["CERT"] = settings.cert.resolve()
        values["KEY"] = settings.key.resolve()
    for name, value in values.items():
        os.environ[f"BASTION_{name}"] = str(value)


def _configure_logging(settings: Settings) -> None:
    # One format for every line, uvicorn's lifecycle lines included (bastion.log.configure).
    from bastion.log import configure

    configure(settings.log_level)


def _run_loop(coro: Any) -> None:
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(coro)


def _loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return None
    return uvloop.new_event_loop


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


__all__ = ["HardenedConfig", "prepare", "register", "run"]
