"""`bastion keys rotate` / `bastion keys list` on a data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.cli.main import main


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("BASTION_JWT_ALG", "BASTION_ACCESS_TOKEN_TTL", "BASTION_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BASTION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data"


def test_rotate_creates_a_key_then_adds_one_keeping_the_old(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "rotate"]) == 0
    first = capsys.readouterr().out
    assert main(["keys", "rotate"]) == 0
    second = capsys.readouterr().out
    new_kid = second.split()[3]
    assert second.startswith(f"new signing key {new_kid} (ES256)\n")
    assert "still verifying" in second
    ring = json.loads((data_dir / "keys" / "ring.json").read_text())["keys"]
    assert [e["kid"] for e in ring][-1] == new_kid
    assert sum(e["retired"] is None for e in ring) == 1
    assert first != second
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0] == f"{new_kid}  ES256  signing"
    assert all(line.endswith("retired") for line in listing[1:]) and len(listing) == 3


def test_rotate_honours_the_configured_algorithm(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_JWT_ALG", "EdDSA")
    assert main(["keys", "rotate"]) == 0
    assert "(EdDSA)" in capsys.readouterr().out


def test_list_without_keys_is_one_clear_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "list"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "no signing keys" in err and "Traceback" not in err


def test_keys_needs_a_subcommand(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["keys"])
    assert exited.value.code == 2
