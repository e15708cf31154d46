"""The signing keys of a deployment: one ring in its database, shared by every host.

Where the keys live (``BASTION_KEY_STORE``): ``auto`` keeps them in the database when it is a
server database (PostgreSQL, shared by every host behind the load balancer) and in the data
directory with SQLite (one host); ``database`` and ``data-dir`` force either.

In the database, the table ``signing_keys`` holds one row per key: its public facts (``kid``,
``alg``, ``created``, ``retired``), the id of the key-encryption key that sealed it, and the
private key (PKCS#8 DER) sealed with AES-256-GCM, bound to its ``kid`` and ``alg``
(:mod:`bastion.auth.key_encryption`). The one-row table ``signing_key_ring`` holds a version
that every change increments.

* **Writers** (start-up, ``bastion keys rotate``) first run an ``UPDATE`` of the version row:
  it takes that row's lock (PostgreSQL) or the write lock (SQLite) until commit, so writers
  on every host queue there, each sees what the previous one committed, and two hosts that
  start together create one key, not two.
* **Readers**: a watcher in each process polls the version every ``poll_interval`` (2 s)
  in the background, so a rotation reaches every host within that (plus one reload) and
  issuing a token never waits on the database. A token signed by a key this process has not
  loaded yet (rotated on another host a moment ago) makes the ring ask the database at once
  (:class:`~bastion.auth.keys.KeyRing`), bounded by ``fresh_timeout`` and to once per second.
* The ring is synchronous (it sits on the token hot path), the database driver is async:
  the store runs its queries on a private event loop in one daemon thread, never on the
  caller's loop.
* **What the sealing protects against**: a dump, a backup or a read-only breach of the
  database yields no key that signs (confidentiality), and someone who can write rows but has
  no key-encryption key cannot plant a signing key of their own, nor move a sealed key to
  another row (every row is authenticated on every read). Write access to the database is
  not otherwise defended here: it could rewrite the accounts themselves.
* **Migration** from one host: the first start against the database imports the on-disk
  ring (``<data dir>/keys``) so tokens already out stay valid, then deletes the key files there
  (a key left in clear on one disk would defeat sealing it in the database).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import threading
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, TypeVar, cast

from cryptography.hazmat.primitives import serialization
from sqlalchemy import (
    BigInteger,
    Double,
    Integer,
    LargeBinary,
    String,
    Table,
    delete,
    insert,
    select,
)
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column

from bastion.auth.key_encryption import HOW_TO_GENERATE, KeyEncryptionKey, SealBroken
from bastion.auth.keys import (
    DirectoryKeyStore,
    KeyRecord,
    KeyRing,
    KeyStore,
    PrivateKey,
    RingChange,
)
from bastion.config import Settings
from bastion.errors import ConfigError
from bastion.service.db import Base, lock_schema

__all__ = [
    "DatabaseKeyStore",
    "SigningKeyRingVersion",
    "SigningKeyRow",
    "import_directory_ring",
    "key_ring",
    "prepare",
]

log = logging.getLogger("bastion.keys")

POLL_INTERVAL = 2.0  # seconds between the watcher's polls of the ring version
TIMEOUT = 10.0  # bound on one start-up or rotation exchange with the database
FRESH_TIMEOUT = 0.5  # bound on the direct look after an unknown kid (it blocks a request)
KEK_SETTING = "BASTION_KEY_ENCRYPTION_KEY"
DATABASE_SETTING = "BASTION_DATABASE_URL"
_RING_ID = 1

T = TypeVar("T")


class SigningKeyRow(Base):
    """One signing key of the deployment: public facts, and its private key sealed."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(128), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    created: Mapped[float] = mapped_column(Double)
    retired: Mapped[float | None] = mapped_column(Double, default=None)
    kek_id: Mapped[str] = mapped_column(String(32))
    sealed_key: Mapped[bytes] = mapped_column(LargeBinary)


class SigningKeyRingVersion(Base):
    """One row: the ring's version, incremented by every change (what watchers poll)."""

    __tablename__ = "signing_key_ring"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


_keys = cast(Table, SigningKeyRow.__table__)
_ring = cast(Table, SigningKeyRingVersion.__table__)


