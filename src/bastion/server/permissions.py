"""The data directory's permissions: 0700 for it and its directories, 0600 for every file.

It holds password hashes and emails (the SQLite database, its ``-wal`` and ``-shm``), the
signing keys, the TLS key and the mail outbox. A directory made by ``bastion serve`` is 0700,
but one that existed before (systemd ``StateDirectory``, a Docker volume, a ``mkdir`` by hand)
keeps its mode, and SQLite creates its files with the process umask (0644 by default) and
its ``-wal``/``-shm`` with the database's mode. So ``bastion serve``:

* sets the umask to 077 before anything is written, so every later file (the database, its
  WAL, the outbox, keys written by a rotation in a worker) is born 0600;
* tightens what is already there at start, and logs each change (path and old mode).

Symbolic links are left alone (neither followed nor changed): the directory's owner put them
there on purpose, and ``chmod`` through one would change a file outside the directory.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("bastion.serve")

__all__ = ["DIR_MODE", "FILE_MODE", "private_umask", "tighten"]

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_umask() -> None:
    """Files this process (and its workers) create are readable by their owner only."""
    os.umask(0o077)


def tighten(root: Path) -> list[str]:
    """Give *root* and its directories 0700 and its files 0600; one log line per change.

    Returns the changes (``"<path>: 0644 -> 0600"``)."""
    changes: list[str] = []

    def fix(path: Path, wanted: int) -> None:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            return
        mode = stat.S_IMODE(info.st_mode)
        if mode & ~wanted:  # only ever removes access
            os.chmod(path, mode & wanted, follow_symlinks=False)
            change = f"{path}: {mode:04o} -> {mode & wanted:04o}"
            log.warning("data directory permissions tightened: %s", change)
            changes.append(change)

    fix(root, DIR_MODE)
    for directory, subdirs, files in os.walk(root):  # does not descend into symlinked dirs
        for name in subdirs:
            fix(Path(directory, name), DIR_MODE)
        for name in files:
            path = Path(directory, name)
            if stat.S_ISREG(path.lstat().st_mode):
                fix(path, FILE_MODE)
    return changes
