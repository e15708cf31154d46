"""Fresh databases for the account tests: a SQLite file, or a PostgreSQL database of its own.

A database per test (not a shared one with cleanup) means parallel xdist workers and
`bastion serve` subprocesses never see each other's rows, and the URL alone is enough to
point a real server at it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg

from bastion.auth.key_encryption import generate
from tests.support import require_tcp

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """An empty PostgreSQL database (async tests); dropped afterwards."""
    require_tcp("127.0.0.1", 5432, "PostgreSQL")
    name = f"bastion_auth_{uuid.uuid4().hex}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def postgres_database_sync() -> Iterator[str]:
    """:func:`postgres_database` for synchronous tests (real-server integration tests)."""
    require_tcp("127.0.0.1", 5432, "PostgreSQL")
    name = f"bastion_auth_{uuid.uuid4().hex}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'accounts.db'}"


def database_env(url: str, key_encryption_key: str | None = None) -> dict[str, str]:
    """Environment for `bastion serve` on *url*: with PostgreSQL the signing keys live in the
    database too, sealed with a key-encryption key that every host sharing it must be given."""
    return {
        "BASTION_DATABASE_URL": url,
        "BASTION_KEY_ENCRYPTION_KEY": key_encryption_key or generate(),
    }
