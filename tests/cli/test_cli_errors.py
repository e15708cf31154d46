"""`bastion serve` with a bad database or data directory: one line, the variable, the fix.

Each case runs the real command as a subprocess, as an operator would, and holds it to the
contract's "one clear line": exit status non-zero, at most three lines on stderr, the
variable named, no traceback — and no password from the URL echoed back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.auth_db import database_env
from tests.support import free_port, require_program, require_tcp

pytestmark = pytest.mark.integration

SECRET = "pa55-w0rd-in-the-url"


def run_serve(
    tmp_path: Path, env: dict[str, str], *, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.upper().startswith("BASTION_")}
    full_env.setdefault("BASTION_DATA_DIR", str(tmp_path / "data"))
    full_env.update(env)
    command = [*prefix, sys.executable, "-m", "bastion", "serve"]
    command += ["--port", str(free_port()), "--http-port", "0"]
    return subprocess.run(
        command, env=full_env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode != 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 3, result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    return result.stderr.strip()


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        (f"postgresql://app:{SECRET}@127.0.0.1/app", "use postgresql+asyncpg://"),
        (f"mysql://app:{SECRET}@127.0.0.1/app", "mysql:// is not supported: use PostgreSQL"),
    ],
)  # every other spelling is checked in-process: tests/test_config.py
def test_database_url_with_the_wrong_driver(tmp_path: Path, url: str, fix: str) -> None:
    result = run_serve(tmp_path, {"BASTION_DATABASE_URL": url})
    assert_one_clear_line(result, "BASTION_DATABASE_URL", fix)
    assert result.returncode == 2


def test_unreachable_postgresql(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+asyncpg://app:{SECRET}@127.0.0.1:{port}/app"
    result = run_serve(tmp_path, database_env(url))
    line = assert_one_clear_line(result, "BASTION_DATABASE_URL")
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{port} (connection refused)" in line
    assert "start it or fix the URL" in line


def test_unknown_database_host(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://app:{SECRET}@no-such-host.invalid/app"
    result = run_serve(tmp_path, database_env(url))
    assert_one_clear_line(result, "BASTION_DATABASE_URL", "cannot resolve the host name")


@pytest.mark.postgres
def test_missing_database_and_role(tmp_path: Path) -> None:
    require_tcp("127.0.0.1", 5432, "PostgreSQL")
    missing_db = "postgresql+asyncpg://postgres@127.0.0.1:5432/bastion_no_such_db"
    result = run_serve(tmp_path, database_env(missing_db))
    assert_one_clear_line(
        result, "BASTION_DATABASE_URL", "'bastion_no_such_db' does not exist", "createdb"
    )
    missing_role = f"postgresql+asyncpg://nobody_here:{SECRET}@127.0.0.1:5432/test"
    result = run_serve(tmp_path, database_env(missing_role))
    assert_one_clear_line(result, "BASTION_DATABASE_URL", "PostgreSQL refused the")


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "a-file"
    path.write_text("not a directory")
    result = run_serve(tmp_path, {"BASTION_DATA_DIR": str(path)})
    assert_one_clear_line(result, "BASTION_DATA_DIR", f"{path} is a file, not a directory")
    below = run_serve(tmp_path, {"BASTION_DATA_DIR": str(path / "data")})
    assert_one_clear_line(below, "BASTION_DATA_DIR", f"{path} is a file, so")


def _unprivileged() -> tuple[str, ...]:
    """A command prefix under which directory permissions apply: nothing for a normal user;
    for root, setpriv dropping the capabilities that bypass them (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH), so a 0555 directory is read-only as it is for any service user."""
    if os.geteuid() != 0:
        return ()
    setpriv = require_program("setpriv", "util-linux drops root's permission bypass")
    return (setpriv, "--bounding-set=-dac_override,-dac_read_search")


def test_unwritable_data_dir(tmp_path: Path) -> None:
    prefix = _unprivileged()
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    read_only.chmod(0o555)  # mkdir's mode is masked by the umask
    try:
        existing = run_serve(tmp_path, {"BASTION_DATA_DIR": str(read_only)}, prefix=prefix)
        assert_one_clear_line(existing, "BASTION_DATA_DIR", f"{read_only} is not writable")
        below = run_serve(tmp_path, {"BASTION_DATA_DIR": str(read_only / "d")}, prefix=prefix)
        assert_one_clear_line(
            below, "BASTION_DATA_DIR", f"{read_only / 'd'} cannot be created", "not writable"
        )
    finally:
        read_only.chmod(0o755)


def test_unwritable_file_inside_the_data_dir(tmp_path: Path) -> None:
    """A directory inside the data dir that bastion cannot write (the TLS one): the settings
    check passes, the failure comes later, and is still one line naming the variable."""
    prefix = _unprivileged()
    data = tmp_path / "data"
    (data / "tls").mkdir(parents=True, mode=0o700)
    (data / "tls").chmod(0o500)
    try:
        result = run_serve(tmp_path, {"BASTION_DATA_DIR": str(data)}, prefix=prefix)
        assert_one_clear_line(result, "BASTION_DATA_DIR", str(data / "tls"), "Permission denied")
    finally:
        (data / "tls").chmod(0o700)
        shutil.rmtree(data / "tls")


def test_smtp_settings_are_checked_at_start(tmp_path: Path) -> None:
    result = run_serve(tmp_path, {"BASTION_MAILER": "smtp"})
    assert_one_clear_line(result, "BASTION_SMTP_HOST", "required when BASTION_MAILER=smtp")
    result = run_serve(
        tmp_path,
        {
            "BASTION_MAILER": "smtp",
            "BASTION_SMTP_HOST": "mail.example.test",
            "BASTION_MAIL_FROM": "no-reply@example.test",
            "BASTION_SMTP_USERNAME": "bastion",
            "BASTION_SMTP_PASSWORD_FILE": str(tmp_path / "missing-secret"),
        },
    )
    assert_one_clear_line(result, "BASTION_SMTP_PASSWORD_FILE", "cannot read")


def test_misspelt_variable_is_reported_with_the_right_name(tmp_path: Path) -> None:
    env = {
        "BASTION_CORS_ORIGIN": "https://app.example",  # the setting is CORS_ORIGINS
        "BASTION_SKIP_TIMING": "1",  # the suite's own variables are not settings, nor typos
        "BASTION_SLOW": "1",
        "BASTION_FUZZ_EXAMPLES": "10",
        "BASTION_DATABASE_URL": "mysql://x",  # stop the start right after the warnings
    }
    result = run_serve(tmp_path, env)
    lines = result.stderr.strip().splitlines()
    assert lines[0] == (
        "bastion: warning: BASTION_CORS_ORIGIN is not a bastion setting and is ignored; "
        "did you mean BASTION_CORS_ORIGINS?"
    )
    assert len(lines) == 2 and "BASTION_DATABASE_URL" in lines[1]
