"""The serve loop: bound sockets in, uvicorn servers with bastion's protocol and caps out.

Process model: the parent (``bastion serve``) binds every listening socket (so a busy port
is one clear line, not a traceback) and raises the open-file limit, then serves the sockets
itself (``--workers 1``) or hands them to N spawned worker processes, restarting one that
dies. Each process runs one uvicorn server per listener in one event loop — the HTTPS one and
the plain-HTTP redirect one — sharing one :class:`~bastion.server.connections.ConnectionCaps`
(the caps are per process, across listeners). SIGINT/SIGTERM stop everything gracefully.

A listener is a name, a bound socket and a uvicorn config (:func:`bind`, :func:`configs`):
adding one (a metrics port, say) is one entry in each.

uvicorn is told not to trust ``X-Forwarded-*`` (``proxy_headers=False``: forwarding is the
trusted-proxy layer's job), not to announce itself (``server_header=False``), and not to speak
WebSocket (``ws="none"``: the service has no WebSocket route, so a handshake is answered by the
stack as an ordinary request). Connections are accepted by :class:`Listener`, not by uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Iterator
from multiprocessing.context import SpawnProcess
from types import FrameType
from typing import Any

import uvicorn

from bastion.config import Settings, load_settings
from bastion.errors import ConfigError
from bastion.server.connections import ConnectionCaps, Listener
from bastion.server.files import open_file_budget
from bastion.server.limits import TransportLimits
from bastion.server.protocol import BastionHttpProtocol
from bastion.server.tls import TLS12_CIPHERS, harden

__all__ = [
    "HTTPS",
    "REDIRECT",
    "BastionConfig",
    "bind",
    "configs",
    "configure_logging",
    "serve",
]

log = logging.getLogger("bastion.serve")

HTTPS = "https"  # the API (plain HTTP with --insecure-http)
REDIRECT = "redirect"  # the plain-HTTP redirect listener


class BastionConfig(uvicorn.Config):
    """uvicorn's Config with bastion's TLS policy applied and the transport limits attached.

    uvicorn exposes ciphers but not the minimum protocol version; this subclass stays
    picklable, so spawned workers rebuild the same hardened context.
    """

    def __init__(self, *args: Any, transport_limits: TransportLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.transport_limits = transport_limits

    def load(self) -> None:
        super().load()
        if self.ssl is not None:
            harden(self.ssl)


class _Server(uvicorn.Server):
    """A uvicorn server that accepts through a :class:`Listener`; its signals are bastion's."""

    def __init__(self, config: BastionConfig, sock: socket.socket, caps: ConnectionCaps) -> None:
        super().__init__(config)
        self._sock = sock
        self._caps = caps

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn runs the lifespan and opens no listener of its own (no sockets); the
        # Listener is added to self.servers, so uvicorn's shutdown closes it first.
        await super().startup(sockets=[])
        if not self.started:
            return
        config = self.config
        factory = functools.partial(
            config.http_protocol_class,  # type: ignore[call-arg]
            config=config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        listener = Listener(
            self._sock,
            factory,
            self._caps,
            ssl_context=config.ssl,
            handshake_timeout=config.transport_limits.header_timeout,  # type: ignore[attr-defined]
        )
        listener.start()
        self.servers.append(listener)  # type: ignore[arg-type]


def _tls_files(settings: Settings) -> tuple[str, str]:
    if settings.cert is not None and settings.key is not None:
        return str(settings.cert), str(settings.key)
    tls_dir = settings.data_dir / "tls"
    return str(tls_dir / "cert.pem"), str(tls_dir / "key.pem")


def configs(settings: Settings) -> dict[str, BastionConfig]:
    """One uvicorn config per listener, by name."""
    common: dict[str, Any] = {
        "proxy_headers": False,
        "server_header": False,
        "date_header": True,
        "access_log": False,
        "log_config": None,
        "http": BastionHttpProtocol,
        "ws": "none",
        "loop": "none",
        "timeout_graceful_shutdown": 10,
        "timeout_keep_alive": settings.keepalive_timeout,
        "transport_limits": TransportLimits.from_settings(settings),
    }
    tls: dict[str, Any] = {}
    if not settings.insecure_http:
        certfile, keyfile = _tls_files(settings)
        tls = {"ssl_certfile": certfile, "ssl_keyfile": keyfile, "ssl_ciphers": TLS12_CIPHERS}
    out = {
        HTTPS: BastionConfig(
            "bastion.service.main:factory", factory=True, lifespan="on", **common, **tls
        )
    }
    if not settings.insecure_http and settings.http_port:
        out[REDIRECT] = BastionConfig(
            "bastion.service.main:redirect_factory", factory=True, lifespan="off", **common
        )
    return out


def bind(settings: Settings) -> dict[str, socket.socket]:
    """The listening sockets, by listener name (a busy port: one ConfigError line)."""
    sockets = {HTTPS: _listen(settings.host, settings.port, "BASTION_PORT (--port)")}
    if not settings.insecure_http and settings.http_port:
        sockets[REDIRECT] = _listen(
            settings.host, settings.http_port, "BASTION_HTTP_PORT (--http-port)"
        )
    return sockets


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


def serve(settings: Settings, sockets: dict[str, socket.socket]) -> int:
    """Serve *sockets* in this process or in ``settings.workers`` spawned workers."""
    budget = open_file_budget(settings.max_connections)
    if budget.warning:
        log.warning("%s", budget.warning)
    if settings.workers == 1:
        _run_loop(_serve_all(sockets))
        return 0
    return _supervise(settings.workers, sockets)


def process_caps(settings: Settings) -> ConnectionCaps:
    """The caps of this process: the settings, within what the open-file limit allows."""
    budget = open_file_budget(settings.max_connections, raise_limit=False)
    return ConnectionCaps(
        per_client=settings.max_connections_per_client,
        total=min(settings.max_connections, budget.connections),
    )


async def _serve_all(sockets: dict[str, socket.socket]) -> None:
    settings = load_settings()
    caps = process_caps(settings)
    by_name = configs(settings)
    servers = [_Server(by_name[name], sock, caps) for name, sock in sockets.items()]

    def stop(sig: int, _frame: FrameType | None = None) -> None:
        for server in servers:
            if server.should_exit and sig == signal.SIGINT:
                server.force_exit = True
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    # If one listener stops (a signal, or a failure), the others must stop too.
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server in servers:
        server.should_exit = True
    await asyncio.wait(tasks)
    for task in tasks:
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    if any(server.started is False for server in servers):
        raise SystemExit(1)


def _worker(sockets: dict[str, socket.socket]) -> None:
    """Entry point of a spawned worker process."""
    configure_logging(load_settings())
    _run_loop(_serve_all(sockets))


def _supervise(count: int, sockets: dict[str, socket.socket]) -> int:
    """Run *count* workers; restart one that dies; stop them all on SIGINT/SIGTERM."""
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def spawn() -> SpawnProcess:
        process = ctx.Process(target=_worker, args=(sockets,), daemon=False)
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
                _forget_worker(process.pid)
                workers[i] = spawn()
    for sock in sockets.values():
        sock.close()  # the workers close theirs as they stop: new connections are refused
    for process in workers:
        if process.exitcode is None and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    for process in workers:
        process.join(timeout=15)
        if process.exitcode is None:
            process.kill()
    return 0


def _forget_worker(pid: int | None) -> None:
    """Drop a dead worker's live gauges from the metrics (its counters stay counted)."""
    if pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from bastion.service.metrics import mark_process_dead

        mark_process_dead(pid)


def configure_logging(settings: Settings) -> None:
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
