"""Accounts looked up by their email key (issue 13): ``users.email_key``, the address with
ASCII letters lower-cased and nothing else folded, unique, and every existing row keyed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Rows written by 0.1 were stored ``casefold()``-ed, so each gets the key of its stored form.
Two rows whose addresses differ only in ASCII case collide: the oldest keeps the key, the
others stay without one (nobody can log in to them or reset them by email) and are logged by
id for an operator (:mod:`bastion.service.email_keys`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email_key", sa.String(length=254), nullable=True))
    op.create_index("ix_users_email_key", "users", ["email_key"], unique=True)
    from bastion.service.email_keys import upgrade_sync

    upgrade_sync(op.get_bind())  # the data step: key every row, oldest first


def downgrade() -> None:
    op.drop_index("ix_users_email_key", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email_key")
