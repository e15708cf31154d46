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
        self._slots = asyncio.Semaphore(max_connections)
        self._sha = b""
        self._packed: dict[Rate, tuple[bytes, bool, int]] = {}
        self._token_prefix = os.urandom(6).hex().encode() + b":"
        self._seq = itertools.count(1)

    # -- the store protocol ----------------------------------------------------------------

    async def hit(self, key: str, rate: Rate) -> Decision:
        """Charge *key* if *rate* allows: one ``EVALSHA`` round trip."""
        spec = self._packed.get(rate)
        if spec is None:
            spec = self._prepare(rate)
        tail, packed_reply, base = spec
        token = b"%s%x" % (self._token_prefix, next(self._seq))
        clock = self._clock
        now = b"%d" % round(clock() * 1_000_000) if clock is not None else b""
        reply = await self._evalsha(
            _bulk(f"{self.prefix}{{{key}}}".encode()) + tail + _bulk(now) + _bulk(token),
            packed_reply,
        )
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
        command = b"*3\r\n$4\r\nZREM\r\n" + _bulk(f"{self.prefix}{{{key}}}".encode()) + _bulk(token)
        await self._call_retrying(command)

    async def ping(self) -> bool:
        try:
            return bool(await self._call_retrying(b"*1\r\n$4\r\nPING\r\n"))
        except StoreError:
            return False

    async def aclose(self) -> None:
        await self._drop_idle()

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            with suppress(Exception):
                await conn.disconnect(nowait=True)

    # -- wire ------------------------------------------------------------------------------

    def _prepare(self, rate: Rate) -> tuple[bytes, bool, int]:
        """The constant part of this rate's ``EVALSHA`` arguments, and its reply encoding."""
        limit, window_us = rate.limit, rate.window * 1_000_000
        base = limit + 1
        packed_reply = (rate.window * 1000 + 1) * base < _MAX_PACKED
        tail = _bulk(b"%d" % limit) + _bulk(b"%d" % window_us)
        spec = (tail, packed_reply, base)
        self._packed[rate] = spec
        return spec

    async def _evalsha(self, args: bytes, packed_reply: bool) -> Any:
        """Run the script with *args* (key, limit, window, now, token), loading it if needed."""
        mode = _bulk(b"p" if packed_reply else b"a")
        for _ in range(2):
            if not self._sha:
                sha = await self._call_retrying(
                    b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n" + _bulk(SCRIPT.encode())
                )
                self._sha = sha if isinstance(sha, bytes) else str(sha).encode()
            command = b"*9\r\n$7\r\nEVALSHA\r\n" + _bulk(self._sha) + b"$1\r\n1\r\n" + args + mode
            try:
                return await self._call_retrying(command)
            except StoreError as exc:
                if not isinstance(exc.__cause__, NoScriptError):
                    raise
                self._sha = b""  # the script cache was flushed (a restart): load it again
        raise StoreError("Redis keeps forgetting the rate-limit script")

    async def _call_retrying(self, command: bytes) -> Any:
        """One exchange; if a connection that was open breaks, once more on a fresh one."""
        try:
            return await self._call(command)
        except _StaleConnection as stale:
            # The server went away since these connections were opened (a restart, a
            # failover): every idle one is as stale as this one, so dial afresh.
            await self._drop_idle()
            try:
                return await self._call(command)
            except _StaleConnection as again:
                raise StoreError(f"Redis connection lost: {again.__cause__}") from stale.__cause__

    async def _call(self, command: bytes) -> Any:
        """Write *command* on an idle connection and read its reply, within the timeout."""
        await self._slots.acquire()
        conn = self._idle.pop() if self._idle else self._connection_class(**self._connection_kwargs)
        was_open = conn.is_connected
        try:
            async with asyncio.timeout(self.timeout):
                await conn.send_packed_command(command, check_health=False)
                reply = await conn.read_response()
        except NoScriptError as exc:
            self._idle.append(conn)  # an error reply leaves the connection in a clean state
            raise StoreError("NOSCRIPT") from exc
        except BaseException as exc:
            # Unknown state (timeout mid-reply, cancellation, reset): never reuse it, or the
            # next caller would read this request's reply.
            with suppress(Exception):
                await conn.disconnect(nowait=True)
            if isinstance(exc, RedisConnectionError) and was_open:
                raise _StaleConnection() from exc
            if isinstance(exc, RedisError | OSError | TimeoutError):
                raise StoreError(f"Redis unavailable: {exc!r}") from exc
            raise
        else:
            self._idle.append(conn)
            return reply
        finally:
            self._slots.release()


class _StaleConnection(Exception):
    """A connection that had worked broke: worth one retry on a new connection."""
