"""The grading model: deductions by severity, half for warnings, MDN bands, caps."""

from __future__ import annotations

import pytest

from bastion.scanner.grading import at_least, band, deduction, grade, worse
from bastion.scanner.model import Finding


def f(check_id: str, severity: str, status: str) -> Finding:
    category = check_id.split(".")[0]
    return Finding(check_id, "t", category, severity, status)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("severity", "fail", "warn"),
    [("critical", 40, 20), ("high", 20, 10), ("medium", 10, 5), ("low", 5, 2), ("info", 0, 0)],
)
def test_deduction_by_severity(severity: str, fail: int, warn: int) -> None:
    assert deduction(f("headers.x", severity, "fail")) == fail
    assert deduction(f("headers.x", severity, "warn")) == warn
    assert deduction(f("headers.x", severity, "error")) == warn
    for status in ("pass", "skip"):
        assert deduction(f("headers.x", severity, status)) == 0


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (100, "A+"),
        (99, "A"),
        (90, "A"),
        (89, "A-"),
        (85, "A-"),
        (84, "B+"),
        (80, "B+"),
        (79, "B"),
        (70, "B"),
        (69, "B-"),
        (65, "B-"),
        (64, "C+"),
        (60, "C+"),
        (59, "C"),
        (50, "C"),
        (49, "C-"),
        (45, "C-"),
        (44, "D+"),
        (40, "D+"),
        (39, "D"),
        (30, "D"),
        (29, "D-"),
        (25, "D-"),
        (24, "F"),
        (0, "F"),
    ],
)
def test_mdn_bands(score: int, expected: str) -> None:
    assert band(score) == expected


def test_no_finding_is_a_plus() -> None:
    result = grade([f("headers.a", "high", "pass"), f("headers.b", "low", "skip")])
    assert (result.score, result.grade, result.caps) == (100, "A+", ())


def test_one_low_failure_costs_the_plus() -> None:
    result = grade([f("headers.a", "low", "fail")])
    assert (result.score, result.grade) == (95, "A")


def test_a_critical_failure_caps_at_f_whatever_the_score() -> None:
    result = grade([f("exposure.env", "critical", "fail")])
    assert result.score == 60  # the score says C+ ...
    assert result.grade == "F"  # ... the cap says F
    assert result.caps == ("F (exposure.env: critical failure)",)


def test_a_high_failure_caps_at_b() -> None:
    result = grade([f("cors.null-origin", "high", "fail")])
    assert (result.score, result.grade) == (80, "B")
    assert result.caps == ("B (cors.null-origin: high failure)",)


def test_warnings_never_cap() -> None:
    result = grade([f("exposure.env", "critical", "warn")])
    assert (result.score, result.grade, result.caps) == (80, "B+", ())


def test_check_cap_overrides_the_severity_cap() -> None:
    findings = [f("tls.cert-trust", "high", "fail")]
    assert grade(findings, {"tls.cert-trust": "C"}).grade == "C"
    assert grade(findings, {"tls.cert-trust": None}).grade == "B"


def test_caps_are_listed_harshest_first() -> None:
    findings = [f("cors.null-origin", "high", "fail"), f("exposure.env", "critical", "fail")]
    assert grade(findings).caps[0].startswith("F (exposure.env")


def test_score_floors_at_zero_and_is_stable() -> None:
    findings = [f(f"exposure.e{i}", "critical", "fail") for i in range(5)]
    first = grade(findings)
    assert first.score == 0
    assert grade(list(reversed(findings))) == first


def test_grade_comparisons() -> None:
    assert worse("A", "B-") == "B-"
    assert worse("F", "A+") == "F"
    assert at_least("A", "B")
    assert at_least("B", "B")
    assert not at_least("B-", "B")
