"""Databases as ``create_all`` made them before migrations existed, at a known revision.

Today's tables, less the columns (and their indexes) that a later revision added: what an
existing deployment of that revision holds, for the migration tests to upgrade.
"""

from __future__ import annotations

import sqlalchemy as sa

from bastion.service import migrate
from bastion.service.db import Database

__all__ = ["create_legacy_schema"]


async def create_legacy_schema(database: Database, revision: str) -> None:
    """The tables of :data:`bastion.service.migrate.KNOWN_SCHEMAS` at *revision*."""
    metadata = migrate.target_metadata()
    schema = migrate.KNOWN_SCHEMAS[revision]
    tables = [metadata.tables[name] for name in schema]
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all, tables=tables)
        await conn.run_sync(_drop_later_columns, schema)


def _drop_later_columns(conn: sa.Connection, schema: dict[str, tuple[str, ...]]) -> None:
    inspector = sa.inspect(conn)
    for table, columns in schema.items():
        later = {c["name"] for c in inspector.get_columns(table)} - set(columns)
        for index in inspector.get_indexes(table):
            if later & set(index["column_names"]):
                conn.execute(sa.text(f'DROP INDEX "{index["name"]}"'))
        for column in sorted(later):
            conn.execute(sa.text(f'ALTER TABLE "{table}" DROP COLUMN "{column}"'))
