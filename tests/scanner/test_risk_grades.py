"""Grades that track risk (issue 16): no TLS caps the grade, one root cause is one finding,
errors deduct (once per cause). Each fixture's ground truth is asserted control by control."""

from __future__ import annotations

from typing import Any

import httpx

from bastion.asgi import ASGIApp
from bastion.scanner.context import ScanOptions
from bastion.scanner.grading import grade, settle
from bastion.scanner.model import Finding, Report
from bastion.scanner.registry import load_default_checks
from bastion.scanner.runner import scan
from tests.scanner.apps import insecure_app, mint, run_checks, secure_app
from tests.scanner.riskapps import plain_api, quota_api, reflecting_api, spa_login_api


async def _scan(app: ASGIApp, target: str, **options: Any) -> Report:
    return await scan(
        target,
        ScanOptions(**options),
        checks=[c for c in load_default_checks() if c.category != "tls"],
        transport=httpx.ASGITransport(app),
    )


def _by_id(report: Report) -> dict[str, Finding]:
    return {f.id: f for f in report.findings}


def _failing(report: Report) -> set[str]:
    return {f.id for f in report.findings if f.status == "fail"}


async def test_an_api_without_tls_is_capped_at_c() -> None:
    """Before: the secure API served over plain HTTP graded A (95): its TLS and HSTS controls
    were skipped, and skips cost nothing. Now https.tls fails (high), caps the grade at C,
    and the listener that does not redirect is that same root cause, charged once."""
    report = await _scan(plain_api(), "http://api.test/")
    found = _by_id(report)
    assert found["https.tls"].status == "fail"
    assert "no TLS" in found["https.tls"].reason
    assert found["https.redirect"].status == "fail"
    assert found["https.redirect"].root_cause == "https.tls"
    assert found["https.redirect"].deduction == 0
    assert found["https.tls"].symptoms == ("https.redirect",)
    assert found["https.tls"].deduction == 20
    assert report.grade == "C"
    assert report.caps[0] == "C (https.tls: high failure)"
    # The rest of the ground truth: a secure API apart from TLS.
    assert _failing(report) == {"https.tls", "https.redirect"}
    for control in ("https.hsts", "https.hsts-max-age", "cors.insecure-origin"):
        assert found[control].status == "skip", control


async def test_the_same_api_over_tls_passes_https_tls() -> None:
    report = await _scan(secure_app(), "https://api.test/")
    assert _by_id(report)["https.tls"].status == "pass"
    assert report.caps == ()


async def test_one_reflected_origin_is_one_finding_with_its_symptoms() -> None:
    """Before: reflecting any Origin failed six CORS controls for -105 points. Now the
    critical reflection leads one finding; null, look-alike, plain-HTTP origins and the
    missing Vary are its symptoms, listed under it at no cost of their own."""
    report = await _scan(reflecting_api(), "https://api.test/")
    found = _by_id(report)
    lead = found["cors.origin-reflection-credentials"]
    assert lead.status == "fail"
    assert lead.deduction == 40
    symptoms = {
        "cors.origin-reflection",
        "cors.null-origin",
        "cors.lookalike-origin",
        "cors.insecure-origin",
        "cors.vary-origin",
    }
    assert set(lead.symptoms) == symptoms
    for control in symptoms:
        assert found[control].status == "fail", control
        assert found[control].root_cause == lead.id
        assert found[control].deduction == 0
    cors_cost = sum(f.deduction for f in report.findings if f.category == "cors")
    assert cors_cost == 40
    assert found["cors.wildcard"].status == "pass"
    assert report.grade == "F"  # a critical failure still caps at F
    assert report.caps[0] == "F (cors.origin-reflection-credentials: critical failure)"


async def test_a_lookalike_origin_alone_is_its_own_finding() -> None:
    """No grouping without the root cause: a prefix-matching policy is a finding itself."""
    findings = settle(
        [
            Finding("cors.origin-reflection", "t", "cors", "medium", "pass"),
            Finding("cors.lookalike-origin", "t", "cors", "high", "fail"),
        ]
    )
    assert findings[1].deduction == 20
    assert findings[1].root_cause == ""


def test_errors_deduct_like_warnings_once_per_reason() -> None:
    """A target must not raise its grade by making controls fail to run: an error costs what
    a warning costs; controls that errored for one reason (a failed TLS probe) cost once."""
    probe = "TLS probe failed: connection reset"
    findings = [
        Finding("tls.protocol-tls10", "t", "tls", "medium", "error", reason=probe),
        Finding("tls.cert-trust", "t", "tls", "critical", "error", reason=probe),
        Finding("tls.cipher-rc4", "t", "tls", "high", "error", reason=probe),
        Finding("headers.csp", "t", "headers", "medium", "error", reason="ReadError: boom"),
    ]
    graded = grade(findings)
    settled = {f.id: f for f in settle(findings)}
    assert settled["tls.cert-trust"].deduction == 20  # the most severe leads
    assert set(settled["tls.cert-trust"].symptoms) == {"tls.protocol-tls10", "tls.cipher-rc4"}
    assert settled["tls.cipher-rc4"].deduction == 0
    assert settled["headers.csp"].deduction == 5
    assert graded.score == 75
    assert graded.caps == ()  # errors never cap


