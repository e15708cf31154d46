"""Run the controls against a target and produce a graded :class:`~bastion.scanner.model.Report`.

Every check runs inside an attempt: an exception (a timeout, a refused connection, a bug in a
probe, a check exceeding its declared ``max_requests``) becomes a finding with
``status="error"`` and the reason, and never aborts the scan. Controls run concurrently; the
context's semaphore bounds how many requests are in flight at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import httpx

from bastion import __version__
from bastion.scanner import grading
from bastion.scanner.check import Check, Result
from bastion.scanner.context import (
    ScanContext,
    ScanOptions,
    current_check_budget,
    reset_check_budget,
)
from bastion.scanner.model import Finding, Report
from bastion.scanner.registry import load_default_checks

ProgressCallback = Callable[[Check, Finding], None]

# A single control never holds the scan hostage: beyond this it is reported as an error.
CHECK_TIMEOUT_S = 60.0


def select_checks(checks: Iterable[Check] | None = None) -> list[Check]:
    """The checks to run: the given ones, or every registered control."""
    return list(checks) if checks is not None else load_default_checks().all()


async def run_check(ctx: ScanContext, check: Check) -> Finding:
    """Run one control inside an attempt and turn its result into a finding."""
    options = ctx.options
    if check.id in options.ignore:
        result = Result.skipped(f"suppressed: {options.ignore[check.id] or 'no reason given'}")
    elif check.active and not options.active:
        result = Result.skipped("active control: run with --active")
    elif check.needs_token and not options.token:
        result = Result.skipped("needs a token: run with --token JWT")
    else:
        token = current_check_budget(check.id, check.max_requests)
        try:
            result = await asyncio.wait_for(check.probe(ctx), CHECK_TIMEOUT_S)
        except TimeoutError:
            result = Result.errored(f"timed out after {CHECK_TIMEOUT_S:.0f} s")
        except httpx.HTTPError as exc:
            result = Result.errored(f"{type(exc).__name__}: {exc or 'request failed'}")
        except Exception as exc:  # any bug in one probe must not abort the scan
            result = Result.errored(f"{type(exc).__name__}: {exc}")
        finally:
            reset_check_budget(token)
        if not isinstance(result, Result):
            result = Result.errored(f"probe returned {type(result).__name__}, not Result")
    finding = Finding(
        id=check.id,
        title=check.title,
        category=check.category,
        severity=check.severity,
        status=result.status,
        evidence=ctx.redactor.text(result.evidence),
        remediation=check.remediation,
        references=check.references,
        reason=ctx.redactor.text(result.reason),
    )
    return _with_deduction(finding)


def _with_deduction(finding: Finding) -> Finding:
    from dataclasses import replace

    return replace(finding, deduction=grading.deduction(finding))


async def scan(
    target: str,
    options: ScanOptions | None = None,
    *,
    checks: Iterable[Check] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    progress: ProgressCallback | None = None,
) -> Report:
    """Scan ``target`` and return the graded report.

    Raises :class:`~bastion.scanner.context.TargetUnreachable` when the target does not
    answer at all (the CLI's exit 2); everything after that is a finding.
    """
    options = options or ScanOptions()
    selected = select_checks(checks)
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    async with ScanContext(target, options, transport=transport) as ctx:
        await ctx.preflight()

        async def one(check: Check) -> Finding:
            finding = await run_check(ctx, check)
            if progress is not None:
                progress(check, finding)
            return finding

        findings = await asyncio.gather(*(one(c) for c in selected))
        requests = ctx.requests_sent
    graded = grading.grade(findings, {c.id: c.cap for c in selected})
    return Report(
        target=target,
        started_at=started_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        duration_s=round(time.perf_counter() - started, 3),
        grade=graded.grade,
        score=graded.score,
        findings=tuple(findings),
        caps=graded.caps,
        active=options.active,
        requests=requests,
        scanner_version=__version__,
    )
