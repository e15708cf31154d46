"""Rate policies written as ``"<count>/<window>"`` (``100/15m``, ``5/900s``, ``1000/1h``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d{1,9})\s*/\s*(\d{0,9})\s*([smhd])\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``limit`` requests in any window of ``window`` seconds."""

    limit: int
    window: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Parse ``"100/15m"``; raise ``ValueError`` with a readable reason otherwise."""
        match = _RATE.match(text)
        if match is None:
            raise ValueError(f'expected "<count>/<window>" such as 100/15m, got {text!r}')
        limit = int(match.group(1))
        window = int(match.group(2) or 1) * _UNITS[match.group(3)]
        if limit < 1:
            raise ValueError("the count must be at least 1")
        if window < 1:
            raise ValueError("the window must be at least 1 second")
        return cls(limit, window)

    def __str__(self) -> str:
        return f"{self.limit}/{self.window}s"
