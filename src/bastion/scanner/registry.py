"""The registry of controls. Checks register themselves at import; a duplicate id is refused.

Ids are stable public names (users put them in ``--ignore`` and in config files, and SARIF
uses them as rule ids), so two controls may never share one.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

from bastion.scanner.check import DECLARED, Check
from bastion.scanner.model import CATEGORIES


class DuplicateCheckError(ValueError):
    """Two controls were declared with the same id."""


class Registry:
    """An ordered set of checks keyed by id."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def register(self, check: Check) -> Check:
        if check.id in self._checks:
            raise DuplicateCheckError(f"duplicate check id {check.id!r}")
        self._checks[check.id] = check
        return check

    def get(self, check_id: str) -> Check:
        return self._checks[check_id]

    def __contains__(self, check_id: object) -> bool:
        return check_id in self._checks

    def __iter__(self) -> Iterator[Check]:
        return iter(self.all())

    def __len__(self) -> int:
        return len(self._checks)

    def all(self) -> list[Check]:
        """Every check in a stable order: by category (contract order), then id."""
        order = {c: i for i, c in enumerate(CATEGORIES)}
        return sorted(self._checks.values(), key=lambda c: (order[c.category], c.id))


#: The default registry: every check declared with ``@check`` and no ``registry=`` lands here.
REGISTRY = Registry()
DECLARED.subscribe(REGISTRY)


def load_default_checks() -> Registry:
    """Import every check module (idempotent: Python imports each module once)."""
    from bastion.scanner import checks

    for name in checks.CHECK_MODULES:
        importlib.import_module(f"bastion.scanner.checks.{name}")
    return REGISTRY
