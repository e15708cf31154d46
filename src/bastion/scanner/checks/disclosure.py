"""Information disclosure: version banners, debug headers, and what error responses leak.

The error probes are shared by every control here and sent once per scan: a 404, a 405, a
malformed JSON body, JSON nested 40 deep, a 16 KiB header and a `%` path (an invalid
percent-escape, which many stacks turn into a 500). Their bodies and headers are searched
for stack traces, framework debug pages, default error pages and internal details.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import httpx

from bastion.scanner.check import Result, check
from bastion.scanner.checks._util import (
    DEBUG_PAGE_PATTERNS,
    FRAMEWORK_PAGE_PATTERNS,
    INTERNAL_DETAIL_PATTERNS,
    OWASP_API8,
    STACK_TRACE_PATTERNS,
    WSTG,
    find_signatures,
    response_text,
)
from bastion.scanner.context import ANONYMOUS, ScanContext
from bastion.scanner.evidence import Exchange, join_evidence
from bastion.scanner.proxy_pages import describe_skipped, proxy_page

WSTG_ERRORS = f"{WSTG}/08-Testing_for_Error_Handling/01-Testing_For_Improper_Error_Handling"
WSTG_FINGERPRINT = f"{WSTG}/01-Information_Gathering/02-Fingerprint_Web_Server"
ZAP = "https://www.zaproxy.org/docs/alerts"

DEEP_JSON = b"[" * 40 + b"]" * 40


async def error_probes(ctx: ScanContext) -> list[Exchange]:
    """Responses to requests built to fail (each sent once per scan; a probe the server
    answers by closing the connection is simply absent)."""

    async def send() -> list[Exchange]:
        probes: list[Callable[[], Awaitable[Exchange]]] = [
            lambda: ctx.not_found(),
            lambda: ctx.fetch("PUT", "/", extra_headers=ANONYMOUS),
            lambda: ctx.fetch(
                "POST",
                "",
                headers={"Content-Type": "application/json"},
                content=b'{"bastion_scan": ',
                extra_headers=ANONYMOUS,
            ),
            lambda: ctx.fetch(
                "POST",
                "",
                headers={"Content-Type": "application/json"},
                content=DEEP_JSON,
                extra_headers=ANONYMOUS,
            ),
            lambda: ctx.fetch(
                "GET", "", headers={"X-Bastion-Scan-Padding": "a" * 16384}, extra_headers=ANONYMOUS
            ),
            lambda: ctx.request("GET", raw_target=b"/bastion-scan/%", extra_headers=ANONYMOUS),
        ]
        exchanges: list[Exchange] = []
        for probe in probes:
            try:
                exchanges.append(await probe())
            except httpx.HTTPError:
                continue
        return exchanges

    return await ctx.memo("error-probes", send)


def _scan(
    exchanges: list[Exchange], patterns: tuple[tuple[str, re.Pattern[str]], ...]
) -> tuple[list[str], list[Exchange]]:
    reasons: list[str] = []
    hits: list[Exchange] = []
    for ex in exchanges:
        found = find_signatures(response_text(ex), patterns, ex.redactor)
        if found:
            hits.append(ex)
            reasons += [f"{label} in {ex.summary}: {excerpt!r}" for label, excerpt in found]
    return reasons, hits


async def _leak_check(
    ctx: ScanContext,
    patterns: tuple[tuple[str, re.Pattern[str]], ...],
    warn: bool = False,
    exchanges: list[Exchange] | None = None,
) -> Result:
    exchanges = await error_probes(ctx) if exchanges is None else exchanges
    if not exchanges:
        return Result.errored("every error probe failed at the connection level")
    reasons, hits = _scan(exchanges, patterns)
    if reasons:
        evidence = join_evidence(*(ex.describe(["content-type"], body=True) for ex in hits))
        reason = "; ".join(reasons[:4])
        return Result.warned(evidence, reason) if warn else Result.failed(evidence, reason)
    return Result.passed("\n".join(f"{ex.summary}: no leak signature" for ex in exchanges))


@check(
    id="disclosure.stack-trace",
    title="Error responses carry no stack trace",
    category="disclosure",
    severity="high",
    references=(WSTG_ERRORS,),
    remediation="Catch every exception in the outermost layer and answer a generic error body "
    '(`{"error": "An internal error occurred"}`); log the trace server-side only.',
    max_requests=6,
)
async def stack_trace(ctx: ScanContext) -> Result:
    """A stack trace gives an attacker file paths, library versions and the code path of
    the failure, the map to the next exploit (ZAP 90022 / 10023)."""
    return await _leak_check(ctx, STACK_TRACE_PATTERNS)


@check(
    id="disclosure.debug-mode",
    title="No framework debug page",
    category="disclosure",
    severity="high",
    references=(f"{ZAP}/10023/",),
    remediation="Turn debug mode off in production (DEBUG=False, no Werkzeug debugger, no "
    "Starlette debug=True, no Ignition).",
    max_requests=6,
)
async def debug_mode(ctx: ScanContext) -> Result:
    """Interactive debuggers (Werkzeug's allows code execution), Django's DEBUG pages and
    similar print settings, source and sometimes secrets."""
    return await _leak_check(ctx, DEBUG_PAGE_PATTERNS)


@check(
    id="disclosure.framework-errors",
    title="Error pages do not name the server or framework",
    category="disclosure",
    severity="low",
    references=(WSTG_FINGERPRINT,),
    remediation="Replace default error pages (nginx, Apache, Whitelabel, Express) with the "
    "API's JSON error body.",
    max_requests=6,
)
async def framework_errors(ctx: ScanContext) -> Result:
    """Default error pages fingerprint the stack (and often its version), telling an
    attacker which CVEs to try. A reverse proxy's own fixed page without a version
    (`<hr><center>nginx</center>`, for a request nginx refused itself) is not counted: it
    names only the product the `Server` header already names, and holds no API data; with a
    version (`nginx/1.22.1`) it fails."""
    exchanges = await error_probes(ctx)
    bare = [ex for ex in exchanges if (page := proxy_page(ex)) and not page.versioned]
    if not bare:
        return await _leak_check(ctx, FRAMEWORK_PAGE_PATTERNS)
    judged = [ex for ex in exchanges if all(ex is not b for b in bare)]
    note = (
        f"not counted: the proxy's own page without a version for {describe_skipped(bare)} "
        "(names only what the Server header names)"
    )
    if not judged:
        return Result.passed(join_evidence(*(ex.describe(["server"]) for ex in bare)), note)
    result = await _leak_check(ctx, FRAMEWORK_PAGE_PATTERNS, exchanges=judged)
    if result.status == "pass":
        return Result.passed(result.evidence, note)
    return result


@check(
    id="disclosure.internal-details",
    title="Errors do not leak SQL, file paths, private addresses or exception names",
    category="disclosure",
    severity="medium",
    references=(OWASP_API8,),
    remediation="Return only a public message and a request id; keep exception text, SQL and "
    "paths in the server log.",
    max_requests=6,
)
async def internal_details(ctx: ScanContext) -> Result:
    """Exception messages carry SQL fragments, file-system paths and internal hostnames or
    addresses; each narrows an attack."""
    return await _leak_check(ctx, INTERNAL_DETAIL_PATTERNS)


_VERSION = re.compile(r"\d+\.\d+")


async def _banner_responses(ctx: ScanContext) -> list[Exchange]:
    base = await ctx.baseline()
    return [*base.history, base, await ctx.not_found()]


async def _banner_headers_absent(ctx: ScanContext, names: tuple[str, ...], shown: int) -> Result:
    """Fail when any header in ``names`` is on the banner responses (listed with its value);
    the evidence describes only the first ``shown`` names, the common ones."""
    exchanges = await _banner_responses(ctx)
    evidence = join_evidence(*(ex.describe(names[:shown]) for ex in exchanges))
    found = sorted({f"{h}: {ex.header(h)}" for ex in exchanges for h in names if ex.header(h)})
    if found:
        return Result.failed(evidence, "; ".join(found))
    return Result.passed(evidence)


@check(
    id="disclosure.server-version",
    title="The Server header discloses no version",
    category="disclosure",
    severity="low",
    references=(f"{ZAP}/10036/",),
    remediation="Hide versions (nginx `server_tokens off;`, uvicorn `--no-server-header`).",
    max_requests=2,
)
async def server_version(ctx: ScanContext) -> Result:
    """`Server: nginx/1.22.1` tells an attacker exactly which advisories apply (ZAP 10036).
    A bare product name passes."""
    exchanges = await _banner_responses(ctx)
    evidence = join_evidence(*(ex.describe(["server"]) for ex in exchanges))
    versions = sorted(
        {v for ex in exchanges for v in ex.header_list("server") if _VERSION.search(v)}
    )
    if versions:
        return Result.failed(evidence, f"Server: {', '.join(versions)}")
    return Result.passed(evidence)


_POWERED_BY = (
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-generator",
    "x-runtime",
    "x-version",
)


@check(
    id="disclosure.powered-by",
    title="No X-Powered-By or framework version headers",
    category="disclosure",
    severity="low",
    references=(f"{ZAP}/10037/",),
    remediation="Remove X-Powered-By, X-AspNet-Version, X-Generator and similar headers.",
    max_requests=2,
)
async def powered_by(ctx: ScanContext) -> Result:
    """These headers name the framework (often with its version) for no client benefit."""
    return await _banner_headers_absent(ctx, _POWERED_BY, shown=3)


_PROXY_HEADERS = ("x-backend-server", "x-served-by", "x-upstream", "x-server-name", "x-host")


@check(
    id="disclosure.backend-headers",
    title="No backend host names in response headers",
    category="disclosure",
    severity="low",
    references=(f"{ZAP}/10039/",),
    remediation="Strip X-Backend-Server, X-Served-By and similar headers at the proxy.",
    max_requests=2,
)
async def backend_headers(ctx: ScanContext) -> Result:
    """Headers naming the upstream host map the internal network (ZAP 10039)."""
    return await _banner_headers_absent(ctx, _PROXY_HEADERS, shown=2)


_DEBUG_HEADERS = (
    "x-debug-token",
    "x-debug-token-link",
    "x-chromelogger-data",
    "x-chromephp-data",
    "x-debug",
    "x-debug-info",
)


@check(
    id="disclosure.debug-headers",
    title="No debug headers",
    category="disclosure",
    severity="medium",
    references=(f"{ZAP}/10056/",),
    remediation="Disable profilers and debug loggers in production (Symfony profiler, "
    "ChromeLogger).",
    max_requests=6,
)
async def debug_headers(ctx: ScanContext) -> Result:
    """X-Debug-Token-Link points at a profiler page with the full request, environment and
    queries; ChromeLogger headers carry server logs (ZAP 10056, 10052)."""
    exchanges = [*await _banner_responses(ctx), *await error_probes(ctx)]
    found = sorted(
        {f"{h} on {ex.summary}" for ex in exchanges for h in _DEBUG_HEADERS if ex.header(h)}
    )
    evidence = join_evidence(*(ex.describe(_DEBUG_HEADERS[:2]) for ex in exchanges[:2]))
    if found:
        return Result.failed(evidence, "; ".join(found))
    return Result.passed(evidence)
