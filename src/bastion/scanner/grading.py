"""The grade: a score out of 100, deductions by severity, caps, and MDN-style 5-point bands.

The model (documented here and in the README, stable across runs: the same findings always give
the same grade):

1. Start at **100**.
2. Every control that **fails** deducts by its severity: critical 40, high 20, medium 10,
   low 5, info 0. A **warn** deducts half of that, rounded down (critical 20, high 10,
   medium 5, low 2). ``pass``, ``skip`` (including suppressed controls) and ``error`` deduct
   nothing: a control that could not judge does not move the grade; the report lists it.
3. The score is floored at 0.
4. The score maps to a grade with the MDN HTTP Observatory's chart (5-point bands):
   100 A+, 90 A, 85 A-, 80 B+, 70 B, 65 B-, 60 C+, 50 C, 45 C-, 40 D+, 30 D, 25 D-, below F
   (``mdn/mdn-http-observatory`` ``src/grader/charts.js``).
5. **Caps** (as SSL Labs / testssl.sh cap grades): a failing *critical* control caps the grade
   at **F** (an exposed ``.env`` or a forged token accepted is not offset by good headers);
   a failing *high* control caps it at **B** (no A while a high-severity problem stands). A
   control may declare its own cap (``Check.cap``), which replaces the severity's. Warnings
   never cap. The grade is the lower of the band and every cap.

Caps lower the *grade*, never the score: the score stays the sum of the deductions, so a
capped report shows both (e.g. score 95, grade F, cap "F (exposure.env: critical failure)").
Every deduction and every cap is reported with the control that caused it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bastion.scanner.model import GRADES, Finding

FAIL_DEDUCTION: dict[str, int] = {"critical": 40, "high": 20, "medium": 10, "low": 5, "info": 0}
WARN_DEDUCTION: dict[str, int] = {k: v // 2 for k, v in FAIL_DEDUCTION.items()}
SEVERITY_CAP: dict[str, str] = {"critical": "F", "high": "B"}

# (lowest score of the band, grade), highest first: MDN Observatory GRADE_CHART.
BANDS: tuple[tuple[int, str], ...] = (
    (100, "A+"),
    (90, "A"),
    (85, "A-"),
    (80, "B+"),
    (70, "B"),
    (65, "B-"),
    (60, "C+"),
    (50, "C"),
    (45, "C-"),
    (40, "D+"),
    (30, "D"),
    (25, "D-"),
    (0, "F"),
)
_GRADE_RANK = {g: i for i, g in enumerate(GRADES)}  # 0 = best


@dataclass(frozen=True)
class Grade:
    score: int
    grade: str
    caps: tuple[str, ...]  # "B (headers.csp: high failure)"


def deduction(finding: Finding) -> int:
    """Points a finding costs: by severity for ``fail``, half for ``warn``, else 0."""
    if finding.status == "fail":
        return FAIL_DEDUCTION[finding.severity]
    if finding.status == "warn":
        return WARN_DEDUCTION[finding.severity]
    return 0


def band(score: int) -> str:
    """The grade of a score, without caps."""
    for floor, grade in BANDS:
        if score >= floor:
            return grade
    return "F"


def worse(a: str, b: str) -> str:
    """The lower of two grades."""
    return a if _GRADE_RANK[a] >= _GRADE_RANK[b] else b


def at_least(grade: str, threshold: str) -> bool:
    """True when ``grade`` is ``threshold`` or better (``--fail-under``)."""
    return _GRADE_RANK[grade] <= _GRADE_RANK[threshold]


def grade(findings: Iterable[Finding], caps_by_id: dict[str, str | None] | None = None) -> Grade:
    """Score and grade a set of findings. ``caps_by_id`` holds per-control cap overrides."""
    caps_by_id = caps_by_id or {}
    findings = list(findings)
    score = max(0, 100 - sum(deduction(f) for f in findings))
    result = band(score)
    caps: list[tuple[int, str, str]] = []
    for finding in findings:
        if finding.status != "fail":
            continue
        cap = caps_by_id.get(finding.id) or SEVERITY_CAP.get(finding.severity)
        if cap is None:
            continue
        caps.append(
            (-_GRADE_RANK[cap], finding.id, f"{cap} ({finding.id}: {finding.severity} failure)")
        )
        result = worse(result, cap)
    # Harshest cap first: the one that decided the grade leads the explanation.
    return Grade(score=score, grade=result, caps=tuple(text for *_, text in sorted(caps)))
