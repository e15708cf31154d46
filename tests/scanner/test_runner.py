"""The check API, the registry and the runner: every check inside an attempt, budgets kept,
skips explained."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from bastion.asgi import ASGIApp, Receive, Scope, Send
from bastion.scanner.check import Check, Probe, Result, check
from bastion.scanner.context import ScanContext, ScanOptions, TargetUnreachable
from bastion.scanner.model import Report, Severity
from bastion.scanner.registry import DuplicateCheckError, Registry, load_default_checks
from bastion.scanner.runner import ProgressCallback, scan
from tests.scanner.apps import secure_app
from tests.support import free_port

REF = ("https://example.org/ref",)


def _registry() -> Registry:
    return Registry()


def _test_check(
    registry: Registry, id: str, *, severity: Severity = "low", max_requests: int = 1
) -> Callable[[Probe], Check]:
    """``@check`` with the fields these runner tests do not care about filled in."""
    return check(
        id=id,
        title="t",
        category="headers",
        severity=severity,
        references=REF,
        max_requests=max_requests,
        registry=registry,
    )


def _sends(count: int) -> Probe:
    """A probe that sends ``count`` GET requests and passes: a check that spends its budget."""

    async def probe(ctx: ScanContext) -> Result:
        for i in range(count):
            await ctx.request("GET", f"/n{i}")
        return Result.passed()

    return probe


async def _scan_secure(
    checks: list[Check],
    options: ScanOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> Report:
    """Scan the in-process secure app over ASGI (no network)."""
    return await scan(
        "https://api.test/",
        options,
        checks=checks,
        transport=httpx.ASGITransport(secure_app()),
        progress=progress,
    )


def test_duplicate_ids_are_refused() -> None:
    registry = _registry()

    @_test_check(registry, "headers.one")
    async def one(ctx: ScanContext) -> Result:
        return Result.passed()

    with pytest.raises(DuplicateCheckError):

        @_test_check(registry, "headers.one")
        async def again(ctx: ScanContext) -> Result:
            return Result.passed()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": "Headers.X"}, "dotted lower-case"),
        ({"id": "cors.x"}, "must start with its category"),
        ({"category": "nope", "id": "nope.x"}, "unknown category"),
        ({"severity": "severe"}, "unknown severity"),
        ({"references": ()}, "reference"),
        ({"cap": "E"}, "unknown cap"),
    ],
)
def test_malformed_checks_are_refused_at_declaration(kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {
        "id": "headers.x",
        "title": "t",
        "category": "headers",
        "severity": "low",
        "references": REF,
    }
    fields.update(kwargs)

    async def probe(ctx: ScanContext) -> Result:
        return Result.passed()

    with pytest.raises(ValueError, match=message):
        Check(probe=probe, **fields)


def test_default_registry_is_complete_and_documented() -> None:
    registry = load_default_checks()
    non_tls = [c for c in registry if c.category != "tls"]
    assert len(non_tls) >= 60
    for c in registry:
        assert c.doc, f"{c.id} has no docstring"
        assert c.remediation, f"{c.id} has no remediation"
        assert all(r.startswith("https://") for r in c.references), c.id


async def test_an_exception_becomes_an_error_finding_and_the_scan_goes_on() -> None:
    registry = _registry()

    @_test_check(registry, "headers.boom", severity="high")
    async def boom(ctx: ScanContext) -> Result:
        raise RuntimeError("probe bug")

    @_test_check(registry, "headers.fine", severity="high")
    async def fine(ctx: ScanContext) -> Result:
        return Result.passed("ok")

    report = await _scan_secure(registry.all())
    findings = {x.id: x for x in report.findings}
    assert findings["headers.boom"].status == "error"
    assert findings["headers.boom"].reason == "RuntimeError: probe bug"
    # An error costs what a warning costs (a target must not gain by breaking a probe).
    assert findings["headers.boom"].deduction == 10
    assert findings["headers.fine"].status == "pass"
    assert report.grade == "A"


async def test_a_check_cannot_exceed_its_declared_requests() -> None:
    registry = _registry()

    _test_check(registry, "headers.greedy", max_requests=2)(_sends(5))
    report = await _scan_secure(registry.all())
    finding = report.findings[0]
    assert finding.status == "error"
    assert "exceeded its max_requests=2" in finding.reason
    assert report.requests == 3  # the preflight plus the two it was allowed


async def test_the_total_budget_bounds_the_scan() -> None:
    registry = _registry()

    _test_check(registry, "headers.many", max_requests=100)(_sends(100))
    report = await _scan_secure(registry.all(), ScanOptions(max_requests=10, operation_budget=0))
    assert report.findings[0].status == "error"
    assert "budget of 10 exhausted" in report.findings[0].reason
    assert report.requests == 10


async def test_active_token_and_suppressed_checks_are_skipped_with_reasons() -> None:
    registry = load_default_checks()
    ids = ["ratelimit.login-burst", "jwt.alg-none", "headers.xcto"]
    report = await _scan_secure(
        [registry.get(i) for i in ids], ScanOptions(ignore={"headers.xcto": "a proxy adds it"})
    )
    reasons = {x.id: (x.status, x.reason) for x in report.findings}
    assert reasons == {
        "ratelimit.login-burst": ("skip", "active control: run with --active"),
        "jwt.alg-none": ("skip", "needs a token: run with --token JWT"),
        "headers.xcto": ("skip", "suppressed: a proxy adds it"),
    }
    assert report.requests == 1  # only the preflight


async def test_passive_scan_stays_within_a_bounded_number_of_requests() -> None:
    registry = load_default_checks()
    checks = [c for c in registry if c.category != "tls"]
    report = await _scan_secure(checks)
    assert report.requests <= ScanOptions().max_requests
    assert report.requests < 150, report.requests  # shared fetches keep it small
    assert not report.active


async def test_an_unreachable_target_raises() -> None:
    port = free_port()
    with pytest.raises(TargetUnreachable, match="ConnectError"):
        await scan(f"http://127.0.0.1:{port}/", checks=[])


async def test_progress_is_reported_per_check() -> None:
    registry = load_default_checks()
    seen: list[str] = []
    await _scan_secure(
        [registry.get("headers.xcto"), registry.get("headers.csp")],
        progress=lambda c, finding: seen.append(finding.id),
    )
    assert sorted(seen) == ["headers.csp", "headers.xcto"]


def _slow_app(delay: float) -> ASGIApp:
    """An ASGI app that answers / at once and every other path after ``delay`` seconds."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/":
            await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def test_the_scan_deadline_keeps_what_was_measured_and_names_what_did_not_finish() -> None:
    registry = _registry()

    @_test_check(registry, "headers.quick")
    async def quick(ctx: ScanContext) -> Result:
        return Result.passed((await ctx.baseline()).summary)

    @_test_check(registry, "headers.stuck")
    async def stuck(ctx: ScanContext) -> Result:
        await asyncio.Event().wait()  # never returns: cancelled at the deadline
        return Result.passed()

    @_test_check(registry, "headers.slow-request")
    async def slow_request(ctx: ScanContext) -> Result:
        await ctx.request("GET", "/slow")  # the scan's deadline cuts it
        return Result.passed()

    started = time.monotonic()
    report = await scan(
        "https://api.test/",
        ScanOptions(max_time=1.5, timeout=30),
        checks=registry.all(),
        transport=httpx.ASGITransport(_slow_app(60)),
    )
    assert time.monotonic() - started < 1.5 + 1.0
    statuses = {f.id: (f.status, f.reason) for f in report.findings}
    assert statuses["headers.quick"] == ("pass", "")
    assert report.complete is False
    assert report.unfinished == ("headers.slow-request", "headers.stuck")
    for check_id in report.unfinished:
        assert statuses[check_id] == (
            "error",
            "unfinished: did not finish within the scan's --max-time of 1.5 s",
        )
    assert report.max_time_s == 1.5


async def test_a_request_deadline_is_an_error_not_unfinished() -> None:
    registry = _registry()

    @_test_check(registry, "headers.slow-request")
    async def slow_request(ctx: ScanContext) -> Result:
        await ctx.request("GET", "/slow")
        return Result.passed()

    report = await scan(
        "https://api.test/",
        ScanOptions(max_time=30, timeout=0.3),
        checks=registry.all(),
        transport=httpx.ASGITransport(_slow_app(60)),
    )
    (finding,) = report.findings
    assert finding.status == "error"
    assert finding.reason.startswith("RequestDeadline: no response head within 0.3 s")
    assert report.complete is True and report.unfinished == ()


async def test_a_baseline_that_never_answers_is_unreachable_within_its_deadline() -> None:
    async def never(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(60)

    started = time.monotonic()
    with pytest.raises(TargetUnreachable, match=r"no response head within 0\.3 s"):
        await scan(
            "https://api.test/",
            ScanOptions(timeout=0.3),
            checks=[],
            transport=httpx.ASGITransport(never),
        )
    assert time.monotonic() - started < 5
