"""The PostgreSQL request path's pool (``bastion.service.pg_pool``), against a real server:
it never opens more than its size, serves waiters first come first served, loses no
connection to a cancellation, rolls back what a caller left open, replaces dead connections
(a read retried once, a write not) and closes everything it opened."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from bastion.service.db import Database, Query, _connection_lost
from bastion.service.pg_pool import PgPool
from tests.service.auth_db import ADMIN_URL, postgres_database
from tests.support import free_port

pytestmark = pytest.mark.postgres


@asynccontextmanager
async def _pool(max_size: int, **options: Any) -> AsyncIterator[tuple[PgPool, str]]:
    """A pool on a fresh database of its own (so pg_stat_activity shows only its backends)."""
    async with postgres_database() as url:
        name = url.rsplit("/", 1)[1]
        connect = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": name}
        pool = PgPool(connect, max_size=max_size, **options)
        try:
            yield pool, name
        finally:
            await pool.close()


async def _backends(name: str) -> int:
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        count: int = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = $1 AND backend_type = 'client backend'",
            name,
        )
    finally:
        await admin.close()
    return count


async def _until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def _all_at_once(pool: PgPool, count: int) -> set[int]:
    """*count* callers holding a connection at the same moment (fails, rather than hangs, if
    the pool cannot give that many); their backend pids."""
    barrier = asyncio.Barrier(count)

    async def hold() -> int:
        connection = await pool.acquire()
        try:
            await asyncio.wait_for(barrier.wait(), 10)
            pid: int = await connection.fetchval("SELECT pg_backend_pid()")
            return pid
        finally:
            pool.release(connection)

    return set(await asyncio.gather(*(hold() for _ in range(count))))


async def test_fifty_concurrent_queries_never_open_more_than_the_pool_size() -> None:
    async with _pool(10) as (pool, name):
        peak = 0

        async def query(i: int) -> tuple[int, int, int]:
            nonlocal peak
            row = await pool.fetchrow(
                "SELECT $1::int, pg_backend_pid(), "
                "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend')"
                " FROM pg_sleep(0.01)",
                i,
            )
            peak = max(peak, pool.size)
            return row[0], row[1], row[2]

        rows = await asyncio.gather(*(query(i) for i in range(50)))
        assert [row[0] for row in rows] == list(range(50))
        assert len({row[1] for row in rows}) == 10  # every slot used, none more
        assert max(row[2] for row in rows) == 10  # what the server saw while they ran
        assert peak == 10
        assert (pool.size, pool.idle, pool.in_use, pool.waiting) == (10, 10, 0, 0)
        assert await _backends(name) == 10


async def test_waiters_are_served_first_come_first_served() -> None:
    async with _pool(2) as (pool, _name):
        held = [await pool.acquire(), await pool.acquire()]
        served: list[int] = []

        async def wait_and_query(i: int) -> int:
            connection = await pool.acquire()
            served.append(i)
            try:
                value: int = await connection.fetchval("SELECT $1::int", i)
                return value
            finally:
                pool.release(connection)

        tasks = []
        for i in range(50):  # each queued before the next is created
            tasks.append(asyncio.create_task(wait_and_query(i)))
            await _until(lambda i=i: pool.waiting == i + 1, "the waiter to queue")  # type: ignore[misc]
        for connection in held:
            pool.release(connection)
        assert await asyncio.wait_for(asyncio.gather(*tasks), 10) == list(range(50))
        assert served == list(range(50))
        assert (pool.size, pool.idle, pool.waiting) == (2, 2, 0)


async def test_cancelled_waiters_lose_no_connection() -> None:
    async with _pool(3) as (pool, name):
        held = [await pool.acquire() for _ in range(3)]
        tasks = [asyncio.create_task(pool.fetchrow("SELECT 1")) for _ in range(12)]
        await _until(lambda: pool.waiting == 12, "12 waiters")
        for task in tasks[1::2]:  # cancelled while waiting
            task.cancel()
        # The race: a connection handed to the first waiter and that waiter cancelled in
        # the same loop iteration, before it could run. It must pass the connection on.
        pool.release(held.pop())
        tasks[0].cancel()
        # The same race for a slot: a dead connection's slot granted, the grantee cancelled.
        dead = held.pop()
        dead.terminate()
        pool.release(dead)
        tasks[2].cancel()
        pool.release(held.pop())
        # A lost connection or slot would leave a waiter waiting for ever.
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        cancelled = {0, 2, *range(1, 12, 2)}
        for i, result in enumerate(results):
            if i in cancelled:
                assert isinstance(result, asyncio.CancelledError), (i, result)
            else:
                assert isinstance(result, asyncpg.Record) and tuple(result) == (1,), (i, result)
        assert (pool.size, pool.idle, pool.in_use, pool.waiting) == (3, 3, 0, 0)
        assert len(await _all_at_once(pool, 3)) == 3  # the full size is still usable
        assert await _backends(name) == 3


async def test_a_connection_left_in_a_transaction_is_rolled_back_on_release() -> None:
    async with _pool(1) as (pool, _name):
        await pool.execute("CREATE TABLE marks (x int)")
        connection = await pool.acquire()
        await connection.execute("BEGIN")
        await connection.execute("INSERT INTO marks VALUES (1)")
        assert connection.is_in_transaction()
        pool.release(connection)
        again = await pool.acquire()  # waits for the rollback: the pool's only connection
        try:
            assert again is connection
            assert not again.is_in_transaction()
            assert await again.fetchval("SELECT count(*) FROM marks") == 0
        finally:
            pool.release(again)
        assert (pool.size, pool.idle) == (1, 1)


async def test_connections_the_server_closed_while_idle_are_replaced() -> None:
    async with _pool(4) as (pool, name):
        before = await _all_at_once(pool, 4)
        idle = list(pool._open)
        admin = await asyncpg.connect(ADMIN_URL)
        try:  # what a server restart or an operator does to idle connections
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
        finally:
            await admin.close()
        await _until(lambda: all(c.is_closed() for c in idle), "the client to see them closed")
        assert pool.idle == 4  # still on the free list: found dead when taken
        after = await _all_at_once(pool, 4)
        assert len(after) == 4 and not before & after
        assert (pool.size, pool.idle) == (4, 4)
        assert await _backends(name) == 4


async def test_a_read_on_a_dead_connection_is_retried_once_and_a_write_never() -> None:
    """The statement kills its own backend (as a server restart would, under it): the read
    is run again on a fresh connection, once; the write's failure is the caller's."""
    async with postgres_database() as url:
        database = Database(url)
        try:
            await database.direct.run(Query(text("CREATE SEQUENCE reads")))
            await database.direct.run(Query(text("CREATE SEQUENCE writes")))
            dies_first_time = Query(
                text(
                    "SELECT CASE WHEN nextval('reads') = 1 "
                    "THEN pg_terminate_backend(pg_backend_pid()) ELSE true END"
                )
            )
            assert await database.direct.one(dies_first_time) == (True,)
            always_dies = Query(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            with pytest.raises(_connection_lost(asyncpg)):
                await database.direct.one(always_dies)  # retried once, then raised
            dies = Query(text("SELECT nextval('writes'), pg_terminate_backend(pg_backend_pid())"))
            with pytest.raises(_connection_lost(asyncpg)):
                await database.direct.run(dies)
            counts = Query(text("SELECT (SELECT last_value FROM reads), last_value FROM writes"))
            assert await database.direct.one(counts) == (2, 1)
            use = database.pool_use()
            assert use["direct.in_use"] == 0 and 1 <= use["direct.idle"] <= 10
        finally:
            await database.close()


async def test_close_waits_for_a_busy_connection_and_leaves_none_open() -> None:
    async with _pool(3) as (pool, name):
        await _all_at_once(pool, 3)
        connections = list(pool._open)
        busy = asyncio.create_task(pool.fetchrow("SELECT 7 FROM pg_sleep(0.3)"))
        held = [await pool.acquire(), await pool.acquire()]
        waiter = asyncio.create_task(pool.fetchrow("SELECT 1"))
        await _until(lambda: pool.waiting == 1 and pool.in_use == 3, "a waiter")
        closing = asyncio.create_task(pool.close())
        with pytest.raises(asyncpg.InterfaceError):  # it had not started: it fails at once
            await waiter
        assert not closing.done()
        for connection in held:
            pool.release(connection)
        assert tuple(await busy) == (7,)  # the statement in flight finished
        await closing
        assert pool.size == 0 and all(c.is_closed() for c in connections)
        with pytest.raises(asyncpg.InterfaceError):
            await pool.fetchrow("SELECT 1")
        backends = -1

        async def count() -> None:
            nonlocal backends
            while (backends := await _backends(name)) != 0:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(count(), 10)
        assert backends == 0


async def test_close_aborts_a_statement_that_outlives_its_timeout() -> None:
    async with _pool(2, close_timeout=0.2) as (pool, _name):
        slow = asyncio.create_task(pool.fetchrow("SELECT pg_sleep(30)"))
        await _until(lambda: pool.in_use == 1 and bool(pool._open), "the slow statement")
        (connection,) = pool._open
        started = asyncio.get_running_loop().time()
        await pool.close()
        assert asyncio.get_running_loop().time() - started < 5
        assert connection.is_closed()
        with pytest.raises(_connection_lost(asyncpg)):
            await slow
        assert pool.size == 0


async def test_a_server_that_cannot_be_reached_fails_every_caller() -> None:
    """Opening fails: each caller gets the error (none hangs waiting for a slot that a
    failed opening held), and the pool is empty afterwards."""
    connect = {"host": "127.0.0.1", "port": free_port(), "user": "postgres", "database": "x"}
    pool = PgPool(connect, max_size=2)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(pool.fetchrow("SELECT 1") for _ in range(6)), return_exceptions=True),
            10,
        )
        assert all(isinstance(result, OSError) for result in results), results
        assert (pool.size, pool.waiting) == (0, 0)
    finally:
        await pool.close()
