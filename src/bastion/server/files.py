"""The open-file limit: raised to what the connection cap needs, or the cap lowered, said once.

Each connection is a file descriptor. Under the usual soft limit of 1,024, 1,100 idle
connections would exhaust the process: every later ``accept`` fails and HTTPS stops for
everyone. ``bastion serve`` raises the soft limit (``RLIMIT_NOFILE``, up to the hard limit,
which an unprivileged process may do) to the connection cap plus :data:`RESERVED` descriptors
for everything else (listening sockets, database and Redis connections, logs, the event
loop). When the hard limit is too low, the cap in force becomes what fits, and the start-up
line says so and how to raise it. Worker processes inherit the raised limit.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

__all__ = ["RESERVED", "FileBudget", "open_file_budget"]

RESERVED = 128


@dataclass(frozen=True, slots=True)
class FileBudget:
    """How many connections the open-file limit allows, and a warning when it is fewer."""

    connections: int
    warning: str | None = None


def open_file_budget(wanted: int, *, raise_limit: bool = True) -> FileBudget:
    """The connections this process can hold, raising the soft limit first if allowed."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux or macOS
        return FileBudget(wanted)
    needed = wanted + RESERVED
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed and raise_limit:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):  # the next line reads what holds
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return FileBudget(wanted)
    fits = max(soft - RESERVED, 1)
    return FileBudget(
        fits,
        f"open-file limit: BASTION_MAX_CONNECTIONS={wanted} needs {needed} file descriptors "
        f"per process, but the hard limit is {hard} (soft {soft}); serving at most {fits} "
        "connections per process. Raise the hard limit (`ulimit -Hn`, or LimitNOFILE= in a "
        "systemd unit) or lower BASTION_MAX_CONNECTIONS.",
    )
