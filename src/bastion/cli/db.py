"""``bastion db``: the database schema's revision, and upgrading it.

``bastion db current`` prints the revision the database is at (or what its tables match, for
one made before migrations); ``bastion db upgrade`` brings it to this version's head (the
same revisions on SQLite and PostgreSQL). Back the database up first: a revision may
rewrite a table. ``bastion serve`` refuses an outdated schema unless started with
``--migrate`` (README "Going to production").
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bastion.config import load_settings


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("db", help="the database schema: current revision, upgrade")
    actions = p.add_subparsers(dest="db_command", required=True, parser_class=type(p))
    current = actions.add_parser("current", help="print the schema's revision")
    current.set_defaults(func=run_current)
    upgrade = actions.add_parser("upgrade", help="upgrade the schema to this version's head")
    upgrade.set_defaults(func=run_upgrade)


def run_current(_args: argparse.Namespace) -> int:
    from bastion.service import migrate

    state = asyncio.run(_with_database(migrate.state))
    print(state.describe())
    return 0


def run_upgrade(_args: argparse.Namespace) -> int:
    from bastion.service import migrate

    before, after = asyncio.run(_with_database(migrate.upgrade))
    if before.revision == after:
        print(f"already at revision {after} (head)")
    elif before.empty:
        print(f"created the schema at revision {after}")
    else:
        recorded = " (recorded: made before migrations)" if before.legacy else ""
        print(f"upgraded from revision {before.current}{recorded} to {after}")
    return 0


async def _with_database(work: Any) -> Any:
    from bastion.service.db import Database
    from bastion.service.db_errors import connect_error

    settings = load_settings()
    if settings.database.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    database = Database(settings.database)
    # A SQLite file (and its WAL) created here is the owner's only, as bastion serve makes it.
    umask = os.umask(0o077)
    try:
        return await work(database)
    except (OSError, SQLAlchemyError) as exc:
        raise connect_error(exc, settings.database) from None
    finally:
        os.umask(umask)
        await database.close()


__all__ = ["register"]
