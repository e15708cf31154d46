"""One Alembic revision per file (not imported as a package; alembic loads them)."""
