"""Orderings and labels shared by the reporters, so every format tells the same story."""

from __future__ import annotations

from bastion.scanner.model import CATEGORIES, SEVERITY_RANK, STATUS_RANK, Finding, Report

CATEGORY_LABELS: dict[str, str] = {
    "tls": "TLS and certificate",
    "https": "HTTPS and HSTS",
    "headers": "Security headers",
    "cookies": "Cookies",
    "cors": "CORS",
    "methods": "HTTP methods",
    "disclosure": "Information disclosure",
    "exposure": "Exposed files and endpoints",
    "auth": "Authentication",
    "jwt": "JSON Web Tokens",
    "ratelimit": "Rate limiting",
    "versioning": "API versions and docs",
}


def finding_order(finding: Finding) -> tuple[int, int, str]:
    """Failures first, then errors, warnings, skips, passes; within each, most severe first."""
    return (STATUS_RANK[finding.status], SEVERITY_RANK[finding.severity], finding.id)


def grouped(report: Report) -> list[tuple[str, list[Finding]]]:
    """Findings grouped by category; categories with the worst findings come first."""
    groups: dict[str, list[Finding]] = {}
    for finding in report.findings:
        groups.setdefault(finding.category, []).append(finding)
    ordered: list[tuple[str, list[Finding]]] = []
    for category in CATEGORIES:
        if category in groups:
            ordered.append((category, sorted(groups[category], key=finding_order)))
    ordered.sort(key=lambda item: (finding_order(item[1][0])[:2], CATEGORIES.index(item[0])))
    return ordered


def deductions(report: Report) -> list[Finding]:
    """Findings that cost points, largest deduction first."""
    costly = [f for f in report.findings if f.deduction]
    return sorted(costly, key=lambda f: (-f.deduction, f.id))


def category_counts(findings: list[Finding]) -> dict[str, int]:
    counts = dict.fromkeys(STATUS_RANK, 0)
    for finding in findings:
        counts[finding.status] += 1
    return counts


def incomplete_line(report: Report, *, names: int = 8) -> str:
    """One sentence saying the scan stopped at its deadline and what did not finish (empty
    for a complete scan)."""
    if report.complete:
        return ""
    limit = f"{report.max_time_s:g} s" if report.max_time_s is not None else "its deadline"
    shown = ", ".join(report.unfinished[:names])
    more = f" and {len(report.unfinished) - names} more" if len(report.unfinished) > names else ""
    return (
        f"INCOMPLETE: the scan's --max-time of {limit} ran out; "
        f"{len(report.unfinished)} controls did not finish: {shown}{more}"
    )


def errors_line(report: Report) -> str:
    """One sentence about errored controls (empty when none): the grade covers only what
    could be measured, and ``--fail-under`` fails on errors unless ``--allow-errors``."""
    count = len(report.errors)
    if not count:
        return ""
    noun = "control" if count == 1 else "controls"
    return (
        f"{count} {noun} could not judge the target (errors): the grade covers only what was "
        "measured; --fail-under fails on errors unless --allow-errors is given"
    )


def group_note(finding: Finding) -> str:
    """How a finding sits in its root-cause group (empty when it stands alone)."""
    if finding.root_cause:
        return f"symptom of {finding.root_cause} (counted there)"
    if finding.symptoms:
        return f"root cause of {len(finding.symptoms)} more: {', '.join(finding.symptoms)}"
    return ""


def baseline_line(report: Report, *, names: int = 6) -> str:
    """One sentence comparing the scan with ``--baseline`` (empty without one)."""
    b = report.baseline
    if b is None:
        return ""

    def listed(ids: tuple[str, ...]) -> str:
        if not ids:
            return ""
        more = f" and {len(ids) - names} more" if len(ids) > names else ""
        return f" ({', '.join(ids[:names])}{more})"

    return (
        f"against the baseline {b.source}: {len(b.new)} new{listed(b.new)}, "
        f"{len(b.fixed)} fixed{listed(b.fixed)}, {b.unchanged} unchanged"
    )


def summary_line(report: Report) -> str:
    """The one line a CI log shows: grade, score, counts, and the baseline's news."""
    c = report.counts()
    parts = [
        f"grade {report.grade} (score {report.score}/100) for {report.target}: "
        f"{c['fail']} failed, {c['warn']} warnings, {c['error']} errors, {c['pass']} passed, "
        f"{c['skip']} skipped in {report.duration_s:.1f} s"
    ]
    if report.baseline is not None:
        parts.append(f"{len(report.baseline.new)} new, {len(report.baseline.fixed)} fixed")
    if not report.complete:
        parts.append("INCOMPLETE")
    if report.warnings:
        parts.append(f"{len(report.warnings)} warnings about the scan (see above)")
    return "; ".join(parts)


def coverage_line(report: Report) -> str:
    """How much of the API the scan probed (``Report.coverage``, added by the API-discovery
    work on another branch; read defensively so either merge order renders it)."""
    coverage = getattr(report, "coverage", None)
    if coverage is None:
        return ""

    def field(name: str) -> object:
        return coverage.get(name) if isinstance(coverage, dict) else getattr(coverage, name, None)

    probed, operations = field("probed"), field("operations")
    if probed is None or operations is None:
        return ""
    line = f"coverage: {probed} of {operations} operations probed"
    if field("source"):
        line += f" (from {field('source')})"
    if field("stopped"):
        line += f"; stopped: {field('stopped')}"
    return line
