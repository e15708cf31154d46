"""Run the controls against a target and produce a graded :class:`~bastion.scanner.model.Report`.

Every check runs inside an attempt: an exception (a timeout, a refused connection, a bug in a
probe, a check exceeding its declared ``max_requests``) becomes a finding with
``status="error"`` and the reason, and never aborts the scan. Controls run concurrently; the
context's semaphore bounds how many requests are in flight at once.

The scan ends by its deadline (``--max-time``) whatever the target does: requests are cut at
the deadline (:class:`~bastion.scanner.context.ScanDeadline`), controls still running then are
cancelled, and each of those is an ``error`` finding ("did not finish ...") named in the
report's ``unfinished`` list, the report being marked incomplete. What was measured before
the deadline is kept.
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
    BudgetExhausted,
    ScanContext,
    ScanDeadline,
    ScanOptions,
    current_check_budget,
    reset_check_budget,
)
from bastion.scanner.model import Finding, Report
from bastion.scanner.origin import OffOrigin
from bastion.scanner.registry import load_default_checks
from bastion.scanner.tls import collect as collect_tls_facts

ProgressCallback = Callable[[Check, Finding], None]

# A single control never holds the scan hostage: beyond this it is reported as an error.
CHECK_TIMEOUT_S = 60.0
UNFINISHED = "unfinished"  # the reason of a control the scan's deadline stopped starts so
CANCEL_GRACE_S = 0.25  # for cancelled controls to close their connections


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
        except ScanDeadline as exc:
            result = Result.errored(f"{UNFINISHED}: {exc}")
        except OffOrigin as exc:
            result = Result.errored(f"refused: {exc}")
        except RecursionError:  # a hostile document's nesting must never abort the scan
            result = Result.errored("the target's document nested too deeply to judge")
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
    """Scan ``target`` and return the graded report, within ``options.max_time``.

    Raises :class:`~bastion.scanner.context.TargetUnreachable` when the target does not
    answer at all (the CLI's exit 2); everything after that is a finding.
    """
    options = options or ScanOptions()
    selected = select_checks(checks)
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    async with ScanContext(target, options, transport=transport, tls=collect_tls_facts) as ctx:
        await ctx.preflight()

        async def one(check: Check) -> Finding:
            finding = await run_check(ctx, check)
            if progress is not None:
                progress(check, finding)
            return finding

        tasks = [asyncio.create_task(one(c), name=f"bastion-scan {c.id}") for c in selected]
        findings = await _gather_until(ctx, tasks, selected)
        warnings = await _warnings(ctx, findings)
        requests = ctx.requests_sent
        coverage = ctx.coverage
    findings = grading.settle(findings)
    unfinished = tuple(f.id for f in findings if f.reason.startswith(UNFINISHED))
    graded = grading.grade(findings, {c.id: c.cap for c in selected})
    return Report(
        target=ctx.redactor.text(target),
        started_at=started_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        duration_s=round(time.perf_counter() - started, 3),
        grade=graded.grade,
        score=graded.score,
        findings=tuple(findings),
        caps=graded.caps,
        active=options.active,
        requests=requests,
        scanner_version=__version__,
        complete=not unfinished,
        unfinished=unfinished,
        max_time_s=options.max_time,
        coverage=coverage,
        warnings=tuple(ctx.redactor.text(w) for w in warnings),
    )


async def _warnings(ctx: ScanContext, findings: list[Finding]) -> list[str]:
    """Warnings about the scan itself (:mod:`bastion.scanner.notices`), never past the
    scan's deadline: a scan that ran out of time says so already."""
    from bastion.scanner.notices import scan_warnings

    remaining = ctx.remaining()
    if remaining is not None and remaining <= 0:
        return []
    try:
        async with asyncio.timeout(remaining):
            return await scan_warnings(ctx, findings)
    except (TimeoutError, ScanDeadline, httpx.HTTPError, BudgetExhausted, OffOrigin):
        return []


async def _gather_until(
    ctx: ScanContext, tasks: list[asyncio.Task[Finding]], selected: list[Check]
) -> list[Finding]:
    """Each control's finding, in order; a control still running at the scan's deadline is
    cancelled and reported unfinished."""
    remaining = ctx.remaining()
    _done, pending = await asyncio.wait(tasks, timeout=None if remaining is None else remaining)
    for task in pending:
        task.cancel()
    if pending:
        # Let cancelled controls close their responses (each close is bounded); never wait on
        # the target beyond that.
        await asyncio.wait(pending, timeout=CANCEL_GRACE_S)
    findings = []
    limit = ctx.options.max_time
    for task, check in zip(tasks, selected, strict=True):
        if task.done() and not task.cancelled() and task.exception() is None:
            findings.append(task.result())
            continue
        if task.done() and not task.cancelled():
            reason = f"{type(task.exception()).__name__}: {task.exception()}"
        else:
            reason = f"{UNFINISHED}: did not finish within the scan's --max-time of {limit:g} s"
        finding = Finding(
            id=check.id,
            title=check.title,
            category=check.category,
            severity=check.severity,
            status="error",
            remediation=check.remediation,
            references=check.references,
            reason=ctx.redactor.text(reason),
        )
        findings.append(_with_deduction(finding))
    return findings
