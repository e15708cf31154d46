"""SARIF 2.1.0 report, for GitHub code scanning and other SARIF consumers.

One rule per control that ran; one result per ``fail`` or ``warn`` finding (kind ``fail`` /
``review``). A control that errored is a result too (kind ``review``, "could not be judged",
property ``status: error``), because code-scanning dashboards show results and ignore
notifications, and a target must not look cleaner by making controls fail; it is also a
tool-execution notification. A scan stopped by ``--max-time`` has
``executionSuccessful: false`` and names its unfinished controls in the run's properties.
A symptom of a root cause (``cors.null-origin`` when any origin is reflected) is a ``note``
naming its cause, which carries the alert. With ``--baseline`` each result has a
``baselineState`` (``new`` or ``unchanged``) and the run's properties list the ``fixed`` ones.
``security-severity`` follows GitHub's bands (critical >= 9.0, high 7.0-8.9, medium 4.0-6.9,
low 0.1-3.9). Message texts have control characters stripped (SARIF viewers render them as
plain text or Markdown); the file is validated against the official OASIS schema in the tests.
"""

from __future__ import annotations

import hashlib
from typing import Any

from bastion.scanner.model import Finding, Report
from bastion.scanner.reporters._common import baseline_line, group_note, incomplete_line
from bastion.scanner.safe_text import dumps, strip_controls

SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
INFORMATION_URI = "https://owasp.org/API-Security/"
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}
FAIL_LEVEL = {
    "critical": "error",
    "high": "error",
    "medium": "warning",
    "low": "note",
    "info": "note",
}


def _rule(finding: Finding) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "tags": ["security", "bastion", finding.category],
        "precision": "high",
        "bastion-severity": finding.severity,
    }
    if finding.severity in SECURITY_SEVERITY:
        properties["security-severity"] = SECURITY_SEVERITY[finding.severity]
    references = "\n".join(f"- {ref}" for ref in finding.references)
    rule: dict[str, Any] = {
        "id": finding.id,
        "name": "".join(part.capitalize() for part in finding.id.replace("-", ".").split(".")),
        "shortDescription": {"text": finding.title},
        "fullDescription": {"text": f"{finding.title} ({finding.category}, {finding.severity})"},
        "help": {
            "text": f"{finding.remediation}\n\nReferences:\n{references}".strip(),
            "markdown": f"{finding.remediation}\n\n**References**\n\n{references}".strip(),
        },
        "defaultConfiguration": {"level": FAIL_LEVEL[finding.severity]},
        "properties": properties,
    }
    if finding.references:
        rule["helpUri"] = finding.references[0]
    return rule


def fingerprint(target: str, check_id: str) -> str:
    """A finding's stable identity across scans (``partialFingerprints``, ``--baseline``)."""
    return hashlib.sha256(f"{target}|{check_id}".encode()).hexdigest()


def _result(finding: Finding, index: int, target: str, state: str | None = None) -> dict[str, Any]:
    level = FAIL_LEVEL[finding.severity] if finding.status == "fail" else "warning"
    if finding.status == "warn" and finding.severity in {"low", "info"}:
        level = "note"
    if finding.root_cause:
        level = "note"  # its root cause carries the alert
    if finding.status == "error":
        message = f"{finding.title}: could not be judged: {finding.reason or 'error'}"
    else:
        message = finding.title + (f": {finding.reason}" if finding.reason else "")
    note = group_note(finding)
    if note:
        message += f" [{note}]"
    result: dict[str, Any] = {
        "ruleId": finding.id,
        "ruleIndex": index,
        "kind": "fail" if finding.status == "fail" else "review",
        "level": level,
        "message": {"text": strip_controls(message)},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": target},
                    "region": {"startLine": 1},
                },
                "logicalLocations": [{"name": finding.id, "kind": "resource"}],
            }
        ],
        "partialFingerprints": {"bastionFinding/v1": fingerprint(target, finding.id)},
        "properties": {
            "status": finding.status,
            "severity": finding.severity,
            "deduction": finding.deduction,
            "evidence": finding.evidence,
            "root_cause": finding.root_cause,
            "symptoms": list(finding.symptoms),
        },
    }
    if state is not None:
        result["baselineState"] = state
    return result


def report_sarif(report: Report) -> dict[str, Any]:
    ran = [f for f in report.findings if f.status != "skip"]
    rules = [_rule(f) for f in ran]
    index = {f.id: i for i, f in enumerate(ran)}
    new = set(report.baseline.new) if report.baseline is not None else set()
    results = [
        _result(
            f,
            index[f.id],
            report.target,
            None if report.baseline is None else "new" if f.id in new else "unchanged",
        )
        for f in report.findings
        if f.status in {"fail", "warn", "error"}
    ]
    notifications = [
        {
            "level": "error" if f.id in report.unfinished else "warning",
            "message": {"text": strip_controls(f"{f.id} could not run: {f.reason}")},
            "descriptor": {"id": f.id},
        }
        for f in report.findings
        if f.status == "error"
    ]
    invocation: dict[str, Any] = {
        "executionSuccessful": report.complete,
        "startTimeUtc": report.started_at,
    }
    if not report.complete:
        invocation["exitCodeDescription"] = strip_controls(incomplete_line(report))
    notifications += [
        {"level": "warning", "message": {"text": strip_controls(warning)}}
        for warning in report.warnings
    ]
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "bastion-scan",
                        "version": report.scanner_version or "0",
                        "informationUri": INFORMATION_URI,
                        "rules": rules,
                    }
                },
                "automationDetails": {"id": f"bastion-scan/{report.target}/"},
                "invocations": [invocation],
                "results": results,
                "properties": {
                    "target": report.target,
                    "grade": report.grade,
                    "score": report.score,
                    "caps": list(report.caps),
                    "counts": report.counts(),
                    "complete": report.complete,
                    "unfinished": list(report.unfinished),
                    "warnings": list(report.warnings),
                    "baseline": strip_controls(baseline_line(report)),
                    "fixed": list(report.baseline.fixed) if report.baseline else [],
                },
            }
        ],
    }


def render(report: Report) -> str:
    return dumps(report_sarif(report))
