"""The scanner's data model: frozen findings and reports, shaped like the contract's JSON.

A :class:`Finding` is what one control concluded about the target; a :class:`Report` is the
whole scan. Both are immutable so that reporters (text, JSON, SARIF, HTML) cannot disagree
about what was found: they all render the same object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

Category = Literal[
    "tls",
    "https",
    "headers",
    "cookies",
    "cors",
    "methods",
    "disclosure",
    "exposure",
    "auth",
    "jwt",
    "ratelimit",
    "versioning",
]
Severity = Literal["critical", "high", "medium", "low", "info"]
Status = Literal["pass", "fail", "warn", "skip", "error"]

CATEGORIES: tuple[Category, ...] = get_args(Category)
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
STATUSES: tuple[Status, ...] = get_args(Status)
GRADES: tuple[str, ...] = ("A+", "A", "A-", "B+", "B", "B-", "C+", "C", "C-", "D+", "D", "D-", "F")

# Ordering helpers: most severe / most alarming first.
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
STATUS_RANK: dict[str, int] = {"fail": 0, "error": 1, "warn": 2, "skip": 3, "pass": 4}


@dataclass(frozen=True)
class Finding:
    """One control's verdict on the target.

    ``evidence`` names the request sent and the response judged (method, URL, status and the
    relevant headers or body excerpt), with credentials redacted. ``reason`` says in one line
    why a control was skipped, errored or failed; ``deduction`` is the points it cost the score.
    """

    id: str
    title: str
    category: Category
    severity: Severity
    status: Status
    evidence: str = ""
    remediation: str = ""
    references: tuple[str, ...] = ()
    reason: str = ""
    deduction: int = 0
    # Root-cause grouping (bastion.scanner.grading.settle): a symptom names the finding that
    # leads its group and costs nothing itself; the lead lists its symptoms and carries the
    # group's one deduction. One reflected origin is one finding, not six.
    root_cause: str = ""
    symptoms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    """This scan against a baseline report (``--baseline old.json``), matched by finding
    fingerprint: ``new`` problems (fail, warn, error) the baseline did not have, ``fixed``
    ones it had that are gone, and how many are ``unchanged``."""

    source: str
    target: str
    new: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()
    unchanged: int = 0


@dataclass(frozen=True)
class Coverage:
    """How much of the API the per-operation controls reached: where its map came from
    (``openapi <where>``, ``discovered`` or ``none``), how many operations it lists, how many
    the sweep probed, and the requests that took against ``--operation-budget``. Write
    operations are probed only with ``--active`` (``not_probed_writes`` counts the others)."""

    source: str
    operations: int
    probed: int
    requests: int
    budget: int
    not_probed_writes: int = 0
    stopped: str = ""  # why the sweep stopped before its budget (the target throttled it)


@dataclass(frozen=True)
class Report:
    """A finished scan: the target as given, timing, the grade and every finding."""

    target: str
    started_at: str  # RFC 3339, UTC
    duration_s: float
    grade: str
    score: int
    findings: tuple[Finding, ...] = ()
    # The caps applied to the grade, each naming the control that imposed it, so a capped
    # grade is explained rather than mysterious (testssl.sh issue #3077).
    caps: tuple[str, ...] = ()
    active: bool = False
    requests: int = 0
    scanner_version: str = field(default="")
    # False when the scan's deadline (--max-time) stopped controls before they finished;
    # ``unfinished`` names them (each is also an ``error`` finding with the reason).
    complete: bool = True
    unfinished: tuple[str, ...] = ()
    max_time_s: float | None = None
    # Things the user should know about the scan itself (a token that opened nothing, a
    # target URL that is a 404): printed on stderr and shown in every format.
    warnings: tuple[str, ...] = ()
    # Set with --baseline: how this scan compares with an earlier report.
    baseline: Comparison | None = None
    coverage: Coverage | None = None  # None when no per-operation control ran

    def by_status(self, status: Status) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == status)

    @property
    def errors(self) -> tuple[Finding, ...]:
        """Controls that could not judge the target (their reason says why)."""
        return self.by_status("error")

    def counts(self) -> dict[str, int]:
        """Number of findings per status, every status present (zero included)."""
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for finding in self.findings:
            counts[finding.status] += 1
        return counts
