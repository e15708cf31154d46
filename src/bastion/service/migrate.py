"""The database schema's revision: what it is, and bringing it to this version's head.

The revisions are Alembic's, shipped in the package (:mod:`bastion.service.migrations`), and
one set serves SQLite and PostgreSQL. They run on the service's own async engine (aiosqlite,
asyncpg), inside one transaction that holds the schema lock (``db.lock_schema``), so hosts
started together against one PostgreSQL database migrate it once.

A database made by ``create_all`` before migrations existed has bastion's tables and no
``alembic_version`` table. It is recognised rather than broken: when its tables and columns
are exactly those of a known revision, it is stamped with that revision and upgraded from
there; anything else (some tables missing, a column unknown) stops with one line, since no
revision can be applied to it safely.

What ``bastion serve`` does (:func:`ensure`): an empty database gets the whole schema; a
schema at the head (recorded, or recognised and then stamped) is used as is; an older one
stops the start with one line naming ``bastion db upgrade``, unless ``--migrate`` was given;
a revision this version does not know (a newer bastion migrated it) stops the start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bastion.config import setting_name
from bastion.errors import ConfigError
from bastion.service.db import Database, lock_schema

__all__ = ["KNOWN_SCHEMAS", "SchemaState", "ensure", "head", "state", "target_metadata", "upgrade"]

if TYPE_CHECKING:
    from alembic.config import Config

VARIABLE = setting_name("database_url")

_USERS = ("id", "email", "password_hash", "role", "created_at")
_REFRESH = (
    "id",
    "token_hash",
    "user_id",
    "family_id",
    "expires_at",
    "revoked",
    "revoked_at",
    "created_at",
)
_RESET = ("id", "token_hash", "user_id", "expires_at", "used_at", "created_at")
_ORDERS = ("id", "user_id", "product_id", "quantity", "street", "city", "country", "created_at")
_CODES = (
    "code_hash",
    "client_id",
    "redirect_uri",
    "code_challenge",
    "user_id",
    "expires_at",
    "used_at",
    "replayed",
    "family_id",
    "created_at",
)
_SESSIONS = ("session_hash", "user_id", "password_fingerprint", "expires_at", "created_at")
_0001 = {
    "users": _USERS,
    "refresh_tokens": _REFRESH,
    "password_reset_tokens": _RESET,
    "orders": _ORDERS,
    "oauth_codes": _CODES,
    "oauth_sessions": _SESSIONS,
}
_0002 = {
    **_0001,
    "signing_keys": ("kid", "alg", "created", "retired", "kek_id", "sealed_key"),
    "signing_key_ring": ("id", "version"),
}
_0003 = {**_0002, "users": (*_USERS, "email_key")}
#: The tables and columns ``create_all`` made at each revision, before migrations existed
#: (0003: a database made by ``create_all`` during 0.2's development).
KNOWN_SCHEMAS: dict[str, dict[str, tuple[str, ...]]] = {
    "0001": _0001,
    "0002": _0002,
    "0003": _0003,
}
_OURS = frozenset(_0003)
#: Made on first use by the database key store (``bastion keys rotate`` may run before the
#: first start): revision 0002 keeps them when they exist already.
_KEY_TABLES = frozenset({"signing_keys", "signing_key_ring"})


def target_metadata() -> sa.MetaData:
    """Every table of the service's models (what ``alembic revision --autogenerate`` compares)."""
    import bastion.service.models
    import bastion.service.oauth_store
    import bastion.service.signing_keys  # noqa: F401 - registers the tables on Base
    from bastion.service.db import Base

    return Base.metadata


