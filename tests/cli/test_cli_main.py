"""The bastion command without an extra: the command exists, says which extra to install in
one line, exit status 2, no traceback — whether its module or a dependency it needs later is
missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bastion.cli.main import missing_extra_line


def run_without(modules: list[str], *argv: str) -> subprocess.CompletedProcess[str]:
    """``bastion <argv>`` in a fresh interpreter where *modules* cannot be imported."""
    block = "".join(f"sys.modules[{name!r}] = None; " for name in modules)
    code = (
        f"import sys; {block}"
        "from bastion.cli.main import main; raise SystemExit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("blocked", "argv", "extra"),
    [
        (["uvicorn"], ["serve"], "service"),
        (["uvicorn"], ["serve", "--port", "8443"], "service"),
        (["pydantic_settings"], ["serve"], "service"),
        (["sqlalchemy"], ["keys", "rotate"], "service"),
        (["httpx"], ["scan", "https://example.test/"], "scanner"),
    ],
)
def test_missing_extra_is_one_line_with_status_2(
    blocked: list[str], argv: list[str], extra: str
) -> None:
    result = run_without(blocked, *argv)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"pip install 'bastion[{extra}]'" in lines[0]
    assert lines[0].startswith(f"bastion {argv[0]}: ")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_help_still_lists_every_command_without_the_extras() -> None:
    result = run_without(["uvicorn", "httpx", "pydantic_settings", "sqlalchemy"], "--help")
    assert result.returncode == 0
    for command in ("serve", "scan", "keys", "nginx-config"):
        assert command in result.stdout


def test_nginx_config_needs_no_extra() -> None:
    result = run_without(
        ["uvicorn", "httpx", "sqlalchemy", "fastapi"],
        "nginx-config",
        "--server-name",
        "api.example.com",
        "--upstream",
        "http://127.0.0.1:8000",
    )
    assert result.returncode == 0, result.stderr
    assert "server_name api.example.com;" in result.stdout


def test_the_line() -> None:
    assert missing_extra_line("serve", "service", "uvicorn") == (
        "bastion serve: this command needs the [service] extra (no module named 'uvicorn'); "
        "install it with: pip install 'bastion[service]'"
    )
