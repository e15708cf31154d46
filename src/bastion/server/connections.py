"""Accepting connections: caps per client address and per process, and the TLS handshake.

Why bastion accepts connections itself instead of ``loop.create_server``: the caps must hold
before anything costs the server. A connection over a cap is closed the moment it is
accepted — before a TLS handshake (an ECDSA signature), before a protocol object, before a
byte is read — and the count includes connections still in their handshake, which the event
loop's server would hide from the HTTP protocol until the handshake is done. The handshake
is bounded by the header timeout (the contract counts it in the 10 s a client has to send
its head), and each protocol learns when its connection was accepted, so the head deadline
starts there.

The client address is the peer address: forwarding headers are not read before a request
(the contract says so), and an IPv4 client reaching an IPv6 socket counts under its IPv4
address. Refused connections are logged as rate-limited warnings (at most one line per
reason every 10 s, with the count of those not logged), so a flood cannot flood the log.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Connection", "ConnectionCaps", "Listener", "WarningThrottle"]

log = logging.getLogger("bastion.server")

# Out of file descriptors or kernel memory: accepting again at once would spin.
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_BATCH = 64  # connections accepted per wake-up (as asyncio's own server does)
_ACCEPT_PAUSE = 0.5  # seconds without accepting after running out of descriptors
# After a close, a TLS peer has this long to answer close_notify before the socket is dropped.
TLS_SHUTDOWN_TIMEOUT = 2.0


class WarningThrottle:
    """At most one warning per *key* every *interval* seconds; the rest are counted."""

    def __init__(self, logger: logging.Logger = log, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warn(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return
        skipped = self._skipped.pop(key, 0)
        self._last[key] = now
        suffix = f" ({skipped} more since the last warning)" if skipped else ""
        self.logger.warning(message + suffix, *args)


@dataclass(eq=False, slots=True)
class Connection:
    """One admitted connection: when it was accepted, and its place under the caps."""

    caps: ConnectionCaps | None
    address: str
    accepted_at: float  # event-loop time
    released: bool = field(default=False)

    def release(self) -> None:
        """Give the connection's place back (idempotent: every way out may call it)."""
        if not self.released and self.caps is not None:
            self.released = True
            self.caps.release(self.address)


class ConnectionCaps:
    """Open connections per client address and in total, for one process (all listeners)."""

    def __init__(self, *, per_client: int, total: int, throttle: WarningThrottle | None = None):
        self.per_client = per_client
        self.total = total
        self.open = 0
        self.by_address: dict[str, int] = {}
        self.throttle = throttle or WarningThrottle()

    def admit(self, address: str, accepted_at: float) -> Connection | None:
        """A :class:`Connection` holding a place, or None (and a warning) over either cap."""
        if self.open >= self.total:
            self.throttle.warn(
                "total",
                "connection from %s closed: %d connections open in this process "
                "(BASTION_MAX_CONNECTIONS)",
                address,
                self.open,
            )
            return None
        count = self.by_address.get(address, 0)
        if count >= self.per_client:
            self.throttle.warn(
                "per-client",
                "connection from %s closed: %d connections open from that address "
                "(BASTION_MAX_CONNECTIONS_PER_CLIENT)",
                address,
                count,
            )
            return None
        self.by_address[address] = count + 1
        self.open += 1
        return Connection(self, address, accepted_at)

    def release(self, address: str) -> None:
        self.open -= 1
        count = self.by_address[address] - 1
        if count:
            self.by_address[address] = count
        else:
            del self.by_address[address]  # no entry per address ever seen: bounded memory


def client_address(peer: Any) -> str:
    """The address connections are counted under (IPv4-mapped IPv6 as IPv4)."""
    host = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
    if host.startswith("::ffff:"):
        try:
            mapped = ipaddress.IPv6Address(host).ipv4_mapped
        except ValueError:
            return host
        if mapped is not None:
            return str(mapped)
    return host


ProtocolFactory = Callable[..., asyncio.Protocol]


class Listener:
    """Accepts on a bound socket, applies the caps, starts TLS, hands over to the protocol.

    Looks like an ``asyncio.Server`` to uvicorn's shutdown (``close`` and ``wait_closed``).
    *protocol_factory* is called with ``connection=`` (a :class:`Connection`).
    """

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: ProtocolFactory,
        caps: ConnectionCaps,
        *,
        ssl_context: ssl.SSLContext | None,
        handshake_timeout: float,
    ) -> None:
        self.sock = sock
        self.protocol_factory = protocol_factory
        self.caps = caps
        self.ssl_context = ssl_context
        self.handshake_timeout = handshake_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: set[asyncio.Task[None]] = set()
        self._serving = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        self._serving = True
        self._loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting, and close this process's copy of the listening socket; abandon
        connections still in their TLS handshake.

        Closing the socket (not only no longer accepting from it) is what makes a shutting
        down server refuse new connections: a socket left listening would let the kernel
        complete handshakes into its backlog, and those clients would wait, unanswered, for
        the whole graceful-shutdown period. The kernel refuses once every process holding
        the socket (the workers, and their parent, ``serve._supervise``) has closed it.
        """
        if self._serving and self._loop is not None:
            self._serving = False
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
        for task in list(self._starting):
            task.cancel()

    async def wait_closed(self) -> None:
        if self._starting:
            await asyncio.wait(list(self._starting))

    def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRORS:
                    raise
                self.caps.throttle.warn(
                    "accept", "cannot accept connections: %s; pausing %.1f s", exc, _ACCEPT_PAUSE
                )
                loop.remove_reader(self.sock.fileno())
                loop.call_later(_ACCEPT_PAUSE, self._resume)
                return
            connection = self.caps.admit(client_address(peer), loop.time())
            if connection is None:
                conn.close()  # at once: no handshake, no protocol, nothing read
                continue
            task = loop.create_task(self._start(conn, connection))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    def _resume(self) -> None:
        if self._serving and self._loop is not None:
            self._loop.add_reader(self.sock.fileno(), self._accept)

    async def _start(self, conn: socket.socket, connection: Connection) -> None:
        loop = asyncio.get_running_loop()
        conn.setblocking(False)

        def protocol() -> asyncio.Protocol:
            return self.protocol_factory(connection=connection)

        try:
            if self.ssl_context is None:
                await loop.connect_accepted_socket(protocol, conn)
            else:
                await loop.connect_accepted_socket(
                    protocol,
                    conn,
                    ssl=self.ssl_context,
                    ssl_handshake_timeout=self.handshake_timeout,
                    ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT,
                )
        except BaseException as exc:
            # A failed or timed-out handshake never reaches the protocol: give the place back.
            connection.release()
            conn.close()
            if not isinstance(exc, Exception):
                raise
            log.debug("connection from %s not started: %r", connection.address, exc)
