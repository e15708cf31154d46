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
