"""The service's database: one async SQLAlchemy engine, SQLite by default, PostgreSQL by URL.

SQLite gets WAL journaling, a busy timeout and foreign keys on every connection so that
several worker processes can share the file; PostgreSQL needs nothing special. Every query
in the service goes through SQLAlchemy with bound parameters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import ArgumentError, InvalidRequestError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from bastion.config import setting_name
from bastion.errors import ConfigError

_DRIVERS = "use postgresql+asyncpg://user:password@host/dbname or sqlite+aiosqlite:///path"


class Base(DeclarativeBase):
    """Declarative base of every table of the reference service."""


class Database:
    """The engine, a session factory, schema creation and a health probe."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        options: dict[str, Any] = {"pool_pre_ping": not self.is_sqlite}
        if self.is_sqlite:
            options["connect_args"] = {"timeout": 30}
        try:
            self.engine: AsyncEngine = create_async_engine(url, **options)
        except (ArgumentError, ImportError, InvalidRequestError) as exc:
            # A URL Settings did not vet (a direct caller): one line, not a driver traceback.
            problem = f"unusable ({exc.__class__.__name__}): {_DRIVERS}"
            raise ConfigError(setting_name("database_url"), problem) from None
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def create_schema(self) -> None:
        """Create missing tables (idempotent; run once by `bastion serve` before workers start)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def ping(self) -> bool:
        """True when a trivial query succeeds (for /healthz)."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            return False
        return True

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
