"""The database's direct request path: SQLite never waits for a lock on the event loop,
PostgreSQL survives a dead pooled connection on reads, the probe answers, bad URLs are one
clear error."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import bindparam, select
from sqlalchemy import update as sa_update

from bastion.errors import ConfigError
from bastion.service.db import Database, Query, _SqliteDirect
from bastion.service.models import User
from tests.service.auth_db import postgres_database, sqlite_url
from tests.support import free_port

_EMAIL = Query(select(User.email).where(User.id == bindparam("id")))


async def _with_user(database: Database) -> uuid.UUID:
    await database.create_schema()
    user_id = uuid.uuid4()
    async with database.session() as session:
        session.add(User(id=user_id, email="a@example.test", password_hash="-"))
        await session.commit()
    return user_id


async def test_sqlite_waits_for_a_held_lock_off_the_event_loop(tmp_path: Path) -> None:
    """Another process holds the write lock for 0.5 s: the write waits for it in the thread
    (and then succeeds) while the event loop keeps serving reads without a stall."""
    database = Database(sqlite_url(tmp_path))
    try:
        user_id = await _with_user(database)
        assert await database.direct.one(_EMAIL, id=user_id) == ("a@example.test",)
        holder = sqlite3.connect(tmp_path / "accounts.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the write lock, as another writer would hold it
        update = Query(sa_update(User).where(User.id == bindparam("id")).values(role="x"))
        write = asyncio.create_task(database.direct.run(update, id=user_id))
        longest_tick = 0.0
        started = time.monotonic()
        while time.monotonic() - started < 0.5:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            assert await database.direct.one(_EMAIL, id=user_id) == ("a@example.test",)
            longest_tick = max(longest_tick, time.monotonic() - before)
        assert not write.done()  # still waiting for the lock...
        assert longest_tick < 0.25  # ...but never on the loop
        holder.execute("COMMIT")
        holder.close()
        assert await asyncio.wait_for(write, 10) == 1
        async with database.session() as session:
            user = await session.get(User, user_id)
            assert user is not None and user.role == "x"
    finally:
        await database.close()


@pytest.mark.postgres
async def test_postgres_read_survives_a_terminated_pooled_connection() -> None:
    async with postgres_database() as url:
        database = Database(url)
        try:
            user_id = await _with_user(database)
            assert await database.direct.one(_EMAIL, id=user_id) == ("a@example.test",)
            name = url.rsplit("/", 1)[1]
            admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
            try:  # what a server restart or an operator does to idle connections
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    name,
                )
            finally:
                await admin.close()
            assert killed >= 1
            assert await database.direct.one(_EMAIL, id=user_id) == ("a@example.test",)
        finally:
            await database.close()


@pytest.mark.parametrize("url", ["sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"])
def test_in_memory_sqlite_is_refused_in_one_line(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Database(url)
    assert "database_url" in str(caught.value)


async def test_ping_reports_a_database_that_is_down() -> None:
    database = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing")
    try:
        assert await database.ping() is False
    finally:
        await database.close()


async def test_ping_reports_a_live_database(tmp_path: Path) -> None:
    database = Database(sqlite_url(tmp_path))
    try:
        await database.create_schema()
        assert await database.ping() is True
    finally:
        await database.close()


async def test_sqlite_checkpoints_run_in_the_thread_not_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's connection never checkpoints (a checkpoint fsyncs); every CHECKPOINT_EVERY
    writes the thread does, and it moves the WAL's frames into the database."""
    from bastion.service import db as db_module

    ran: list[tuple[str, tuple[int, int, int]]] = []
    original = db_module._checkpoint

    def recorded(conn: sqlite3.Connection) -> tuple[int, int, int]:
        result: tuple[int, int, int] = original(conn)
        ran.append((threading.current_thread().name, result))
        return result

    monkeypatch.setattr(db_module, "_checkpoint", recorded)
    monkeypatch.setattr(db_module, "CHECKPOINT_EVERY", 20)
    database = Database(sqlite_url(tmp_path))
    try:
        user_id = await _with_user(database)
        update = Query(sa_update(User).where(User.id == bindparam("id")).values(role="y"))
        for _ in range(19):
            await database.direct.run(update, id=user_id)
        assert isinstance(database.direct, _SqliteDirect)
        loop_conn = database.direct._loop_conn
        assert loop_conn is not None
        assert loop_conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        assert ran == []
        await database.direct.run(update, id=user_id)  # the 20th write
        await asyncio.wait_for(_until(lambda: bool(ran)), 10)
        (thread, (busy, frames, moved)), *_ = ran
        assert thread.startswith("bastion-sqlite") and thread != threading.main_thread().name
        assert busy == 0 and frames > 0 and moved == frames
    finally:
        await database.close()


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def test_ping_gives_up_on_a_server_that_never_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A black-holed database (connections accepted, nothing said) is "down" within the
    probe's timeout: /healthz must not hang behind it."""
    from bastion.service import db as db_module

    monkeypatch.setattr(db_module, "PING_TIMEOUT", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes handshakes; nobody ever reads or writes
        port = silent.getsockname()[1]
        database = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/nothing")
        try:
            started = time.monotonic()
            assert await database.ping() is False
            assert time.monotonic() - started < 5
        finally:
            await database.close()
