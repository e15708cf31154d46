"""The Redis store: the sliding log as a sorted set, one Lua script per decision.

Why it is exact across processes and hosts: a decision is one ``EVALSHA`` of
``sliding_log.lua``; Redis runs a script atomically, so trimming, counting and recording are
one step no matter how many servers share the store. The instant comes from the Redis
server's clock by default, so hosts with skewed clocks still agree (a ``clock`` can be
injected for tests). Keys are ``<prefix>{<rule>:<client>}``: the hash tag keeps a key's slot
stable on Redis Cluster.

Why it manages its own connections instead of calling ``Redis.execute_command``: a decision
must cost about one network round trip. redis-py's generic path (command lookup, response
callbacks, metrics hooks, a ``wait_for`` task per write when ``socket_timeout`` is set)
costs a quarter of a loopback round trip. Here a decision takes an idle redis-py
``Connection`` (which still does the connecting, handshake and RESP parsing), writes one
packed ``EVALSHA`` whose constant part is prepared once per rate, reads one integer reply,
and puts the connection back; one ``asyncio.timeout`` bounds the whole exchange.

Failure handling: every backend failure becomes :class:`~bastion.errors.StoreError` (the
middleware then fails open or closed per rule). A connection that fails is dropped; the next
call dials again, so the store recovers by itself when Redis returns. A connection that was
already open and breaks (Redis restarted) is retried once on a fresh one, and a ``NOSCRIPT``
reply (script cache flushed by a restart) reloads the script and retries.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from importlib import resources
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from bastion.errors import ConfigError, StoreError
from bastion.ratelimit.policy import Rate
from bastion.ratelimit.store import Decision

__all__ = ["SCRIPT", "RedisStore"]

SCRIPT = resources.files("bastion.ratelimit").joinpath("sliding_log.lua").read_text()

_MAX_PACKED = 2**53  # Lua numbers are doubles: integers are exact below 2**53


def _bulk(value: bytes) -> bytes:
    """One RESP bulk string (the request encoding every Redis command uses)."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


