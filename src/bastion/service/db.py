"""The service's database: SQLite by default, PostgreSQL by URL, reached two ways.

* ``Database.engine`` / ``Database.session()``: SQLAlchemy's async engine and ORM sessions,
  for schema creation and the account, token and OAuth flows (a handful of statements per
  login, where an ORM session's cost is lost in argon2's).
* ``Database.direct``: the request path of the orders API, ``/me`` and ``/healthz``. Its
  statements are SQLAlchemy Core constructs built from the models (:class:`Query`), compiled
  once per dialect, and executed by the driver itself with bound parameters, converted by
  SQLAlchemy's own type processors, so a row is stored exactly as the ORM stores it.

Why two ways: measured with ``bench/bench_datapath.py`` (one primary-key lookup, 32
concurrent lookups on one uvloop worker pinned to a core of this 2-core VM, process CPU per
lookup, while other work shared the machine: load average 2; the last three rows in
alternate rounds, best of three; the ratios are the figures):

=============================================================  =========
SQLite: ORM ``session.get`` over aiosqlite (before)              481 µs
SQLite: Core ``select`` over aiosqlite                           441 µs
SQLite: aiosqlite alone, one connection                           22 µs
SQLite: ``sqlite3`` in one thread, one hand-off per lookup        20 µs
SQLite: ``sqlite3`` on the event loop                              6 µs
SQLite: ``Database.direct`` (compiled statement, conversions)      8 µs
PostgreSQL: ORM ``session.get`` over asyncpg (before)            658 µs
PostgreSQL: Core ``select`` over asyncpg                         667 µs
PostgreSQL: asyncpg pool, no statement cache                     124 µs
PostgreSQL: asyncpg pool, prepared-statement cache                99 µs
PostgreSQL: asyncpg pool, no reset query (direct path before)     57 µs
PostgreSQL: :class:`~bastion.service.pg_pool.PgPool`              29 µs
PostgreSQL: ``Database.direct`` (on ``PgPool``)                   33 µs
=============================================================  =========

An engine checkout is the cost, not the SQL: the pool, the ``pool_pre_ping`` round trip, the
rollback on return, the greenlet bridge and, on SQLite, one thread hand-off for every
cursor call. So the request path skips them:

**SQLite: statements run on the event loop.** A lookup in pages the OS has cached takes a few
microseconds; handing it to a thread costs more than the lookup, and a saturated loop then
fights the worker thread for the GIL. Each statement the direct path runs is one autocommit
statement (its own transaction), on a connection whose busy timeout is 0: if another
connection (another worker process, or the ORM's) holds the write lock, SQLite answers
``SQLITE_BUSY`` at once and the same statement is run again in a dedicated thread on a
second connection that waits up to 30 s, so the loop never waits for a lock. The price is
that a read of pages not in the page cache blocks the loop for that disk read: a deployment
whose data outgrows memory belongs on PostgreSQL. Checkpoints (which copy the WAL into the
database file and fsync it) never run on the loop: that connection's automatic checkpoint is
off, and every 300 writes it asks the thread for a ``PASSIVE`` one.

**SQLite durability: WAL with ``synchronous=NORMAL`` on the direct connections.** With
``FULL`` every commit waits for an fsync of the WAL: 4.5 ms here (96 µs without), which
caps every writer on the host near 220 commits/s. In WAL mode ``NORMAL`` never corrupts the
database; a power cut or OS crash (not a process crash) may lose the last transactions
before the next checkpoint. SQLite's documentation calls this the usual choice for WAL, and
Rails 8 ships it. The ORM connections keep ``FULL``: a password reset, a refresh-token
rotation or a single-use code must not come back after a power cut (and their fsync also
makes every earlier WAL frame durable). Deployments that cannot lose an order use
PostgreSQL, where every commit is durable and concurrent commits share one fsync.

**PostgreSQL: a connection pool of its own, with asyncpg's prepared-statement cache.** Each
statement is prepared once per connection (asyncpg's cache, 100 statements) and then costs
one round trip. asyncpg's ``Pool`` cost more CPU than the statement itself: a holder, a
proxy, an ``asyncio.Queue`` and a shielded release coroutine per checkout (57 against 29 µs
above, 44 against 17 µs of it user time), and by default a reset query on every release
(``RESET ALL``, ``UNLISTEN *``, ``CLOSE ALL``: a second round trip, 99 against 57 µs).
:mod:`bastion.service.pg_pool` is a free list of at most 10 connections per worker, handed
out with no await when one is idle, and a queue of waiters served in order; the direct path
creates no session state, so a connection coming back is only rolled back if a transaction
was left open. Inside the service a PostgreSQL request still costs more than these 33 µs
(``bench_service_inprocess.py``, best of 3, load average 1: ``/me`` 170–210 µs of CPU on
PostgreSQL against 115–135 µs on SQLite): the request suspends while the server answers,
and 32 interleaved requests share the CPU's caches. No row is cached to hide that (see
``routes/me.py``).

There is no pre-ping: a read that finds its pooled connection dead (a server restart,
``pg_terminate_backend``) is retried once, on another connection (the pool drops a dead one
when it comes back, or finds it closed on the free list); a write is not retried (its
outcome is unknown), it answers 503. Behind PgBouncer in transaction mode,
prepared statements need ``?prepared_statement_cache_size=0`` in the URL, which the direct
path honours as asyncpg's ``statement_cache_size``.

What is cached: each statement's compiled SQL and type conversions (per dialect, in its
:class:`Query`), prepared statements (per connection: sqlite3's cache of 64, asyncpg's of
100) and ``/healthz``'s answer (one second, ``service/health.py``); never a row.

Every statement is a bound-parameter statement built by SQLAlchemy; no SQL text is ever
made from input. A constraint violation raises SQLAlchemy's ``IntegrityError`` on both
paths and both databases.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Uuid, event, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import ArgumentError, IntegrityError, InvalidRequestError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql import Executable

from bastion.config import setting_name
from bastion.errors import ConfigError

if TYPE_CHECKING:
    from bastion.service.pg_pool import PgPool

__all__ = ["Base", "Database", "Direct", "Query"]

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_BUSY_TIMEOUT_MS = 30_000
#: Writes on the event loop's SQLite connection between two WAL checkpoints (in the thread).
#: An order is about 3 pages, so the WAL stays near 1,000 pages: SQLite's default threshold.
CHECKPOINT_EVERY = 300
#: Connections of the PostgreSQL request path's pool, per worker process.
POOL_SIZE = 10
#: Seconds /healthz's probe waits for the database (a black-holed server is "down", not a hang).
PING_TIMEOUT = 5.0

log = logging.getLogger("bastion.db")

_DRIVERS = "use postgresql+asyncpg://user:password@host/dbname or sqlite+aiosqlite:///path"


class Base(DeclarativeBase):
    """Declarative base of every table of the reference service."""


Row = tuple[Any, ...]


class _Compiled:
    """One statement for one dialect: its SQL, its parameter order, its type conversions."""

    __slots__ = ("bind", "convert", "fixed", "names", "sql")

    def __init__(self, statement: Any, dialect: Dialect, as_text: bool = False) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        binds = [compiled.binds[name] for name in self.names]
        self.bind: tuple[Callable[[Any], Any] | None, ...] = tuple(
            bind.type.dialect_impl(dialect).bind_processor(dialect) for bind in binds
        )
        # Parameters the statement carries itself (SQLite's OFFSET after a bound LIMIT).
        self.fixed = {
            name: bind.effective_value
            for name, bind in zip(self.names, binds, strict=True)
            if not bind.required
        }
        columns = getattr(statement, "selected_columns", None)
        if columns is None:  # INSERT/UPDATE/DELETE ... RETURNING
            columns = getattr(statement, "_returning", ()) or ()
        processors = [
            (as_text and _text_processor(column.type, dialect))
            or column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in columns
        ]
        # Only the columns that need converting (on PostgreSQL, most need nothing).
        self.convert: tuple[tuple[int, Callable[[Any], Any]], ...] = tuple(
            (index, process) for index, process in enumerate(processors) if process is not None
        )

    def parameters(self, values: Mapping[str, Any]) -> list[Any]:
        out = []
        for name, process in zip(self.names, self.bind, strict=True):
            value = values[name] if name in values else self.fixed[name]
            out.append(value if process is None or value is None else process(value))
        return out

    def row(self, raw: Sequence[Any]) -> Row:
        if not self.convert:
            return tuple(raw)
        values = list(raw)
        for index, process in self.convert:
            value = values[index]
            if value is not None:
                values[index] = process(value)
        return tuple(values)


def _dashed(stored: str) -> str:
    """SQLite's stored form of a UUID (32 hex digits, as SQLAlchemy writes it) in canonical
    text; anything else (a row written by other means) through :class:`uuid.UUID`."""
    if len(stored) != 32:
        return str(uuid.UUID(stored))
    stored = stored.lower()
    return f"{stored[:8]}-{stored[8:12]}-{stored[12:16]}-{stored[16:20]}-{stored[20:]}"


def _uuid_text(dialect: Dialect) -> Callable[[Any], str]:
    """A UUID column's value as canonical text (lowercase, dashed), straight from what the
    driver returns: asyncpg's own UUID type formats itself in C; SQLite's hex is sliced."""
    return _dashed if dialect.name == "sqlite" else str


def _text_processor(column_type: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """How a column reads as JSON-ready text: UUIDs, and types that offer a
    ``text_result_processor(dialect)`` (the models' UTC timestamps); ``None``: as usual."""
    if isinstance(column_type, Uuid):
        return _uuid_text(dialect)
    text: Callable[[Dialect], Callable[[Any], Any]] | None = getattr(
        column_type, "text_result_processor", None
    )
    return None if text is None else text(dialect)


class Query:
    """A Core statement (with named ``bindparam`` parameters), compiled once per dialect.

    *as_text*: the result's UUIDs and timestamps come back as the text their JSON carries
    (canonical UUIDs, RFC 3339 as pydantic writes it) rather than :class:`uuid.UUID` and
    :class:`~datetime.datetime` objects, for rows that go straight into a response: building
    the objects and formatting them again cost 2.4 µs per UUID and 2.3 µs per timestamp, a
    page of 20 orders 150 µs of its request.
    """

    __slots__ = ("_compiled", "as_text", "statement")

    def __init__(self, statement: Executable, *, as_text: bool = False) -> None:
        self.statement = statement
        self.as_text = as_text
        self._compiled: dict[str, _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = _Compiled(self.statement, dialect, self.as_text)
            self._compiled[dialect.name] = found
        return found


class Direct:
    """The driver-level request path (see the module docstring). Each call is one statement
    in its own transaction."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    async def one(self, query: Query, **values: Any) -> Row | None:
        """The first row of *query*, or None."""
        compiled = query.compiled(self.dialect)
        raw = await self._fetch(compiled, compiled.parameters(values), 1)
        return compiled.row(raw[0]) if raw else None

    async def all(self, query: Query, **values: Any) -> list[Row]:
        compiled = query.compiled(self.dialect)
        rows = await self._fetch(compiled, compiled.parameters(values), 0)
        return [compiled.row(raw) for raw in rows]

    async def run(self, query: Query, **values: Any) -> int:
        """Execute a write; the number of rows it touched."""
        compiled = query.compiled(self.dialect)
        return await self._execute(compiled, compiled.parameters(values))

    async def healthy(self) -> bool:
        """True when a trivial query succeeds within ``PING_TIMEOUT`` seconds."""
        failures: tuple[type[BaseException], ...] = (TimeoutError, OSError, *self._driver_errors())
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                await self._fetch(_PING.compiled(self.dialect), [], 1)
        except failures:
            return False
        return True

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        return ()

    async def _fetch(self, compiled: _Compiled, args: list[Any], limit: int) -> list[Any]:
        raise NotImplementedError

    async def _execute(self, compiled: _Compiled, args: list[Any]) -> int:
        raise NotImplementedError

    async def close(self) -> None:
        """Close the connections (idempotent); the next call opens new ones."""


class _SqliteDirect(Direct):
    """sqlite3 on the event loop; a statement that meets a lock waits in a thread instead."""

    def __init__(self, dialect: Dialect, path: str) -> None:
        super().__init__(dialect)
        self.path = path
        self._loop_conn: sqlite3.Connection | None = None
        self._waiting_conn: sqlite3.Connection | None = None
        self._waiter: concurrent.futures.ThreadPoolExecutor | None = None
        self._writes = 0
        self._checkpoint: asyncio.Future[Any] | None = None

    def _connect(self, busy_timeout_ms: int) -> sqlite3.Connection:
        # Autocommit (isolation_level=None): every statement is its own transaction.
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=64
        )
        conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def _call(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        conn = self._loop_conn
        if conn is None:
            conn = self._loop_conn = self._connect(0)
            # Its commits never checkpoint (a checkpoint copies the WAL into the database and
            # fsyncs both: milliseconds on the loop); _wrote() has the thread do it instead.
            conn.execute("PRAGMA wal_autocheckpoint=0")
        try:
            return work(conn)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in (_SQLITE_BUSY, _SQLITE_LOCKED):
                raise
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(None, None, exc) from None
        # Another connection holds the lock: wait for it in the thread, never on the loop.
        try:
            return await self._in_thread(work)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(None, None, exc) from None

    def _in_thread(self, work: Callable[[sqlite3.Connection], Any]) -> asyncio.Future[Any]:
        if self._waiter is None:
            self._waiter = concurrent.futures.ThreadPoolExecutor(1, "bastion-sqlite")
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._waiter, self._on_waiting_connection, work)

    def _wrote(self) -> None:
        """Count a write; every CHECKPOINT_EVERY writes, checkpoint the WAL in the thread
        (PASSIVE: it never waits for readers or writers, and never blocks the loop)."""
        self._writes += 1
        if self._writes < CHECKPOINT_EVERY or self._checkpoint is not None:
            return
        self._writes = 0
        self._checkpoint = self._in_thread(_checkpoint)
        self._checkpoint.add_done_callback(self._checkpointed)

    def _checkpointed(self, done: asyncio.Future[Any]) -> None:
        self._checkpoint = None
        if not done.cancelled() and done.exception() is not None:
            log.warning("WAL checkpoint failed: %s", done.exception())

    def _on_waiting_connection(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._waiting_conn is None:
            self._waiting_conn = self._connect(_BUSY_TIMEOUT_MS)
        return work(self._waiting_conn)

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)

    async def _fetch(self, compiled: _Compiled, args: list[Any], limit: int) -> list[Any]:
        def work(conn: sqlite3.Connection) -> list[Any]:
            cursor = conn.execute(compiled.sql, args)
            try:
                return cursor.fetchmany(limit) if limit else cursor.fetchall()
            finally:
                cursor.close()

        rows: list[Any] = await self._call(work)
        return rows

    async def _execute(self, compiled: _Compiled, args: list[Any]) -> int:
        def work(conn: sqlite3.Connection) -> int:
            return conn.execute(compiled.sql, args).rowcount

        count: int = await self._call(work)
        self._wrote()
        return count

    async def close(self) -> None:
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])
        if self._waiter is not None:
            self._waiter.shutdown(wait=True)
            self._waiter = None
        for conn in (self._loop_conn, self._waiting_conn):
            if conn is not None:
                conn.close()
        self._loop_conn = self._waiting_conn = None


def _checkpoint(conn: sqlite3.Connection) -> Any:
    return conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()


class _PostgresDirect(Direct):
    """A :class:`~bastion.service.pg_pool.PgPool` of asyncpg connections (opened on first
    use, in the worker's event loop)."""

    def __init__(self, dialect: Dialect, connect: dict[str, Any]) -> None:
        super().__init__(dialect)
        self.connect = connect
        self._pool: PgPool | None = None

    def _get_pool(self) -> PgPool:
        pool = self._pool
        if pool is None:
            from bastion.service.pg_pool import PgPool

            pool = self._pool = PgPool(self.connect, max_size=POOL_SIZE)
        return pool

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        import asyncpg

        return (asyncpg.PostgresError, asyncpg.InterfaceError, *_connection_lost(asyncpg))

    async def _fetch(self, compiled: _Compiled, args: list[Any], limit: int) -> list[Any]:
        import asyncpg

        pool = self._pool or self._get_pool()
        for attempt in (1, 2):
            try:
                if limit == 1:
                    row = await pool.fetchrow(compiled.sql, *args)
                    return [] if row is None else [row]
                return await pool.fetch(compiled.sql, *args)
            except _connection_lost(asyncpg):
                if attempt == 2:  # a read is safe to retry once on a fresh connection
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _execute(self, compiled: _Compiled, args: list[Any]) -> int:
        import asyncpg

        pool = self._pool or self._get_pool()
        try:
            status = await pool.execute(compiled.sql, *args)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError(None, None, exc) from None
        return int(status.rsplit(" ", 1)[-1]) if status[-1:].isdigit() else 0

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


def _connection_lost(asyncpg: Any) -> tuple[type[BaseException], ...]:
    """What asyncpg raises when a pooled connection died under it: closed by the server
    (restart, ``pg_terminate_backend``: depending on when the FATAL message arrives, a
    connection error, ``AdminShutdownError`` or a protocol-state ``InternalClientError``)."""
    return (
        asyncpg.PostgresConnectionError,
        asyncpg.AdminShutdownError,
        asyncpg.InterfaceError,
        asyncpg.exceptions.InternalClientError,
        ConnectionError,
    )


_PING = Query(text("SELECT 1"))


class Database:
    """The engine, a session factory, the direct request path, schema creation and a probe."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # hide_parameters: a failed statement's message (logged with the 500) never carries
        # its bound values (emails, hashes, token digests).
        options: dict[str, Any] = {"pool_pre_ping": not self.is_sqlite, "hide_parameters": True}
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
        self.direct: Direct = self._direct()

    def _direct(self) -> Direct:
        dialect = self.engine.dialect
        if self.is_sqlite:
            path = self.engine.url.database or ""
            if path in ("", ":memory:") or path.startswith("file:"):
                raise ConfigError(
                    setting_name("database_url"),
                    "an in-memory SQLite database cannot be shared between connections: "
                    "give a file",
                )
            return _SqliteDirect(dialect, path)
        if dialect.driver != "asyncpg":
            raise ConfigError(setting_name("database_url"), f"unusable driver: {_DRIVERS}")
        _args, options = dialect.create_connect_args(self.engine.url)
        connect = dict(options)
        cache = connect.pop("prepared_statement_cache_size", None)
        if cache is not None:
            connect["statement_cache_size"] = int(cache)
        # SQLAlchemy-only options of its asyncpg dialect, meaningless to asyncpg itself.
        for name in ("async_fallback", "prepared_statement_name_func"):
            connect.pop(name, None)
        return _PostgresDirect(dialect, connect)

    async def create_schema(self) -> None:
        """Create missing tables from the models (idempotent): for tests and benchmarks.
        `bastion serve` runs the migrations instead (:mod:`bastion.service.migrate`)."""
        async with self.engine.begin() as conn:
            await lock_schema(conn)
            await conn.run_sync(Base.metadata.create_all)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def ping(self) -> bool:
        """True when a trivial query succeeds on the request path within 5 s (for /healthz)."""
        return await self.direct.healthy()

    def pool_use(self) -> dict[str, int]:
        """Connections of this process's pools (for the metrics): ``<pool>.<in_use|idle>``,
        ``direct`` being the request path's PostgreSQL pool and ``orm`` SQLAlchemy's."""
        out: dict[str, int] = {}
        direct = getattr(self.direct, "_pool", None)
        if direct is not None:
            out["direct.in_use"], out["direct.idle"] = direct.in_use, direct.idle
        pool: Any = self.engine.pool
        if hasattr(pool, "checkedout"):
            out["orm.in_use"], out["orm.idle"] = pool.checkedout(), pool.checkedin()
        return out

    async def close(self) -> None:
        await self.direct.close()
        await self.engine.dispose()


#: PostgreSQL advisory lock key ("bastion" in ASCII) held while tables are created.
SCHEMA_LOCK = 0x62617374696F6E


async def lock_schema(conn: AsyncConnection) -> None:
    """Serialise schema creation across hosts for the rest of *conn*'s transaction.

    Hosts started together against an empty PostgreSQL database would race their
    ``CREATE TABLE``s, and the loser fails on a unique index of the catalog; SQLite's write
    lock already serialises it.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS:d}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
