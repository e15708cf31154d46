"""Reporters: JSON against the committed schema, SARIF against the official OASIS schema,
HTML self-contained and escaped, text with the grade explained; no secret in any format."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path

import jsonschema
import pytest

from bastion.scanner.model import Finding, Report, Status
from bastion.scanner.reporters import FORMATS, render
from bastion.scanner.reporters.json import finding_dict, report_dict
from tests.scanner.apps import insecure_app, mint, secure_app

DATA = Path(__file__).parent / "data"
REPORT_SCHEMA = Path(__file__).parents[2] / "src/bastion/scanner/report.schema.json"
SECRET_HEADER_VALUE = "hdr-secret-5f2e9b7c"


@functools.cache
def sample_reports() -> dict[str, Report]:
    """An insecure and a secure report (every non-TLS control, --active, a token)."""
    from tests.scanner.test_controls import WEAK_TOKEN

    async def both() -> dict[str, Report]:
        import httpx

        from bastion.scanner.context import ScanOptions
        from bastion.scanner.registry import load_default_checks
        from bastion.scanner.runner import scan

        checks = [c for c in load_default_checks() if c.category != "tls"]
        out = {}
        for name, app, token in (
            ("insecure", insecure_app(), WEAK_TOKEN),
            ("secure", secure_app(), mint()),
        ):
            options = ScanOptions(
                active=True,
                token=token,
                headers=(("X-Api-Key", SECRET_HEADER_VALUE),),
                ignore={"headers.corp": "the CDN adds CORP"},
            )
            out[name] = await scan(
                "https://api.test/", options, checks=checks, transport=httpx.ASGITransport(app)
            )
        return out

    return asyncio.run(both())


@pytest.fixture(params=["insecure", "secure"])
def report(request: pytest.FixtureRequest) -> Report:
    return sample_reports()[request.param]


def test_json_report_matches_the_committed_schema(report: Report) -> None:
    data = json.loads(render(report, "json"))
    schema = json.loads(REPORT_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(data)
    # The contract's shape, exactly these keys present.
    contract = {"target", "started_at", "duration_s", "grade", "score", "findings"}
    assert contract <= set(data)
    for finding in data["findings"]:
        assert {
            "id",
            "title",
            "category",
            "severity",
            "status",
            "evidence",
            "remediation",
            "references",
        } <= set(finding)


def test_schema_and_output_do_not_drift() -> None:
    """Adding a key to the JSON without the schema (or the reverse) fails here."""
    schema = json.loads(REPORT_SCHEMA.read_text())
    report = sample_reports()["secure"]
    assert set(schema["required"]) == set(schema["properties"]) == set(report_dict(report))
    finding_schema = schema["$defs"]["finding"]
    assert (
        set(finding_schema["required"])
        == set(finding_schema["properties"])
        == set(finding_dict(report.findings[0]))
    )


def test_score_is_explained_by_the_deductions(report: Report) -> None:
    data = json.loads(render(report, "json"))
    assert data["score"] == max(0, 100 - sum(f["deduction"] for f in data["findings"]))
    assert data["counts"]["fail"] == sum(f["status"] == "fail" for f in data["findings"])


def test_suppressed_control_is_skipped_with_its_reason(report: Report) -> None:
    finding = {f.id: f for f in report.findings}["headers.corp"]
    assert finding.status == "skip"
    assert finding.reason == "suppressed: the CDN adds CORP"
    assert finding.deduction == 0


def test_insecure_report_grades_f_with_caps() -> None:
    report = sample_reports()["insecure"]
    assert report.grade == "F"
    assert any(cap.startswith("F (") for cap in report.caps)
    assert sample_reports()["secure"].grade == "A+"


def test_sarif_validates_against_the_official_schema(report: Report) -> None:
    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text())
    sarif = json.loads(render(report, "sarif"))
    jsonschema.Draft4Validator(schema).validate(sarif)
    run = sarif["runs"][0]
    rules = {rule["id"] for rule in run["tool"]["driver"]["rules"]}
    problems = [f for f in report.findings if f.status in {"fail", "warn", "error"}]
    assert len(run["results"]) == len(problems)
    for result in run["results"]:
        assert result["ruleId"] in rules
        rule = run["tool"]["driver"]["rules"][result["ruleIndex"]]
        assert rule["id"] == result["ruleId"]
    assert run["properties"]["grade"] == report.grade


def test_sarif_levels_follow_severity() -> None:
    sarif = json.loads(render(sample_reports()["insecure"], "sarif"))
    results = {r["ruleId"]: r for r in sarif["runs"][0]["results"]}
    assert results["exposure.env"]["level"] == "error"
    assert results["exposure.env"]["kind"] == "fail"
    assert results["headers.xcto"]["level"] == "note"
    rules = {r["id"]: r for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
    assert rules["exposure.env"]["properties"]["security-severity"] == "9.5"


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_secret_reaches_any_report(fmt: str) -> None:
    from tests.scanner.test_controls import WEAK_TOKEN

    for report in sample_reports().values():
        output = render(report, fmt)
        assert WEAK_TOKEN not in output
        assert SECRET_HEADER_VALUE not in output
        assert "eyJ" not in output, "a JWT-looking string escaped redaction"
        # The insecure app echoes cookies and tokens back: their values must be redacted.
        assert "abc123" not in output


def _hostile_report() -> Report:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    finding = Finding(
        id="headers.xcto",
        title=f"title {evil}",
        category="headers",
        severity="high",
        status="fail",
        evidence=f"< server: {evil}",
        remediation=f"fix {evil}",
        references=("https://example.org/?a=1&b=<x>", 'javascript:alert("x")'),
        reason=f"reason {evil}",
        deduction=20,
    )
    return Report(
        target=f"https://api.test/{evil}",
        started_at="2026-01-01T00:00:00Z",
        duration_s=0.5,
        grade="B",
        score=80,
        findings=(finding,),
        caps=(f"B (headers.xcto: high failure {evil})",),
        scanner_version="0.1.0",
    )


def test_html_escapes_everything_from_the_target() -> None:
    html = render(_hostile_report(), "html")
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "&lt;script&gt;" in html
    assert 'href="javascript:' not in html  # only http(s) references become links
    assert 'href="https://example.org/?a=1&amp;b=&lt;x&gt;"' in html


def test_html_is_self_contained(report: Report) -> None:
    html = render(report, "html")
    lowered = html.lower()
    for marker in ("<script", "<link", "<img", "<iframe", "@import", "url("):
        assert marker not in lowered, marker
    assert "default-src 'none'" in html  # the page's own CSP forbids loading anything
    assert f'id="grade">{report.grade}<' in html
    assert html.count("<details") == len(report.findings)


def test_text_report_explains_the_grade() -> None:
    report = sample_reports()["insecure"]
    text = render(report, "text")
    assert f"Grade {report.grade}" in text
    assert "How the grade was computed" in text
    for finding in report.findings:
        if finding.deduction:
            assert finding.id in text
    # failures come before passes within a category table
    headers_part = text[text.index("Security headers (headers)") :]
    assert headers_part.index("FAIL") < headers_part.index("SKIP")
    assert "\x1b[" not in text  # no colour codes unless asked


def test_text_names_the_response_each_passing_control_judged() -> None:
    from bastion.scanner.reporters.text import judged

    assert judged("> GET https://a/x HTTP/2\n> Origin: o\n< 404 Not Found\n< vary: x") == (
        "GET https://a/x -> 404 Not Found"
    )
    assert judged("TLSv1.2 handshake refused") == "TLSv1.2 handshake refused"
    text = render(sample_reports()["secure"], "text")
    assert "GET https://api.test/ -> 200 OK" in text


def _incomplete_report() -> Report:
    """A scan stopped by --max-time: one control measured, two errored (one of them cut by
    the deadline), with control characters in what the target supplied."""

    def finding(check_id: str, status: Status, reason: str, evidence: str = "") -> Finding:
        return Finding(
            id=check_id,
            title=f"title of {check_id}",
            category="headers",
            severity="medium",
            status=status,
            evidence=evidence,
            remediation="fix it",
            references=("https://example.org/ref",),
            reason=reason,
        )

    return Report(
        target="https://api.test/",
        started_at="2026-01-01T00:00:00Z",
        duration_s=5.9,
        grade="A",
        score=90,
        findings=(
            finding("headers.xcto", "fail", "missing", "< 200 OK \x1b]52;c;aGk=\x07"),
            finding("headers.csp", "error", "RequestDeadline: no response head within 2 s"),
            finding(
                "headers.hsts",
                "error",
                "unfinished: did not finish within the scan's --max-time of 6 s",
            ),
        ),
        scanner_version="0.1.0",
        complete=False,
        unfinished=("headers.hsts",),
        max_time_s=6.0,
    )


def test_an_incomplete_report_says_so_in_every_format() -> None:
    report = _incomplete_report()
    line = (
        "INCOMPLETE: the scan's --max-time of 6 s ran out; 1 controls did not finish: headers.hsts"
    )
    errors = "2 controls could not judge the target (errors)"
    data = json.loads(render(report, "json"))
    schema = json.loads(REPORT_SCHEMA.read_text())
    jsonschema.Draft202012Validator(schema).validate(data)
    assert (data["complete"], data["unfinished"], data["max_time_s"]) == (
        False,
        ["headers.hsts"],
        6.0,
    )
    assert line in render(report, "text")
    assert errors in render(report, "text")
    html = render(report, "html")
    assert line.replace("'", "&#x27;") in html and errors in html
    sarif = json.loads(render(report, "sarif"))
    jsonschema.Draft4Validator(json.loads((DATA / "sarif-schema-2.1.0.json").read_text())).validate(
        sarif
    )
    run = sarif["runs"][0]
    invocation = run["invocations"][0]
    assert invocation["executionSuccessful"] is False
    assert invocation["exitCodeDescription"] == line
    assert run["properties"]["unfinished"] == ["headers.hsts"]
    results = {r["ruleId"]: r for r in run["results"]}
    assert results["headers.csp"]["kind"] == "review"
    assert results["headers.csp"]["message"]["text"] == (
        "title of headers.csp: could not be judged: RequestDeadline: no response head within 2 s"
    )
    notifications = {
        n["descriptor"]["id"]: n["level"] for n in invocation["toolExecutionNotifications"]
    }
    assert notifications == {"headers.csp": "warning", "headers.hsts": "error"}


def test_a_complete_report_has_no_incomplete_line() -> None:
    report = sample_reports()["secure"]
    assert report.complete and report.unfinished == ()
    for fmt in FORMATS:
        assert "INCOMPLETE" not in render(report, fmt)
    sarif = json.loads(render(report, "sarif"))
    assert sarif["runs"][0]["invocations"][0]["executionSuccessful"] is True