class RedisStore:
    """Sliding-log store shared by every process that points at the same Redis."""

    def __init__(
        self,
        redis: str | Redis,
        *,
        prefix: str = "bastion:rl:",
        clock: Callable[[], float] | None = None,
        max_connections: int = 32,
        timeout: float = 1.0,
    ) -> None:
        """*redis* is a URL (``redis://host:6379/0``, ``rediss://…``, ``unix://…``) or a client
        whose connection settings are reused. *clock* (seconds) replaces the server clock;
        *timeout* bounds each exchange, connecting included, so an unreachable Redis costs a
        request at most that long before the rule's failure policy applies."""
        if not isinstance(prefix, str) or any(c in prefix for c in "{}\r\n"):
            raise ConfigError("prefix", "must be a string without braces or line breaks")
        if not isinstance(max_connections, int) or max_connections < 1:
            raise ConfigError("max_connections", "must be a positive integer")
        if not isinstance(timeout, int | float) or not 0 < timeout <= 60:
            raise ConfigError("timeout", "must be between 0 and 60 seconds")
        if clock is not None and not callable(clock):
            raise ConfigError("clock", "must be a callable returning seconds")
        overrides: dict[str, Any] = {
            "socket_timeout": None,  # one asyncio.timeout bounds the exchange instead
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),  # retries are decided here, knowing what failed
        }
        if isinstance(redis, str):
            try:
                factory = ConnectionPool.from_url(redis, **overrides)
            except (ValueError, TypeError) as exc:
                raise ConfigError("redis_url", f"not a usable Redis URL ({exc})") from None
            kwargs = dict(factory.connection_kwargs)
            self._connection_class = factory.connection_class
        else:
            pool = redis.connection_pool
            kwargs = {**pool.connection_kwargs, **overrides}
            self._connection_class = pool.connection_class
        self._connection_kwargs = kwargs
        self.prefix = prefix
        self.timeout = float(timeout)
        self._clock = clock
        self._idle: list[AbstractConnection] = []
        self._waiters: deque[asyncio.Future[AbstractConnection]] = deque()
        self._opened = 0
        self._max_connections = max_connections
        self._head = b""  # b"*9 EVALSHA <sha> 1" once the script is loaded
        self._specs: dict[Rate, tuple[bytes, bytes, bool, int]] = {}
        self._token_prefix = os.urandom(6).hex().encode() + b":"
        self._seq = itertools.count(1)

    # -- the store protocol ----------------------------------------------------------------

    async def hit(self, key: str, rate: Rate) -> Decision:
        """Charge *key* if *rate* allows: one ``EVALSHA`` round trip."""
        spec = self._specs.get(rate)
        if spec is None:
            spec = self._prepare(rate)
        limit_window, mode, packed_reply, base = spec
        token = b"%s%x" % (self._token_prefix, next(self._seq))
        clock = self._clock
        now = b"" if clock is None else b"%d" % round(clock() * 1_000_000)
        full_key = f"{self.prefix}{{{key}}}".encode()
        # KEYS[1], then ARGV: limit, window, now, token, reply mode (see sliding_log.lua).
        args = b"$%d\r\n%s\r\n%s$%d\r\n%s\r\n$%d\r\n%s\r\n%s" % (
            len(full_key),
            full_key,
            limit_window,
            len(now),
            now,
            len(token),
            token,
            mode,
        )
        if self._head:
            try:
                reply = await self._call(self._head + args)
            except (_StaleConnection, _NoScript):
                reply = await self._evalsha_slowly(args)
        else:
            reply = await self._evalsha_slowly(args)
        if packed_reply:
            allowed = reply > 0
            reset_ms, used = divmod(reply if allowed else -reply, base)
        else:
            allowed, used, reset_ms = reply[0] == 1, reply[1], reply[2]
        return (allowed, used, reset_ms / 1000, token if allowed else None)

    async def refund(self, key: str, rate: Rate, token: Any) -> None:
        """``ZREM`` the charge's token: atomic, and a no-op once it expired or was refunded."""
        if token is None:
            return
        full_key = f"{self.prefix}{{{key}}}".encode()
        await self._call_retrying(b"*3\r\n$4\r\nZREM\r\n" + _bulk(full_key) + _bulk(token))

    async def ping(self) -> bool:
        try:
            return bool(await self._call_retrying(b"*1\r\n$4\r\nPING\r\n"))
        except StoreError:
            return False

    async def aclose(self) -> None:
        await self._close_idle()

    # -- wire ------------------------------------------------------------------------------

    def _prepare(self, rate: Rate) -> tuple[bytes, bytes, bool, int]:
        """This rate's constant arguments, encoded once: limit and window, reply mode."""
        base = rate.limit + 1
        packed_reply = (rate.window * 1000 + 1) * base < _MAX_PACKED
        limit_window = _bulk(b"%d" % rate.limit) + _bulk(b"%d" % (rate.window * 1_000_000))
        spec = (limit_window, _bulk(b"p" if packed_reply else b"a"), packed_reply, base)
        self._specs[rate] = spec
        return spec

    async def _evalsha_slowly(self, args: bytes) -> Any:
        """The script call after a failure: reload the script and redial as needed."""
        for _ in range(3):
            if not self._head:
                sha = await self._call_retrying(
                    b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n" + _bulk(SCRIPT.encode())
                )
                sha = sha if isinstance(sha, bytes) else str(sha).encode()
                self._head = b"*9\r\n$7\r\nEVALSHA\r\n" + _bulk(sha) + b"$1\r\n1\r\n"
            try:
                return await self._call_retrying(self._head + args)
            except _NoScript:
                self._head = b""  # the script cache was flushed (a restart): load it again
        raise StoreError("Redis keeps forgetting the rate-limit script")

    async def _call_retrying(self, command: bytes) -> Any:
        """One exchange; if a connection that was open breaks, once more on a fresh one."""
        try:
            return await self._call(command)
        except _StaleConnection as stale:
            # The server went away since these connections were opened (a restart, a
            # failover): every idle one is as stale as this one, so they all dial afresh.
            await self._close_idle()
            try:
                return await self._call(command)
            except _StaleConnection as again:
                raise StoreError(f"Redis connection lost: {again.__cause__!r}") from stale

    async def _call(self, command: bytes) -> Any:
        """Write *command* on a connection and read its reply, all within the timeout."""
        conn: AbstractConnection | None = None
        was_open = False
        try:
            async with asyncio.timeout(self.timeout):
                if self._idle:
                    conn = self._idle.pop()
                elif self._opened < self._max_connections:
                    self._opened += 1
                    conn = self._connection_class(**self._connection_kwargs)
                else:
                    conn = await self._wait_for_connection()
                was_open = conn.is_connected
                await conn.send_packed_command(command, check_health=False)
                reply = await conn.read_response()
        except NoScriptError as exc:
            self._release(conn)  # an error reply leaves the connection in a clean state
            raise _NoScript() from exc
        except BaseException as exc:
            if conn is not None:
                # Unknown state (timeout mid-reply, cancellation, reset): close it, or the
                # next caller could read this request's reply. It dials again when reused.
                with suppress(Exception):
                    await conn.disconnect(nowait=True)  # nowait: no suspension point
                self._release(conn)
            if isinstance(exc, RedisConnectionError) and was_open:
                raise _StaleConnection() from exc
            if isinstance(exc, RedisError | OSError | TimeoutError):
                raise StoreError(f"Redis unavailable: {exc!r}") from exc
            raise
        self._release(conn)
        return reply

    async def _wait_for_connection(self) -> AbstractConnection:
        """All connections are busy: wait until one is handed back (bounded by the timeout)."""
        waiter: asyncio.Future[AbstractConnection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(waiter.result())  # handed over as we gave up: pass it on
            raise

    def _release(self, conn: AbstractConnection | None) -> None:
        if conn is None:
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    async def _close_idle(self) -> None:
        for conn in self._idle:
            with suppress(Exception):
                await conn.disconnect(nowait=True)


class _StaleConnection(Exception):
    """A connection that had worked broke: worth one retry on a new connection."""


class _NoScript(Exception):
    """Redis answered NOSCRIPT: its script cache is empty (restarted or flushed)."""
