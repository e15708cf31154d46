"""The grade: a score out of 100, deductions by severity, caps, and MDN-style 5-point bands.

The model (documented here and in the README, stable across runs: the same findings always give
the same grade):

1. Start at **100**.
2. Every control that **fails** deducts by its severity: critical 40, high 20, medium 10,
   low 5, info 0. A **warn** deducts half of that, rounded down (critical 20, high 10,
   medium 5, low 2). An **error** deducts what a warning would: a target must not raise its
   grade by making controls fail to run. ``pass`` and ``skip`` (including suppressed
   controls) deduct nothing.
3. **One root cause, one deduction** (:func:`settle`). Findings that are symptoms of one
   cause form a group led by the cause; the group deducts once, the largest of its members'
   deductions, and the symptoms are listed under the lead at no cost of their own:

   * an API that reflects any ``Origin`` also trusts ``null``, look-alike and plain-HTTP
     origins and needs ``Vary: Origin``: one finding (``cors.origin-reflection[-credentials]``)
     with those symptoms, not six controls for -105 points;
   * an API served over plain HTTP (``https.tls``) is not also charged for its plain-HTTP
     listener not redirecting (``https.redirect``): it is that listener;
   * an API whose burst found no limit (``ratelimit.api-burst``) is not charged again for not
     advertising one, or for advertising an absurd one (``ratelimit.headers``);
   * controls that errored for the same reason (a TLS probe that failed, the scan's deadline)
     are one error, not one per control.

   The score is floored at 0.
4. The score maps to a grade with the MDN HTTP Observatory's chart (5-point bands):
   100 A+, 90 A, 85 A-, 80 B+, 70 B, 65 B-, 60 C+, 50 C, 45 C-, 40 D+, 30 D, 25 D-, below F
   (``mdn/mdn-http-observatory`` ``src/grader/charts.js``).
5. **Caps** (as SSL Labs / testssl.sh cap grades): a failing *critical* control caps the grade
   at **F** (an exposed ``.env`` or a forged token accepted is not offset by good headers);
   a failing *high* control caps it at **B** (no A while a high-severity problem stands). A
   control may declare its own cap (``Check.cap``), which replaces the severity's: an API
   served over plain HTTP (``https.tls``) is capped at **C**, whatever its headers, since its
   tokens cross the network in clear and its TLS controls could not run. Warnings and errors
   never cap. The grade is the lower of the band and every cap.

Caps lower the *grade*, never the score: the score stays the sum of the deductions, so a
capped report shows both (e.g. score 95, grade F, cap "F (exposure.env: critical failure)").
Every deduction and every cap is reported with the control that caused it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

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


# Root causes: (the controls that name the cause, most severe first; its symptoms). The group
# forms only when a cause control fails: a look-alike origin trusted on its own (a
# prefix-matching policy) is its own finding.
ROOT_CAUSES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    # Served over plain HTTP: the listener that "does not redirect" is the API itself.
    (("https.tls",), ("https.redirect",)),
    # No limit the burst could find (none, or 1e9 per 15 minutes): the missing or absurd
    # advertised quota is the same fact seen in the headers.
    (("ratelimit.api-burst",), ("ratelimit.headers",)),
    (
        ("cors.origin-reflection-credentials", "cors.origin-reflection"),
        ("cors.null-origin", "cors.lookalike-origin", "cors.insecure-origin", "cors.vary-origin"),
    ),
)


def deduction(finding: Finding) -> int:
    """Points a finding costs on its own: by severity for ``fail``, half for ``warn`` and
    ``error``, else 0 (:func:`settle` then charges a group once)."""
    if finding.status == "fail":
        return FAIL_DEDUCTION[finding.severity]
    if finding.status in {"warn", "error"}:
        return WARN_DEDUCTION[finding.severity]
    return 0


def _problem(finding: Finding) -> bool:
    return finding.status in {"fail", "warn", "error"}


def settle(findings: Iterable[Finding]) -> list[Finding]:
    """The findings with their deductions and root-cause groups set (same order).

    Idempotent: grouping is recomputed from statuses and severities, so settling settled
    findings changes nothing."""
    found = [replace(f, deduction=deduction(f), root_cause="", symptoms=()) for f in findings]
    index = {f.id: i for i, f in enumerate(found)}
    groups: list[list[int]] = []
    for causes, symptoms in ROOT_CAUSES:
        leads = [index[c] for c in causes if c in index and found[index[c]].status == "fail"]
        if not leads:
            continue
        members = [index[c] for c in (*causes, *symptoms) if c in index]
        groups.append([leads[0], *(m for m in members if m != leads[0] and _problem(found[m]))])
    grouped = {i for group in groups for i in group}
    by_reason: dict[str, list[int]] = {}
    for i, f in enumerate(found):
        if f.status == "error" and i not in grouped:
            by_reason.setdefault(f.reason, []).append(i)
    for members in by_reason.values():
        if len(members) > 1:
            # The most severe control leads: its deduction is the group's.
            members.sort(key=lambda i: (-found[i].deduction, found[i].id))
            groups.append(members)
    for lead, *others in groups:
        if not others:
            continue
        cost = max(found[i].deduction for i in (lead, *others))
        found[lead] = replace(
            found[lead], deduction=cost, symptoms=tuple(found[i].id for i in others)
        )
        for i in others:
            found[i] = replace(found[i], deduction=0, root_cause=found[lead].id)
    return found


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
    findings = settle(findings)
    score = max(0, 100 - sum(f.deduction for f in findings))
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
