"""The deployment's signing keys, sealed in the database (issue 19), and the ring's version
row that every host polls.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The database key store creates these two on first use (``bastion keys rotate`` may
    # have run before the first start): existing ones, with their keys, are kept.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "signing_keys" not in existing:
        _signing_keys()
    if "signing_key_ring" not in existing:
        _signing_key_ring()


def _signing_keys() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=128), nullable=False),
        sa.Column("alg", sa.String(length=16), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("retired", sa.Double(), nullable=True),
        sa.Column("kek_id", sa.String(length=32), nullable=False),
        sa.Column("sealed_key", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("kid"),
    )


def _signing_key_ring() -> None:
    op.create_table(
        "signing_key_ring",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("signing_key_ring")
    op.drop_table("signing_keys")
