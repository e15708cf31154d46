"""The PostgreSQL request path's connection pool: asyncpg connections on a free list.

asyncpg's ``Pool`` wraps every checkout in a holder, a proxy object, an ``asyncio.Queue``
round trip and a shielded release coroutine: about 27 µs of user CPU per statement on this
VM, more than the statement's own client-side cost (a primary-key lookup, 32 at a time:
57 µs of CPU on asyncpg's pool, 29 µs on this one; ``bench/bench_datapath.py``). The direct path
needs none of what that buys (listeners, setup hooks, connection expiry, proxies that go
stale): it runs one autocommit statement per checkout. So this pool is a deque of idle
connections and a FIFO of waiting futures.

* **Checkout**: an idle connection is popped (the most recently used, whose server process
  and caches are warm) with no await; a connection found closed there (the server went away
  while it idled) is dropped. With none idle, a free slot (fewer than ``max_size`` open)
  opens a connection in the caller's task, so a connection failure is the caller's error as
  it was with asyncpg's pool; otherwise the caller waits on a future, first come first served.
* **Check-in** (synchronous, so a cancelled request still returns its connection): a closed
  connection is dropped and its slot goes to the first waiter, who opens a fresh one; a
  connection left inside a transaction is rolled back in a task of the pool's before it is
  reused (the direct path's statements are autocommit, so that is the only state that could
  leak into the next request; asyncpg's default ``RESET ALL``/``UNLISTEN *`` reset would be
  a round trip per request for state never created); any other goes to the first waiter, or
  back on the free list.
* **A waiter cancelled as it is served** (the connection set on its future in the same loop
  iteration as the cancel) passes the connection, or the slot, on before it raises: no
  cancellation leaks a connection or a slot.
* Each connection keeps asyncpg's prepared-statement cache (``statement_cache_size`` from
  the connect arguments: 0 behind PgBouncer in transaction mode).

What it leaves out of asyncpg's pool: idle connections are never closed for inactivity
(asyncpg closes those above ``min_size`` after 300 s); a worker keeps the connections its
peak concurrency opened, at most ``max_size``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from typing import Any

import asyncpg

__all__ = ["CLOSE_TIMEOUT", "PgPool"]

log = logging.getLogger("bastion.db")

#: Seconds :meth:`PgPool.close` waits for checked-out connections to come back (default).
CLOSE_TIMEOUT = 10.0


class PgPool:
    """Up to *max_size* asyncpg connections, opened on demand with *connect* (keyword
    arguments of :func:`asyncpg.connect`), in the event loop that uses them."""

    def __init__(
        self, connect: dict[str, Any], *, max_size: int = 10, close_timeout: float = CLOSE_TIMEOUT
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self.close_timeout = close_timeout
        self._connect = connect
        self._idle: deque[asyncpg.Connection] = deque()
        #: Futures of the callers waiting for a connection; a result of None grants a slot
        #: (the caller opens a connection itself). Cancelled futures are skipped on hand-off.
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        #: Every connection open (idle or checked out); ``_size`` also counts those opening.
        self._open: set[asyncpg.Connection] = set()
        self._size = 0
        #: Rollbacks and graceful closes of returned connections, in the pool's own tasks.
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._drained: asyncio.Future[None] | None = None

    # --- counts (for the metrics and tests) ---------------------------------------------------

    @property
    def size(self) -> int:
        """Connections open or being opened."""
        return self._size

    @property
    def idle(self) -> int:
        """Connections on the free list."""
        return len(self._idle)

    @property
    def in_use(self) -> int:
        """Connections checked out (or being opened, or being rolled back)."""
        return self._size - len(self._idle)

    @property
    def waiting(self) -> int:
        """Callers waiting for a connection."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    # --- one statement per checkout -----------------------------------------------------------

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        connection = self._take()
        if connection is None:
            connection = await self.acquire()
        try:
            return await connection.fetchrow(sql, *args)
        finally:
            self.release(connection)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        connection = self._take()
        if connection is None:
            connection = await self.acquire()
        try:
            rows: list[Any] = await connection.fetch(sql, *args)
            return rows
        finally:
            self.release(connection)

    async def execute(self, sql: str, *args: Any) -> str:
        connection = self._take()
        if connection is None:
            connection = await self.acquire()
        try:
            status: str = await connection.execute(sql, *args)
            return status
        finally:
            self.release(connection)

    # --- checkout and check-in -----------------------------------------------------------------

    def _take(self) -> asyncpg.Connection | None:
        """An idle live connection, or None (no await: the fast path)."""
        idle = self._idle
        while idle:
            connection = idle.pop()
            if not connection.is_closed():
                return connection
            # Died while idle (server restart, pg_terminate_backend). Nobody waits while a
            # connection is idle, so the slot simply frees.
            self._open.discard(connection)
            self._size -= 1
        return None

    async def acquire(self) -> asyncpg.Connection:
        """A connection for one statement; give it back with :meth:`release`."""
        if self._closing:
            raise asyncpg.InterfaceError("the connection pool is closed")
        connection = self._take()
        if connection is not None:
            return connection
        if self._size < self.max_size:
            self._size += 1
            return await self._new_connection()
        waiter: asyncio.Future[asyncpg.Connection | None]
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            granted = await waiter
        except asyncio.CancelledError:
            # Served in the same iteration as the cancel: pass the connection (or slot) on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is None:
                    self._free_slot()
                else:
                    self.release(handed)
            raise
        if granted is None:  # a slot freed by a dropped connection: open a fresh one
            return await self._new_connection()
        return granted

    async def _new_connection(self) -> asyncpg.Connection:
        """Open a connection in the slot the caller holds (released again if it fails)."""
        try:
            connection: asyncpg.Connection = await asyncpg.connect(**self._connect)
        except BaseException:
            self._free_slot()
            raise
        if self._closing:
            self._free_slot()
            connection.terminate()
            raise asyncpg.InterfaceError("the connection pool is closed")
        self._open.add(connection)
        return connection

    def release(self, connection: asyncpg.Connection) -> None:
        """Take *connection* back (synchronous: cancellation cannot lose it)."""
        if self._closing:
            self._retire(connection)
        elif connection.is_closed():
            self._open.discard(connection)
            self._free_slot()
        elif connection.is_in_transaction():
            self._track(self._rollback(connection))
        else:
            self._hand_over(connection)

    async def _rollback(self, connection: asyncpg.Connection) -> None:
        try:
            await connection.execute("ROLLBACK")
        except (Exception, asyncio.CancelledError) as exc:
            log.warning("rollback of a returned connection failed: %s", exc.__class__.__name__)
            connection.terminate()
        if connection.is_in_transaction():  # pragma: no cover - ROLLBACK always ends it
            connection.terminate()
        self.release(connection)

    def _hand_over(self, connection: asyncpg.Connection) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    def _free_slot(self) -> None:
        """One connection fewer: its slot goes to the first waiter, who opens a new one."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot stays counted, now the waiter's
                return
        self._size -= 1
        if self._drained is not None and self._size == 0 and not self._drained.done():
            self._drained.set_result(None)

    def _retire(self, connection: asyncpg.Connection) -> None:
        """A connection back after close(): closed (close() awaits it), its slot gone."""
        self._open.discard(connection)
        self._track(connection.close(timeout=self.close_timeout))
        self._free_slot()

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- closing --------------------------------------------------------------------------------

    async def close(self) -> None:
        """Close every connection (idempotent); the pool is unusable afterwards.

        asyncpg's ``Pool.close()`` waits without limit for every checked-out connection to
        come back, then closes them all; ``Pool.terminate()`` aborts them at once, even in the
        middle of a statement. This pool closes when a worker stops, so it takes the first
        for as long as a statement should take and the second after that:

        * callers waiting for a connection fail at once with ``InterfaceError`` (the service
          answers 503, as to a request arriving after shutdown): none has started anything;
        * idle connections are closed gracefully (PostgreSQL is told, its backends exit);
        * a checked-out connection is running one statement: it is closed gracefully when it
          comes back, if that is within ``close_timeout`` seconds;
        * after that (a server that stopped answering must not hang a shutdown), or if
          close() itself is cancelled, whatever is still open is aborted, as ``terminate()``
          would.
        """
        if self._closing:
            return
        self._closing = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(asyncpg.InterfaceError("the connection pool is closed"))
        while self._idle:
            self._retire(self._idle.pop())
        timeout = self.close_timeout
        try:
            if self._size:
                self._drained = asyncio.get_running_loop().create_future()
                try:
                    async with asyncio.timeout(timeout):
                        await self._drained
                except TimeoutError:
                    log.warning("closing the pool: aborting %d busy connection(s)", self._size)
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=timeout)
        finally:
            for connection in list(self._open):
                connection.terminate()
            self._open.clear()
            for task in list(self._tasks):
                task.cancel()
