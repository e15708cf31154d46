"""The data directory is tightened in place: 0700 directories, 0600 files, symlinks untouched
(a chmod through one would change a file outside the directory), each change reported."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from bastion.server.permissions import tighten


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_wide_modes_are_tightened_and_reported_and_symlinks_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "keys").mkdir(parents=True)
    os.chmod(data, 0o755)  # noqa: S103 (the attack's precondition)
    os.chmod(data / "keys", 0o775)  # noqa: S103
    (data / "bastion.db").write_bytes(b"")
    os.chmod(data / "bastion.db", 0o644)
    (data / "keys" / "k.pem").write_bytes(b"")
    os.chmod(data / "keys" / "k.pem", 0o640)
    (data / "private").write_bytes(b"")
    os.chmod(data / "private", 0o400)  # already narrower: never widened
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"")
    os.chmod(outside, 0o644)
    (data / "link").symlink_to(outside)

    changes = tighten(data)

    assert mode(data) == 0o700 and mode(data / "keys") == 0o700
    assert mode(data / "bastion.db") == 0o600 and mode(data / "keys" / "k.pem") == 0o600
    assert mode(data / "private") == 0o400
    assert mode(outside) == 0o644
    assert sorted(changes) == sorted(
        [
            f"{data}: 0755 -> 0700",
            f"{data / 'keys'}: 0775 -> 0700",
            f"{data / 'bastion.db'}: 0644 -> 0600",
            f"{data / 'keys' / 'k.pem'}: 0640 -> 0600",
        ]
    )
    assert tighten(data) == []  # idempotent