def test_settle_is_idempotent() -> None:
    findings = [
        Finding("https.tls", "t", "https", "high", "fail"),
        Finding("https.redirect", "t", "https", "high", "fail"),
    ]
    once = settle(findings)
    assert settle(once) == once


# --- false positives the issue measured -------------------------------------------------------
async def test_a_token_expired_within_the_leeway_is_not_judged() -> None:
    """Before: bastion's own service failed jwt.expired with a token that had expired 12 s
    earlier, inside its documented 30 s leeway. Now such a token is not judged (skip, with
    the reason); one expired 60 s ago still is, and the secure app refuses it."""
    recent = await run_checks(secure_app(leeway=30), ["jwt.expired"], token=mint(lifetime=-12))
    assert recent["jwt.expired"].status == "skip"
    assert "within the 30 s clock-skew leeway" in recent["jwt.expired"].reason
    old = await run_checks(secure_app(leeway=30), ["jwt.expired"], token=mint(lifetime=-60))
    assert old["jwt.expired"].status == "pass"
    accepting = await run_checks(insecure_app(), ["jwt.expired"], token=mint(lifetime=-60))
    assert accepting["jwt.expired"].status == "fail"


async def test_an_absurd_quota_is_flagged_as_effectively_unlimited() -> None:
    """Before: a quota of 1e9 per 15 minutes passed both limit controls (a header was there,
    and its remaining count went down). Now both fail with the rate it allows."""
    found = await run_checks(quota_api(), ["ratelimit.headers", "ratelimit.api-burst"], active=True)
    for control in ("ratelimit.headers", "ratelimit.api-burst"):
        assert found[control].status == "fail", control
        assert "1000000000 requests per 900 s" in found[control].reason
        assert "effectively unlimited" in found[control].reason
    # One cause, one deduction: the headers' absurd quota is a symptom of the burst's finding.
    assert found["ratelimit.headers"].root_cause == "ratelimit.api-burst"
    assert found["ratelimit.headers"].deduction == 0
    assert found["ratelimit.api-burst"].deduction == 10
    sane = await run_checks(
        quota_api(100), ["ratelimit.headers", "ratelimit.api-burst"], active=True
    )
    assert {k: f.status for k, f in sane.items()} == {
        "ratelimit.headers": "pass",
        "ratelimit.api-burst": "pass",
    }


async def test_200s_from_a_path_that_is_not_a_login_are_not_failed_logins() -> None:
    """Before: a catch-all page at the login path answered 200 to twelve "failed logins" and
    ratelimit.login-burst failed (high). Now the first 200 to a wrong password ends the burst
    (one request, not twelve) and the control skips with the reason."""
    found = await run_checks(
        spa_login_api(),
        ["ratelimit.login-burst", "ratelimit.retry-after", "ratelimit.forwarded-spoof"],
        active=True,
    )
    burst = found["ratelimit.login-burst"]
    assert burst.status == "skip"
    assert "answered 200 to a wrong password: not a login endpoint" in burst.reason
    assert burst.evidence.count("statuses of 1 failed logins") == 1
    assert found["ratelimit.retry-after"].status == "skip"
    # A real login with no limit still fails; one with a limit passes.
    unlimited = await run_checks(
        secure_app(auth_limit=10**6), ["ratelimit.login-burst"], active=True
    )
    assert unlimited["ratelimit.login-burst"].status == "fail"
    limited = await run_checks(secure_app(), ["ratelimit.login-burst"], active=True)
    assert limited["ratelimit.login-burst"].status == "pass"


async def test_every_format_shows_the_group_and_stays_valid() -> None:
    """The grouping is in every format: JSON (schema-valid root_cause/symptoms), SARIF
    (valid; a symptom is a note naming its cause), text and HTML ("symptom of ...")."""
    import json
    from pathlib import Path

    import jsonschema

    from bastion.scanner.reporters import render

    report = await _scan(reflecting_api(), "https://api.test/")
    root = Path(__file__).parents[2]
    data = json.loads(render(report, "json"))
    schema = json.loads((root / "src/bastion/scanner/report.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(data)
    by_id = {f["id"]: f for f in data["findings"]}
    assert by_id["cors.null-origin"]["root_cause"] == "cors.origin-reflection-credentials"
    assert "cors.null-origin" in by_id["cors.origin-reflection-credentials"]["symptoms"]
    sarif = json.loads(render(report, "sarif"))
    sarif_schema = json.loads((Path(__file__).parent / "data/sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator(sarif_schema).validate(sarif)
    results = {r["ruleId"]: r for r in sarif["runs"][0]["results"]}
    assert results["cors.null-origin"]["level"] == "note"
    assert (
        "symptom of cors.origin-reflection-credentials"
        in (results["cors.null-origin"]["message"]["text"])
    )
    assert results["cors.origin-reflection-credentials"]["level"] == "error"
    for fmt in ("text", "html"):
        assert "symptom of cors.origin-reflection-credentials (counted there)" in render(
            report, fmt
        )
