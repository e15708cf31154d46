"""`bastion db current|upgrade` and `bastion serve [--migrate]` against a database made by
the previous release's schema, as an operator meets them (real subprocesses; SQLite and
PostgreSQL, each test with a database of its own)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.service.db import Database
from tests.conftest import start_server
from tests.service.auth_db import database_env, postgres_database_sync, sqlite_url
from tests.service.legacy_schema import create_legacy_schema

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {"BASTION_DATABASE_URL": sqlite_url(tmp_path)}
        return
    with postgres_database_sync() as url:
        yield database_env(url)


def _previous_release_schema(url: str) -> None:
    async def create() -> None:
        database = Database(url)
        try:
            await create_legacy_schema(database, "0001")
        finally:
            await database.close()

    asyncio.run(create())


def _bastion(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    full.update(env, BASTION_DATA_DIR=str(tmp_path / "data"))
    return subprocess.run(
        [sys.executable, "-m", "bastion", *args],
        env=full,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_db_current_and_upgrade_on_the_previous_release_schema(
    tmp_path: Path, env: dict[str, str]
) -> None:
    _previous_release_schema(env["BASTION_DATABASE_URL"])
    current = _bastion(tmp_path, env, "db", "current")
    assert current.returncode == 0, current.stderr
    assert "match revision 0001" in current.stdout

    served = _bastion(tmp_path, env, "serve", "--port", "1", "--http-port", "0")
    assert served.returncode == 2
    lines = served.stderr.strip().splitlines()
    assert len(lines) == 1, served.stderr
    assert "bastion db upgrade" in lines[0] and "BASTION_DATABASE_URL" in lines[0]
    assert "Traceback" not in served.stderr

    upgraded = _bastion(tmp_path, env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip() == (
        "upgraded from revision 0001 (recorded: made before migrations) to 0003"
    )
    assert _bastion(tmp_path, env, "db", "current").stdout.strip() == "0003 (head)"
    again = _bastion(tmp_path, env, "db", "upgrade")
    assert again.stdout.strip() == "already at revision 0003 (head)"


def test_serve_migrate_upgrades_then_serves(tmp_path: Path, env: dict[str, str]) -> None:
    _previous_release_schema(env["BASTION_DATABASE_URL"])
    server = start_server(tmp_path, env=env, args=["--migrate"])
    try:
        with server.client() as client:
            assert client.get("/healthz").json()["database"] == "ok"
            registered = client.post(
                "/api/v1/auth/register",
                json={"email": "after-upgrade@example.com", "password": "a long enough passphrase"},
            )
            assert registered.status_code == 202
        assert "upgraded from revision 0001 to 0003" in server.log()
    finally:
        assert server.stop() == 0
    assert _bastion(tmp_path, env, "db", "current").stdout.strip() == "0003 (head)"


def test_db_upgrade_names_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    from tests.support import free_port

    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    done = _bastion(tmp_path, {"BASTION_DATABASE_URL": url}, "db", "upgrade")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "connection refused" in done.stderr