class _Bridge:
    """A private event loop in a daemon thread, for synchronous callers of async queries."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="bastion-signing-keys", daemon=True
        )
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


def _reason(exc: BaseException) -> str:
    """A short cause for a message: never the URL (it may hold a password) nor SQL text."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    original = getattr(exc, "orig", None)
    return (original or exc).__class__.__name__


class DatabaseKeyStore:
    """A :class:`~bastion.auth.keys.KeyStore` in the deployment's database (module docstring).

    *kek* seals and opens the private keys; *kek_setting* is the setting named when it does
    not match the database. *watch* starts the background poll (servers; not the CLI).
    """

    def __init__(
        self,
        url: str,
        kek: KeyEncryptionKey,
        *,
        kek_setting: str = KEK_SETTING,
        watch: bool = False,
        poll_interval: float = POLL_INTERVAL,
        timeout: float = TIMEOUT,
        fresh_timeout: float = FRESH_TIMEOUT,
    ) -> None:
        if poll_interval <= 0 or timeout <= 0 or fresh_timeout <= 0:
            raise ConfigError("DatabaseKeyStore", "intervals and timeouts must be positive")
        self.kek = kek
        self.kek_setting = kek_setting
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.fresh_timeout = fresh_timeout
        options: dict[str, Any] = {}
        if url.startswith("sqlite"):
            options["connect_args"] = {"timeout": 30}
        else:  # one connection serves the watcher; a second the rare rotation or fresh look
            options.update(pool_size=1, max_overflow=2, pool_pre_ping=True)
        self._engine: AsyncEngine = create_async_engine(url, **options)
        self._bridge = _Bridge()
        self._schema_ready = False
        self._sealed: dict[str, tuple[str, str, bytes]] = {}  # kid -> (alg, kek_id, sealed)
        self._seen: int | None = None  # the last version read (by anyone) or polled
        self._failing = False
        self._closed = False
        self._watcher: concurrent.futures.Future[None] | None = None
        if watch:
            self._watcher = self._bridge.submit(self._watch())

    # --- the KeyStore protocol -----------------------------------------------------------------

    def describe(self, kid: str | None = None) -> str:
        if kid is None:
            return "the signing keys in the database"
        return f"signing key {kid} in the database"

    def stamp(self, *, fresh: bool) -> Hashable | None:
        if self._watcher is not None and (not fresh or self._failing):
            # The watcher's answer: no wait. While the database fails to answer it, a flood
            # of unknown kids must not each wait for a timeout on the event loop.
            return self._seen
        try:
            self._seen = self._run(self._version(), self.fresh_timeout)
        except ConfigError as exc:
            self._set_failing(exc.problem)
        return self._seen

    def read(self) -> tuple[Hashable, list[KeyRecord]] | None:
        version, rows = self._run(self._read(), self.timeout)
        sealed = {row.kid: (row.alg, row.kek_id, row.sealed_key) for row in rows}
        # Every row is authenticated on every read, not only the keys not parsed yet: a
        # running host that finds the ring tampered with refuses the new state (and logs it)
        # instead of noticing only at its next restart.
        for kid, (alg, kek_id, blob) in sealed.items():
            self._open(kid, alg, kek_id, blob)
        self._seen = version
        self._sealed = sealed
        if not rows:
            return None
        records = [KeyRecord(row.kid, row.alg, row.created, row.retired) for row in rows]
        return version, records

    def private_key(self, record: KeyRecord) -> PrivateKey:
        sealed = self._sealed.get(record.kid)
        if sealed is None:
            raise ConfigError(self.describe(record.kid), "is not in the database")
        alg, kek_id, blob = sealed
        der = self._open(record.kid, alg, kek_id, blob)
        try:
            private = serialization.load_der_private_key(der, password=None)
        except (ValueError, TypeError):
            private = None
        if alg != record.alg or not isinstance(private, PrivateKey):
            raise ConfigError(self.describe(record.kid), "is not a usable signing key")
        return private

    def _open(self, kid: str, alg: str, kek_id: str, blob: bytes) -> bytes:
        self._check_kek_id(kid, kek_id)
        try:
            return self.kek.open(blob, kid=kid, alg=alg)
        except SealBroken:
            raise ConfigError(
                self.describe(kid),
                "fails authentication: the row was altered, or holds another row's sealed key "
                "(refused)",
            ) from None

    def update(self, change: Callable[[RingChange], None]) -> None:
        self._run(self._update(change), self.timeout)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
        try:
            self._bridge.run(self._engine.dispose(), self.timeout)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning("signing keys: closing the database connections failed (%s)", _reason(exc))
        finally:
            self._bridge.close()

    # --- queries (on the bridge's loop) --------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        if self._closed:
            coro.close()
            raise ConfigError("signing keys", "the database key store is closed")
        try:
            return self._bridge.run(self._with_schema(coro), timeout)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise ConfigError(
                DATABASE_SETTING, f"the signing keys cannot be reached ({_reason(exc)})"
            ) from None

    async def _with_schema(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            if not self._schema_ready:
                await self._create_schema()
                self._schema_ready = True
        except BaseException:
            coro.close()
            raise
        return await coro

    async def _create_schema(self) -> None:
        """The two tables and the version row, if missing (idempotent; hosts may race)."""
        async with self._engine.begin() as conn:
            await lock_schema(conn)
            await conn.run_sync(Base.metadata.create_all, tables=[_keys, _ring])
        async with self._engine.begin() as conn:
            exists = await conn.scalar(select(_ring.c.id).where(_ring.c.id == _RING_ID))
        if exists is None:
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(insert(_ring).values(id=_RING_ID, version=0))
            except IntegrityError:
                pass  # another host inserted it first

    async def _version(self) -> int | None:
        async with self._engine.connect() as conn:
            version = await conn.scalar(select(_ring.c.version).where(_ring.c.id == _RING_ID))
        return None if version is None else int(version)

    async def _read(self) -> tuple[int, list[Any]]:
        async with self._engine.connect() as conn:
            # The version before the rows: a rotation committed in between leaves a version
            # older than the rows, so the next poll reloads; never the reverse (a new version
            # stamped on old rows would hide the rotation until the next one).
            version = await conn.scalar(select(_ring.c.version).where(_ring.c.id == _RING_ID))
            rows = (await conn.execute(select(_keys).order_by(_keys.c.created, _keys.c.kid))).all()
        return int(version or 0), list(rows)

    async def _update(self, change: Callable[[RingChange], None]) -> None:
        async with self._engine.begin() as conn:
            # The lock (module docstring): held until this transaction ends.
            await conn.execute(
                sql_update(_ring).where(_ring.c.id == _RING_ID).values(version=_ring.c.version)
            )
            rows = (await conn.execute(select(_keys))).all()
            for row in rows:
                self._check_kek_id(row.kid, row.kek_id)  # never mix keys sealed by two KEKs
            before = {r.kid: KeyRecord(r.kid, r.alg, r.created, r.retired) for r in rows}
            edit = RingChange(list(before.values()))
            change(edit)
            if await self._write(conn, before, edit):
                await conn.execute(
                    sql_update(_ring)
                    .where(_ring.c.id == _RING_ID)
                    .values(version=_ring.c.version + 1)
                )

    async def _write(
        self, conn: AsyncConnection, before: dict[str, KeyRecord], edit: RingChange
    ) -> bool:
        after = {record.kid: record for record in edit.records}
        changed = False
        for kid in before.keys() - after.keys():
            await conn.execute(delete(_keys).where(_keys.c.kid == kid))
            changed = True
        for kid, record in after.items():
            old = before.get(kid)
            if old is None:
                private = edit.new_keys.get(kid)
                if private is None:
                    raise ConfigError(self.describe(kid), "added without its private key")
                der = private.private_bytes(
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                await conn.execute(
                    insert(_keys).values(
                        kid=kid,
                        alg=record.alg,
                        created=record.created,
                        retired=record.retired,
                        kek_id=self.kek.key_id,
                        sealed_key=self.kek.seal(der, kid=kid, alg=record.alg),
                    )
                )
                changed = True
            elif old != record:
                if old.alg != record.alg:
                    raise ConfigError(self.describe(kid), "a key's algorithm never changes")
                await conn.execute(
                    sql_update(_keys)
                    .where(_keys.c.kid == kid)
                    .values(created=record.created, retired=record.retired)
                )
                changed = True
        return changed

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                async with asyncio.timeout(self.timeout):
                    if not self._schema_ready:
                        await self._create_schema()
                        self._schema_ready = True
                    version = await self._version()
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                self._set_failing(_reason(exc))
                continue
            self._set_failing(None)
            self._seen = version

    def _set_failing(self, reason: str | None) -> None:
        """Note whether the database answers; log each change of state once."""
        if reason is not None and not self._failing:
            log.warning(
                "signing keys: the database does not answer (%s); still using the loaded keys",
                reason,
            )
        elif reason is None and self._failing:
            log.warning("signing keys: the database answers again")
        self._failing = reason is not None

    def _check_kek_id(self, kid: str, kek_id: str) -> None:
        if kek_id != self.kek.key_id:
            raise ConfigError(
                self.kek_setting,
                f"is not the key that sealed the signing keys in the database (key id "
                f"{self.kek.key_id}, theirs {kek_id}): every host needs the same key",
            )


# --- wiring ----------------------------------------------------------------------------------


def key_store(settings: Settings, *, watch: bool = False) -> KeyStore:
    """The store the settings configure (module docstring); ConfigError when unusable."""
    directory = DirectoryKeyStore(settings.data_dir / "keys")
    if not settings.keys_in_database:
        return directory
    text = settings.key_encryption_key_text()
    if text is None:
        raise ConfigError(
            KEK_SETTING,
            "required: the signing keys are kept in the database, sealed with this key; "
            f"{HOW_TO_GENERATE} and give the same one to every host",
        )
    setting = KEK_SETTING if settings.key_encryption_key is not None else f"{KEK_SETTING}_FILE"
    return DatabaseKeyStore(
        settings.database, KeyEncryptionKey.parse(text), kek_setting=setting, watch=watch
    )


def key_ring(settings: Settings, *, watch: bool = False) -> KeyRing:
    """The deployment's key ring, as the settings configure it (not loaded yet)."""
    return KeyRing(
        key_store(settings, watch=watch),
        alg=settings.jwt_alg,
        token_ttl=settings.access_token_ttl,
    )


def import_directory_ring(ring: KeyRing, directory: DirectoryKeyStore) -> list[str]:
    """Copy the unexpired keys of an on-disk ring into *ring*'s store; return their kids.

    Into an empty ring the keys come with their state, so the signing key stays the signing
    key. Into a ring that another host has filled already, they come retired: they verify
    the tokens this host issued until those expire, and the ring keeps one signing key.
    Then the directory is retired (its private key files are deleted).
    """
    snapshot = directory.read()
    if snapshot is None:
        return []
    _, records = snapshot
    imported: list[str] = []

    def change(edit: RingChange) -> None:
        imported.clear()  # a retried transaction starts over
        now = ring.clock()
        first = not edit.records
        present = {record.kid for record in edit.records}
        for record in records:
            if record.kid in present or ring.is_expired(record, now):
                continue
            if not first and record.retired is None:
                record = dataclasses.replace(record, retired=now)
            edit.add(record, directory.private_key(record))
            imported.append(record.kid)

    ring.store.update(change)
    try:
        directory.retire()
    except OSError as exc:
        log.warning(
            "signing keys: could not delete the key files in %s (%s)",
            directory.directory,
            exc.strerror,
        )
    log.warning(
        "signing keys: imported %d key(s) from %s into the database; the key files there were "
        "deleted",
        len(imported),
        directory.directory,
    )
    return imported


def prepare(settings: Settings) -> KeyRing:
    """Start-up work (the parent, before workers; ``bastion keys``): import an on-disk ring
    into the database on the first start against it, then make sure a signing key exists.

    Returns the ring, loaded; the caller closes it.
    """
    ring = key_ring(settings)
    try:
        store = ring.store
        if isinstance(store, DatabaseKeyStore):
            import_directory_ring(ring, DirectoryKeyStore(settings.data_dir / "keys"))
        key = ring.ensure()
    except BaseException:
        ring.close()
        raise
    if isinstance(store, DatabaseKeyStore):
        # The key id tells operators at a glance whether two hosts were given the same key.
        where = f"in the database, sealed with key-encryption key {store.kek.key_id}"
    else:
        where = f"in {ring.directory}"
    # A key id is public (every token header carries it), but a whole one reads like a secret
    # to the log redaction; its first characters match it against `bastion keys list`.
    log.info("signing keys %s; signing with key %s... (%s)", where, key.kid[:12], key.alg)
    return ring
