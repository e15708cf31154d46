"""The registry owns its table: check.py never imports it, declarations reach it in order, and
a check module that cannot be imported is an error (nothing swallows it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bastion.scanner import checks
from bastion.scanner.check import Check, Declarations, Result
from bastion.scanner.context import ScanContext
from bastion.scanner.registry import REGISTRY, DuplicateCheckError, Registry, load_default_checks


async def _probe(ctx: ScanContext) -> Result:
    return Result.passed()


def _built(check_id: str) -> Check:
    return Check(
        id=check_id,
        title="t",
        category="headers",
        severity="low",
        probe=_probe,
        references=("https://example.org/ref",),
    )


def test_declarations_before_the_subscription_are_handed_over() -> None:
    declared = Declarations()
    declared.add(_built("headers.b"))
    declared.add(_built("headers.a"))
    registry = Registry()
    assert len(registry) == 0
    declared.subscribe(registry)
    assert {c.id for c in registry} == {"headers.a", "headers.b"}
    declared.add(_built("headers.c"))  # after it: at once
    assert "headers.c" in registry


def test_a_duplicate_declared_after_the_subscription_raises_at_once() -> None:
    declared = Declarations()
    declared.subscribe(Registry())
    declared.add(_built("headers.one"))
    with pytest.raises(DuplicateCheckError):
        declared.add(_built("headers.one"))


def test_the_default_checks_land_in_the_default_registry() -> None:
    assert load_default_checks() is REGISTRY
    assert len(REGISTRY) > 0
    assert {c.category for c in REGISTRY} >= {"headers", "tls", "cors"}


def test_check_imports_without_the_registry() -> None:
    code = (
        "import sys, bastion.scanner.check; "
        "assert 'bastion.scanner.registry' not in sys.modules, 'check.py imported the registry'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_missing_check_module_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "CHECK_MODULES", (*checks.CHECK_MODULES, "no_such_category"))
    with pytest.raises(ModuleNotFoundError, match="no_such_category"):
        load_default_checks()
