"""How the service reaches its database from the event loop: one primary-key lookup, measured
every way the data path could make it (the figures behind ``bastion/service/db.py``).

32 concurrent tasks on one uvloop event loop (as 32 wrk connections drive a worker) look up
a user by id until N lookups are done; the figures are the process's CPU time per lookup (user
+ system, every thread: what the lookup costs a saturated worker; then each apart: the pools
differ in user time, the system time is the socket calls) and the wall time per lookup.
PostgreSQL rows need the server at 127.0.0.1:5432 (trust auth; a scratch database is created
and dropped); the PostgreSQL server's own CPU is not in the figures.

    .venv/bin/python bench/bench_datapath.py [--lookups 20000] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import resource
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosqlite
import asyncpg
import uvloop
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bastion.service.db import Database, Query
from bastion.service.models import User
from bastion.service.pg_pool import PgPool

CONCURRENCY = 32
ACCOUNT = Query(select(User.email, User.role).where(User.id == bindparam("id")))
ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
POOL_ROUNDS = 3


Figures = tuple[float, float, float, float]  # CPU, user, system, wall: µs per lookup
Line = tuple[str, float, float, float, float]


async def _drive(
    lookup: Callable[[uuid.UUID], Awaitable[object]], ids: list[uuid.UUID], n: int
) -> Figures:
    done = 0

    async def worker(offset: int) -> None:
        nonlocal done
        i = offset
        while done < n:
            done += 1
            row = await lookup(ids[i % len(ids)])
            if row is None:
                raise SystemExit("lookup found nothing")
            i += CONCURRENCY

    for _ in range(2):  # the first pass warms caches and pools; the second is measured
        done = 0
        wall, start = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.gather(*(worker(k) for k in range(CONCURRENCY)))
        end = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - wall
    user, system = end.ru_utime - start.ru_utime, end.ru_stime - start.ru_stime
    return (user + system) / n * 1e6, user / n * 1e6, system / n * 1e6, wall / n * 1e6


async def sqlite_rows(path: Path, ids: list[uuid.UUID], n: int) -> list[Line]:
    url = f"sqlite+aiosqlite:///{path}"
    out = []
    engine = create_async_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def orm(user_id: uuid.UUID) -> object:
        async with sessions() as session:
            return await session.get(User, user_id)

    out.append(("SQLite: ORM session.get over aiosqlite (before)", *await _drive(orm, ids, n)))

    async def core(user_id: uuid.UUID) -> object:
        async with engine.connect() as conn:
            return (
                await conn.execute(select(User.email, User.role).where(User.id == user_id))
            ).first()

    out.append(("SQLite: Core select over aiosqlite", *await _drive(core, ids, n)))
    await engine.dispose()

    sql = "SELECT email, role FROM users WHERE id = ?"
    conn = await aiosqlite.connect(path)

    async def driver(user_id: uuid.UUID) -> object:
        async with conn.execute(sql, (user_id.hex,)) as cursor:
            return await cursor.fetchone()

    out.append(("SQLite: aiosqlite, one connection, no SQLAlchemy", *await _drive(driver, ids, n)))
    await conn.close()

    raw = sqlite3.connect(path, check_same_thread=False)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()

    def fetch(user_id: uuid.UUID) -> object:
        return raw.execute(sql, (user_id.hex,)).fetchone()

    async def one_hop(user_id: uuid.UUID) -> object:
        return await loop.run_in_executor(pool, fetch, user_id)

    hop = "SQLite: sqlite3 in one thread, one hop per lookup"
    out.append((hop, *await _drive(one_hop, ids, n)))
    pool.shutdown()

    async def in_loop(user_id: uuid.UUID) -> object:
        return fetch(user_id)

    out.append(("SQLite: sqlite3 on the event loop (no hop)", *await _drive(in_loop, ids, n)))
    raw.close()

    database = Database(url)
    await database.create_schema()

    async def data_path(user_id: uuid.UUID) -> object:
        return await database.direct.one(ACCOUNT, id=user_id)

    out.append(
        ("SQLite: bastion's direct path (Database.direct)", *await _drive(data_path, ids, n))
    )
    await database.close()
    return out


async def postgres_rows(ids: list[uuid.UUID], n: int) -> list[Line]:
    name = f"bench_datapath_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    out = []
    try:
        database = Database(url)
        await database.create_schema()
        async with database.session() as session:
            session.add_all(User(id=i, email=f"{i}@x.test", password_hash="-") for i in ids)
            await session.commit()

        async def orm(user_id: uuid.UUID) -> object:
            async with database.session() as session:
                return await session.get(User, user_id)

        before = "PostgreSQL: ORM session.get over asyncpg (before)"
        out.append((before, *await _drive(orm, ids, n)))

        async def core(user_id: uuid.UUID) -> object:
            async with database.engine.connect() as conn:
                statement = select(User.email, User.role).where(User.id == user_id)
                return (await conn.execute(statement)).first()

        out.append(("PostgreSQL: Core select over asyncpg", *await _drive(core, ids, n)))
        sql = "SELECT email, role FROM users WHERE id = $1"
        for cache in (0, 100):
            pool = await asyncpg.create_pool(
                f"postgresql://postgres@127.0.0.1:5432/{name}",
                min_size=5,
                max_size=10,
                statement_cache_size=cache,
            )

            async def driver(user_id: uuid.UUID, pool: asyncpg.Pool = pool) -> object:
                return await pool.fetchrow(sql, user_id)

            label = "prepared-statement cache" if cache else "no statement cache"
            out.append((f"PostgreSQL: asyncpg pool, {label}", *await _drive(driver, ids, n)))
            await pool.close()

        # The direct path's pool until 0.2.0: asyncpg's, its reset query replaced by a
        # rollback of a transaction left open (none is: no round trip on release).
        async def rollback_if_open(connection: asyncpg.Connection) -> None:
            if connection.is_in_transaction():
                await connection.execute("ROLLBACK")

        old_pool = await asyncpg.create_pool(
            f"postgresql://postgres@127.0.0.1:5432/{name}",
            min_size=1,
            max_size=10,
            reset=rollback_if_open,
        )
        own = PgPool({"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": name})

        async def asyncpg_pool(user_id: uuid.UUID) -> object:
            return await old_pool.fetchrow(sql, user_id)

        async def own_pool(user_id: uuid.UUID) -> object:
            return await own.fetchrow(sql, user_id)

        async def data_path(user_id: uuid.UUID) -> object:
            return await database.direct.one(ACCOUNT, id=user_id)

        # The two pools and the direct path on the second in alternate rounds (the machine's
        # load drifts), each one's best round.
        pools = {
            "PostgreSQL: asyncpg pool, rollback-if-open reset (before)": asyncpg_pool,
            "PostgreSQL: bastion's PgPool.fetchrow (after)": own_pool,
            "PostgreSQL: bastion's direct path (Database.direct)": data_path,
        }
        best: dict[str, Figures] = {}
        for _ in range(POOL_ROUNDS):
            for label, lookup in pools.items():
                figures = await _drive(lookup, ids, n)
                if label not in best or figures[0] < best[label][0]:
                    best[label] = figures
        out += [(label, *figures) for label, figures in best.items()]
        await old_pool.close()
        await own.close()

        await database.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return out


async def main(n: int, only: str | None) -> None:
    ids = [uuid.uuid4() for _ in range(1000)]
    rows: list[Line] = []
    if only != "postgresql":
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.db"
            database = Database(f"sqlite+aiosqlite:///{path}")
            await database.create_schema()
            async with database.session() as session:
                session.add_all(User(id=i, email=f"{i}@x.test", password_hash="-") for i in ids)
                await session.commit()
            await database.close()
            rows += await sqlite_rows(path, ids, n)
    if only != "sqlite":
        with contextlib.suppress(OSError):
            rows += await postgres_rows(ids, n)
    heads = "".join(f"{head:>9}" for head in ("CPU µs", "user", "sys", "wall µs"))
    print(f"{'one primary-key lookup, 32 concurrent':<58}{heads}")
    for label, *figures in rows:
        print(f"{label:<58}" + "".join(f"{figure:>9.1f}" for figure in figures))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=20000)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    arguments = parser.parse_args()
    uvloop.run(main(arguments.lookups, arguments.only))
