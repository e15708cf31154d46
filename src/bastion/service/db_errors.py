"""Why the database cannot be used, as one line naming ``BASTION_DATABASE_URL`` and the fix.

``bastion serve`` opens the database once before any worker starts; when that fails, the
operator should read what to do (start PostgreSQL, create the database, fix the role), not
an asyncpg or SQLAlchemy traceback. Messages name the host, port and database of the URL,
never its password.
"""

from __future__ import annotations

import socket

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from bastion.config import setting_name
from bastion.errors import ConfigError

__all__ = ["VARIABLE", "connect_error"]

VARIABLE = setting_name("database_url")

# PostgreSQL SQLSTATE classes (Appendix A of the PostgreSQL manual) and what to do about them.
_SQLSTATE_FIXES = {
    "3D000": "database {database!r} does not exist: create it (createdb {database})",
    "28000": "PostgreSQL refused the role: check the user name in the URL and pg_hba.conf",
    "28P01": "PostgreSQL refused the password: check the user and password in the URL",
    "53300": "PostgreSQL has too many connections: raise max_connections or use fewer workers",
    "57P03": "PostgreSQL is starting up or shutting down: try again in a moment",
}


def _where(url: str) -> tuple[str, str, str]:
    try:
        parsed = make_url(url)
    except ArgumentError:  # pragma: no cover - Settings only lets well-formed URLs through
        return "the database", "", ""
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {parsed.database or ':memory:'}", "", ""
    host = parsed.host or "localhost"
    shown = f"[{host}]" if ":" in host else host
    return f"PostgreSQL at {shown}:{parsed.port or 5432}", host, parsed.database or ""


def connect_error(exc: BaseException, url: str) -> ConfigError:
    """A one-line :class:`ConfigError` for a failure to open or prepare the database."""
    where, host, database = _where(url)
    if isinstance(exc, socket.gaierror):
        problem = f"cannot resolve the host name {host!r}: fix the host in the URL"
    elif isinstance(exc, ConnectionRefusedError):
        problem = f"cannot connect to {where} (connection refused): start it or fix the URL"
    elif isinstance(exc, TimeoutError):
        problem = f"cannot connect to {where} (timed out): check the host, port and firewall"
    elif isinstance(exc, OSError):
        reason = exc.strerror or exc.__class__.__name__
        problem = f"cannot connect to {where} ({reason}): check the URL"
    elif isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None)
        fix = _SQLSTATE_FIXES.get(str(sqlstate))
        if fix is not None:
            problem = f"{where}: " + fix.format(database=database)
        elif "unable to open database file" in str(exc.orig):
            problem = f"cannot open {where}: check that its directory exists and is writable"
        else:
            detail = f"SQLSTATE {sqlstate}" if sqlstate else exc.orig.__class__.__name__
            problem = f"{where} refused the connection ({detail}): check the URL"
    else:
        problem = f"cannot use {where} ({exc.__class__.__name__}): check the URL"
    return ConfigError(VARIABLE, problem)
