"""JSON report: the contract's shape (plus explanatory extras), validated by a committed schema.

Contract keys: ``target, started_at, duration_s, grade, score, findings[id, title, category,
severity, status, evidence, remediation, references]``. Extras that explain the grade:
``findings[].reason``, ``findings[].deduction``, ``caps``, ``counts``, ``active``,
``requests``, ``scanner``; root-cause groups (``findings[].root_cause``: the lead a symptom
belongs to, ``findings[].symptoms``: a lead's symptoms), ``warnings`` about the scan itself,
``baseline`` (with ``--baseline``: new and fixed findings); and whether the scan finished:
``complete`` (false when
``--max-time`` stopped controls), ``unfinished`` (their ids) and ``max_time_s``; ``coverage``
(operations probed, or null). The schema is
``bastion/scanner/report.schema.json``. Control characters are written as ``\\uXXXX``
escapes (:func:`bastion.scanner.safe_text.dumps`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bastion.scanner.model import Comparison, Finding, Report
from bastion.scanner.safe_text import dumps


def finding_dict(finding: Finding) -> dict[str, Any]:
    return {
        "id": finding.id,
        "title": finding.title,
        "category": finding.category,
        "severity": finding.severity,
        "status": finding.status,
        "evidence": finding.evidence,
        "remediation": finding.remediation,
        "references": list(finding.references),
        "reason": finding.reason,
        "deduction": finding.deduction,
        "root_cause": finding.root_cause,
        "symptoms": list(finding.symptoms),
    }


def report_dict(report: Report) -> dict[str, Any]:
    return {
        "target": report.target,
        "started_at": report.started_at,
        "duration_s": report.duration_s,
        "grade": report.grade,
        "score": report.score,
        "findings": [finding_dict(f) for f in report.findings],
        "caps": list(report.caps),
        "counts": report.counts(),
        "active": report.active,
        "requests": report.requests,
        "scanner": {"name": "bastion-scan", "version": report.scanner_version},
        "complete": report.complete,
        "unfinished": list(report.unfinished),
        "max_time_s": report.max_time_s,
        "coverage": None if report.coverage is None else dataclasses.asdict(report.coverage),
        "warnings": list(report.warnings),
        "baseline": None if report.baseline is None else baseline_dict(report.baseline),
    }


def baseline_dict(comparison: Comparison) -> dict[str, Any]:
    return {
        "source": comparison.source,
        "target": comparison.target,
        "new": list(comparison.new),
        "fixed": list(comparison.fixed),
        "unchanged": comparison.unchanged,
    }


def render(report: Report) -> str:
    return dumps(report_dict(report))
