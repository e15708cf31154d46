"""Reporters: one module per output format, each exposing ``render(report) -> str``."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from bastion.scanner.model import Report

FORMATS: tuple[str, ...] = ("text", "json", "sarif", "html")


def renderer(fmt: str) -> Callable[[Report], str]:
    """The ``render`` function of a format (``ValueError`` for an unknown one)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    module = importlib.import_module(f"bastion.scanner.reporters.{fmt}")
    render: Callable[[Report], str] = module.render
    return render


def render(report: Report, fmt: str) -> str:
    return renderer(fmt)(report)
