"""The check API, the registry and the runner: every check inside an attempt, budgets kept,
skips explained."""

from __future__ import annotations

import httpx
import pytest

from bastion.scanner.check import Check, Result, check
from bastion.scanner.context import ScanContext, ScanOptions, TargetUnreachable
from bastion.scanner.registry import DuplicateCheckError, Registry, load_default_checks
from bastion.scanner.runner import scan
from tests.scanner.apps import secure_app
from tests.support import free_port

REF = ("https://example.org/ref",)


def _registry() -> Registry:
    return Registry()


def test_duplicate_ids_are_refused() -> None:
    registry = _registry()

    @check(
        id="headers.one",
        title="t",
        category="headers",
        severity="low",
        references=REF,
        registry=registry,
    )
    async def one(ctx: ScanContext) -> Result:
        return Result.passed()

    with pytest.raises(DuplicateCheckError):

        @check(
            id="headers.one",
            title="t",
            category="headers",
            severity="low",
            references=REF,
            registry=registry,
        )
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
def test_malformed_checks_are_refused_at_declaration(
    kwargs: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {
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
        Check(probe=probe, **fields)  # type: ignore[arg-type]


def test_default_registry_is_complete_and_documented() -> None:
    registry = load_default_checks()
    non_tls = [c for c in registry if c.category != "tls"]
    assert len(non_tls) >= 60
    for c in registry:
        assert c.doc, f"{c.id} has no docstring"
        assert c.remediation, f"{c.id} has no remediation"
        assert all(r.startswith("https://") for r in c.references), c.id


def _one(check_obj: Check) -> list[Check]:
    return [check_obj]


async def test_an_exception_becomes_an_error_finding_and_the_scan_goes_on() -> None:
    registry = _registry()

    @check(
        id="headers.boom",
        title="t",
        category="headers",
        severity="high",
        references=REF,
        registry=registry,
    )
    async def boom(ctx: ScanContext) -> Result:
        raise RuntimeError("probe bug")

    @check(
        id="headers.fine",
        title="t",
        category="headers",
        severity="high",
        references=REF,
        registry=registry,
    )
    async def fine(ctx: ScanContext) -> Result:
        return Result.passed("ok")

    report = await scan(
        "https://api.test/", checks=registry.all(), transport=httpx.ASGITransport(secure_app())
    )
    findings = {x.id: x for x in report.findings}
    assert findings["headers.boom"].status == "error"
    assert findings["headers.boom"].reason == "RuntimeError: probe bug"
    assert findings["headers.boom"].deduction == 0
    assert findings["headers.fine"].status == "pass"
    assert report.grade == "A+"


async def test_a_check_cannot_exceed_its_declared_requests() -> None:
    registry = _registry()

    @check(
        id="headers.greedy",
        title="t",
        category="headers",
        severity="low",
        references=REF,
        max_requests=2,
        registry=registry,
    )
    async def greedy(ctx: ScanContext) -> Result:
        for i in range(5):
            await ctx.request("GET", f"/n{i}")
        return Result.passed()

    report = await scan(
        "https://api.test/", checks=registry.all(), transport=httpx.ASGITransport(secure_app())
    )
    finding = report.findings[0]
    assert finding.status == "error"
    assert "exceeded its max_requests=2" in finding.reason
    assert report.requests == 3  # the preflight plus the two it was allowed


async def test_the_total_budget_bounds_the_scan() -> None:
    registry = _registry()

    @check(
        id="headers.many",
        title="t",
        category="headers",
        severity="low",
        references=REF,
        max_requests=100,
        registry=registry,
    )
    async def many(ctx: ScanContext) -> Result:
        for i in range(100):
            await ctx.request("GET", f"/n{i}")
        return Result.passed()

    report = await scan(
        "https://api.test/",
        ScanOptions(max_requests=10),
        checks=registry.all(),
        transport=httpx.ASGITransport(secure_app()),
    )
    assert report.findings[0].status == "error"
    assert "budget of 10 exhausted" in report.findings[0].reason
    assert report.requests == 10


async def test_active_token_and_suppressed_checks_are_skipped_with_reasons() -> None:
    registry = load_default_checks()
    ids = ["ratelimit.login-burst", "jwt.alg-none", "headers.xcto"]
    report = await scan(
        "https://api.test/",
        ScanOptions(ignore={"headers.xcto": "a proxy adds it"}),
        checks=[registry.get(i) for i in ids],
        transport=httpx.ASGITransport(secure_app()),
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
    report = await scan(
        "https://api.test/", checks=checks, transport=httpx.ASGITransport(secure_app())
    )
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
    await scan(
        "https://api.test/",
        checks=[registry.get("headers.xcto"), registry.get("headers.csp")],
        transport=httpx.ASGITransport(secure_app()),
        progress=lambda c, finding: seen.append(finding.id),
    )
    assert sorted(seen) == ["headers.csp", "headers.xcto"]
