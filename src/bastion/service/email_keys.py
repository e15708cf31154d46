"""The data step that gives every account its email lookup key (``users.email_key``).

Accounts created before keys existed were stored with ``str.casefold()`` applied, so their
address is already what ASCII-only folding yields for it, and :func:`upgrade` gives each its
key. Alembic revision 0003 runs it (:func:`upgrade_sync`); it is idempotent: it adds the column
and its unique index only when missing, and computes keys only for rows that have none.

Two rows collide when their addresses differ only in ASCII case (rows written outside the
service, or by an older version that kept the typed case). The oldest account (``created_at``,
then ``id``) keeps the key; the others keep their row, data and sessions but get no key, so
nobody can log in to them or reset them by email, and each is logged by id (never by address)
for an operator to merge or delete. Nobody gains an account that way; someone may lose the
use of one, which the operator restores by hand.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, inspect, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.auth.service import normalize_email
from bastion.service.models import User

log = logging.getLogger("bastion.db")

__all__ = ["upgrade", "upgrade_sync"]


async def upgrade(conn: AsyncConnection) -> int:
    """Add ``users.email_key`` if missing and key every unkeyed row; rows keyed now."""
    keyed: int = await conn.run_sync(upgrade_sync)
    return keyed


def upgrade_sync(conn: Connection) -> int:
    """:func:`upgrade` on a synchronous connection (Alembic's revision 0003 runs it)."""
    columns = {column["name"] for column in inspect(conn).get_columns("users")}
    if "email_key" not in columns:
        conn.execute(text("ALTER TABLE users ADD COLUMN email_key VARCHAR(254)"))
        log.warning("users.email_key added: accounts are now looked up by their ASCII-folded key")
    conn.execute(text("CREATE UNIQUE INDEX IF NOT EXISTS ix_users_email_key ON users (email_key)"))
    taken = set(conn.execute(select(User.email_key).where(User.email_key.is_not(None))).scalars())
    rows = conn.execute(
        select(User.id, User.email)
        .where(User.email_key.is_(None))
        .order_by(User.created_at, User.id)
    )
    keyed = 0
    for user_id, email in rows.all():
        key = normalize_email(email)
        if key in taken:
            log.warning(
                "account %s collides with an older account on its email key: left without a "
                "key (cannot log in or reset by email); merge or delete it",
                user_id,
            )
            continue
        conn.execute(update(User).where(User.id == user_id).values(email_key=key))
        taken.add(key)
        keyed += 1
    return keyed