def _config(connection: Connection | None = None) -> Config:
    # Alembic narrates each step at INFO (its plugins as it is imported, "transactional
    # DDL"); bastion logs what changed itself, in one line (service/main.py, cli/db.py).
    # Imported here, after that, and only by the process that migrates (never a worker).
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "bastion.service:migrations")
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this version of bastion knows."""
    config = _config()
    from alembic.script import ScriptDirectory

    found = ScriptDirectory.from_config(config).get_current_head()
    if found is None:  # pragma: no cover - the package ships its revisions
        raise RuntimeError("no migration revisions in the package")
    return found


def _known(revision: str) -> bool:
    config = _config()
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(config)
    return any(rev.revision == revision for rev in script.walk_revisions())


@dataclass(frozen=True)
class SchemaState:
    """A database's schema: its recorded revision, or the revision its unrecorded tables
    match (``legacy``), or nothing at all (``empty``)."""

    revision: str | None
    legacy: str | None = None

    @property
    def current(self) -> str | None:
        return self.revision or self.legacy

    @property
    def empty(self) -> bool:
        return self.current is None

    def describe(self) -> str:
        if self.revision is not None:
            suffix = " (head)" if self.revision == head() else f" (head is {head()})"
            return f"{self.revision}{suffix}"
        if self.legacy is not None:
            return (
                f"none recorded; the tables match revision {self.legacy} "
                "(created before migrations): `bastion db upgrade` records it"
            )
        return f"none (an empty database; `bastion db upgrade` creates revision {head()})"


def _inspect(conn: Connection) -> SchemaState:
    _config()  # quiets alembic before it is imported
    from alembic.migration import MigrationContext

    recorded = MigrationContext.configure(conn).get_current_revision()
    if recorded is not None:
        return SchemaState(recorded)
    inspector = sa.inspect(conn)
    present = set(inspector.get_table_names()) & _OURS
    if not present - _KEY_TABLES:
        return SchemaState(None)
    for revision, tables in KNOWN_SCHEMAS.items():
        if present == set(tables) and all(
            {column["name"] for column in inspector.get_columns(table)} == set(columns)
            for table, columns in tables.items()
        ):
            return SchemaState(None, legacy=revision)
    raise ConfigError(
        VARIABLE,
        f"the database holds some of bastion's tables ({', '.join(sorted(present))}) but "
        "matches no known schema and records no revision: restore it from a backup, or "
        "give an empty database",
    )


def _upgrade(conn: Connection) -> tuple[SchemaState, str]:
    from alembic import command

    before = _inspect(conn)
    config = _config(conn)
    if before.revision is not None and not _known(before.revision):
        raise _newer(before.revision)
    if before.legacy is not None:
        command.stamp(config, before.legacy)
    command.upgrade(config, "head")
    return before, head()


def _ensure(conn: Connection, migrate: bool) -> tuple[SchemaState, str]:
    before = _inspect(conn)
    target = head()
    if before.revision is not None and not _known(before.revision):
        raise _newer(before.revision)
    if before.current == target:
        if before.legacy is not None:
            from alembic import command

            command.stamp(_config(conn), target)  # the same tables: only the record is added
        return before, target
    if before.empty or migrate:
        return _upgrade(conn)
    raise ConfigError(
        VARIABLE,
        f"the database schema is at revision {before.current}, this version needs {target}: "
        "run `bastion db upgrade` (or start with `bastion serve --migrate`)",
    )


def _newer(revision: str) -> ConfigError:
    return ConfigError(
        VARIABLE,
        f"the database schema is at revision {revision!r}, which this version of bastion does "
        "not know (a newer version migrated it): run that version, or restore a backup",
    )


async def _locked(database: Database, work: Any, *args: Any) -> Any:
    async with database.engine.begin() as conn:
        await lock_schema(conn)
        return await conn.run_sync(work, *args)


async def state(database: Database) -> SchemaState:
    """The schema's revision, recorded or recognised (reads only)."""
    async with database.engine.connect() as conn:
        found: SchemaState = await conn.run_sync(_inspect)
        return found


async def upgrade(database: Database) -> tuple[SchemaState, str]:
    """Bring the schema to the head (stamping a schema made before migrations first)."""
    done: tuple[SchemaState, str] = await _locked(database, _upgrade)
    return done


async def ensure(database: Database, *, migrate: bool = False) -> tuple[SchemaState, str]:
    """What ``bastion serve`` does before workers start (module docstring)."""
    done: tuple[SchemaState, str] = await _locked(database, _ensure, migrate)
    return done
