"""``--baseline old.json``: what changed since an earlier scan, for CI.

Findings are matched by the fingerprint the SARIF report already gives them
(``partialFingerprints["bastionFinding/v1"]``: SHA-256 of ``target|control id``), so a code-
scanning dashboard and this comparison agree on which finding is which. A *problem* is a
finding whose status is ``fail``, ``warn`` or ``error``: ``new`` ones are problems now that
were not problems then, ``fixed`` ones the reverse. When the baseline scanned another URL (a
CI job on a fresh port), its findings are matched under this scan's target, i.e. by control
id, and a warning says so.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from bastion.scanner.model import Comparison, Report
from bastion.scanner.reporters.sarif import fingerprint

PROBLEMS = frozenset({"fail", "warn", "error"})
MAX_BASELINE_BYTES = 16 * 1024 * 1024


class BaselineError(ValueError):
    """The baseline file cannot be used (one line for the user)."""


def load(path: Path) -> dict[str, Any]:
    """The baseline report, checked for the keys the comparison reads."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BASELINE_BYTES + 1)
    except OSError as exc:
        raise BaselineError(f"--baseline {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BASELINE_BYTES:
        raise BaselineError(f"--baseline {path}: larger than 16 MiB, not a scan report")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise BaselineError(
            f"--baseline {path}: not JSON (give a report written with --format json)"
        ) from None
    findings = data.get("findings") if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("target"), str)
        or not isinstance(findings, list)
        or not all(
            isinstance(f, dict)
            and isinstance(f.get("id"), str)
            and isinstance(f.get("status"), str)
            for f in findings
        )
    ):
        raise BaselineError(
            f"--baseline {path}: not a bastion scan JSON report (target and findings expected)"
        )
    return data


def compare(report: Report, baseline: dict[str, Any], source: str) -> Report:
    """``report`` with its :class:`~bastion.scanner.model.Comparison` against ``baseline``."""
    then_target = baseline["target"]
    target = report.target

    def key(check_id: str) -> str:
        return fingerprint(target, check_id)

    then = {key(f["id"]): f["id"] for f in baseline["findings"] if f["status"] in PROBLEMS}
    now = {key(f.id): f.id for f in report.findings if f.status in PROBLEMS}
    comparison = Comparison(
        source=source,
        target=then_target,
        new=tuple(now[k] for k in now if k not in then),
        fixed=tuple(then[k] for k in then if k not in now),
        unchanged=sum(1 for k in now if k in then),
    )
    warnings = report.warnings
    if then_target != target:
        warnings += (
            f"the baseline scanned {then_target}, this scan {target}: findings matched by "
            "control id",
        )
    return replace(report, baseline=comparison, warnings=warnings)
