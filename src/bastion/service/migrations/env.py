"""Alembic's environment: run the revisions on the connection bastion.service.migrate gives.

Online only (no ``--sql`` mode): the connection, already inside a transaction that holds the
schema lock, arrives in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from bastion.service.migrate import target_metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only bastion.service.migrate runs this
    raise RuntimeError("run migrations with `bastion db upgrade`")

context.configure(
    connection=connection,
    target_metadata=target_metadata(),
    # SQLite alters a table by copying it ("batch" mode): future revisions use
    # op.batch_alter_table so that one revision serves both databases.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
