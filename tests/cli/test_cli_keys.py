"""`bastion keys rotate` / `bastion keys list` on a data directory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.auth.key_encryption import generate
from bastion.cli.main import main
from bastion.config import load_settings
from tests.service.auth_db import postgres_database_sync


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (
        "BASTION_JWT_ALG",
        "BASTION_ACCESS_TOKEN_TTL",
        "BASTION_CONFIG",
        "BASTION_DATABASE_URL",
        "BASTION_KEY_STORE",
        "BASTION_KEY_ENCRYPTION_KEY",
        "BASTION_KEY_ENCRYPTION_KEY_FILE",
    ):
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


# --- the ring in the deployment's database ---------------------------------------------------


@pytest.fixture
def database(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with postgres_database_sync() as url:
        monkeypatch.setenv("BASTION_DATABASE_URL", url)
        monkeypatch.setenv("BASTION_KEY_ENCRYPTION_KEY", generate())
        yield url


def test_rotate_and_list_act_on_the_ring_in_the_database(
    database: str, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "rotate"]) == 0
    assert main(["keys", "rotate"]) == 0
    out = capsys.readouterr().out
    new_kid = out.splitlines()[-4].split()[3]
    assert out.endswith("every host sharing the database signs with it within 3 seconds\n")
    assert not (data_dir / "keys" / "ring.json").exists()  # nothing on this host's disk
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0] == f"{new_kid}  ES256  signing" and len(listing) == 3


def test_another_key_encryption_key_is_one_line_and_rotates_nothing(
    database: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["keys", "rotate"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("BASTION_KEY_ENCRYPTION_KEY", generate())
    for command in (["keys", "rotate"], ["keys", "list"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith("bastion: BASTION_KEY_ENCRYPTION_KEY: is not the key that sealed")
        assert len(err.splitlines()) == 1
    monkeypatch.delenv("BASTION_KEY_ENCRYPTION_KEY")
    assert main(["keys", "list"]) == 2
    assert "BASTION_KEY_ENCRYPTION_KEY: required" in capsys.readouterr().err


def test_generate_kek_prints_a_key_the_settings_accept(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["keys", "generate-kek"]) == 0
    key = capsys.readouterr().out
    assert key.endswith("\n") and len(key.strip()) == 43
    assert main(["keys", "generate-kek"]) == 0
    assert capsys.readouterr().out != key
    (data_dir.parent / "kek").write_text(key)  # `bastion keys generate-kek > kek`
    monkeypatch.setenv("BASTION_KEY_ENCRYPTION_KEY_FILE", str(data_dir.parent / "kek"))
    assert load_settings().key_encryption_key_text() == key.strip()
