"""Per-operation controls: every operation of the API map, not only ``/`` and a few paths.

They judge the one sweep of :mod:`bastion.scanner.api` (anonymous and ``--token`` requests to
every operation, malformed ids, and with ``--active`` malformed bodies to write operations),
so the whole API is covered within ``--operation-budget`` requests however many controls
read it.
"""

from __future__ import annotations

import re

from bastion.scanner.api import (
    MALFORMED_JSON,
    SAFE,
    Probed,
    Sweep,
    api_map,
    malformed_id,
    sweep,
    version_of,
    with_version,
)
from bastion.scanner.check import Result, check
from bastion.scanner.checks._util import (
    DEBUG_PAGE_PATTERNS,
    OWASP_API2,
    OWASP_API4,
    OWASP_API9,
    OWASP_HEADERS,
    RFC,
    STACK_TRACE_PATTERNS,
    WSTG,
    find_signatures,
    is_catch_all,
    response_text,
)
from bastion.scanner.checks.headers import _ON_ERRORS
from bastion.scanner.context import ANONYMOUS, ScanContext
from bastion.scanner.evidence import Exchange, join_evidence

WSTG_ERRORS = f"{WSTG}/08-Testing_for_Error_Handling/01-Testing_For_Improper_Error_Handling"
LIMIT_HEADERS = ("ratelimit", "ratelimit-policy", "x-ratelimit-limit", "x-ratelimit-remaining")
MAX_SHOWN = 4
MAX_LEGACY_PROBES = 8


def _ok(ex: Exchange | None) -> bool:
    return ex is not None and 200 <= ex.status < 300


def _refused(ex: Exchange | None) -> bool:
    return ex is not None and ex.status in (401, 403)


def _coverage_note(result: Sweep) -> str:
    stopped = f"; stopped early: {result.stopped}" if result.stopped else ""
    return (
        f"{len(result.probed)} of {len(result.api.operations)} operations probed "
        f"({result.api.source}; {result.used}/{result.budget} sweep requests{stopped})"
    )


def _no_operations(result: Sweep) -> Result:
    note = f" ({result.api.note})" if result.api.note else ""
    return Result.skipped(f"no API operation found{note}: give --openapi FILE|URL")


# --- authentication on every operation ------------------------------------------------------
@check(
    id="auth.operations-protected",
    title="Every operation that needs credentials refuses anonymous requests, in every version",
    category="auth",
    severity="high",
    references=(OWASP_API2, OWASP_API9),
    remediation="Require authentication in one layer in front of every route (deny by "
    "default), and retire old versions (/api/v0, /legacy) or put them behind the same layer.",
    max_requests=MAX_LEGACY_PROBES,
)
async def operations_protected(ctx: ScanContext) -> Result:
    """Compares anonymous with authenticated answers, operation by operation: an operation the
    OpenAPI document declares secured must not answer an anonymous request with 2xx, and
    where one version of a path refuses anonymous requests (`/api/v1/orders` -> 401), the
    other versions of it (`/api/v0/orders`) must too. A legacy version served without the
    key the current one requires is the whole API unprotected (OWASP API9)."""
    result = await sweep(ctx)
    if not result.probed:
        return _no_operations(result)
    failures: list[str] = []
    shown: list[Exchange] = []
    for probe in result.probed:
        anon = probe.anonymous
        if probe.op.method in SAFE and probe.op.secured and _ok(anon) and anon is not None:
            failures.append(f"{anon.summary} anonymously ({probe.op.label} is declared secured)")
            shown.append(anon)
    # Versions: every path that refuses anonymous requests, at each other version.
    not_found = await ctx.not_found()
    protected = [p for p in result.probed if p.op.method in SAFE and _refused(p.anonymous)]
    by_shape: dict[str, list[Probed]] = {}
    for probe in result.probed:
        if probe.op.method in SAFE and version_of(probe.path) is not None:
            by_shape.setdefault(with_version(probe.path, 0), []).append(probe)
    tried: set[str] = set()
    legacy_probes = 0
    for probe in protected:
        current = version_of(probe.path)
        if current is None:
            continue
        siblings = by_shape.get(with_version(probe.path, 0), [])
        for sibling in siblings:
            anon = sibling.anonymous
            if (
                sibling is not probe
                and anon is not None
                and _ok(anon)
                and not is_catch_all(anon, not_found)
            ):
                failures.append(
                    f"{anon.summary} anonymously while {probe.path} requires credentials"
                )
                shown.append(anon)
            tried.add(sibling.path)
        for older in range(current - 1, -1, -1):
            path = with_version(probe.path, older)
            if path in tried or legacy_probes >= MAX_LEGACY_PROBES:
                continue
            tried.add(path)
            legacy_probes += 1
            ex = await ctx.fetch("GET", path, extra_headers=ANONYMOUS)
            if _ok(ex) and not is_catch_all(ex, not_found):
                failures.append(f"{ex.summary} anonymously while {probe.path} requires credentials")
                shown.append(ex)
    evidence = join_evidence(*(ex.describe(["www-authenticate"]) for ex in shown[:MAX_SHOWN]))
    if failures:
        return Result.failed(evidence, "; ".join(sorted(set(failures))[:MAX_SHOWN]))
    declared = [p for p in result.probed if p.op.secured]
    if not protected and not declared:
        return Result.skipped(
            f"no operation refuses anonymous requests or is declared secured "
            f"({_coverage_note(result)})"
        )
    examples = [p.anonymous.summary for p in protected[:MAX_SHOWN] if p.anonymous is not None]
    return Result.passed("\n".join(examples), _coverage_note(result))


@check(
    id="auth.operations-challenge",
    title="Every 401 from an operation carries WWW-Authenticate",
    category="auth",
    severity="low",
    references=(f"{RFC}/rfc9110#section-15.5.2", f"{RFC}/rfc6750#section-3"),
    remediation="Send `WWW-Authenticate: Bearer` with every 401, from the layer that refuses "
    "the request (not only on some routes).",
    max_requests=0,
)
async def operations_challenge(ctx: ScanContext) -> Result:
    """RFC 9110 §15.5.2: a 401 MUST carry WWW-Authenticate. Judged on every operation the
    sweep reached, so a route with its own hand-written 401 shows."""
    result = await sweep(ctx)
    if not result.probed:
        return _no_operations(result)
    unauthorized = [ex for p in result.probed for ex in p.exchanges() if ex.status == 401]
    if not unauthorized:
        return Result.skipped(f"no operation answered 401 ({_coverage_note(result)})")
    bare = [ex for ex in unauthorized if not ex.header("www-authenticate")]
    if bare:
        return Result.failed(
            join_evidence(*(ex.describe(["www-authenticate"]) for ex in bare[:MAX_SHOWN])),
            f"{len(bare)} of {len(unauthorized)} 401s without WWW-Authenticate, e.g. "
            f"{bare[0].summary}",
        )
    return Result.passed(
        unauthorized[0].describe(["www-authenticate"]),
        f"{len(unauthorized)} 401s, each with WWW-Authenticate ({_coverage_note(result)})",
    )


# --- error handling on every operation ---------------------------------------------------------
@check(
    id="disclosure.operation-errors",
    title="No operation answers with a stack trace or a debug page",
    category="disclosure",
    severity="high",
    references=(WSTG_ERRORS,),
    remediation="Catch every exception in the outermost layer and answer a generic error body; "
    "log the trace server-side only. Validate path parameters and bodies before use.",
    max_requests=0,
)
async def operation_errors(ctx: ScanContext) -> Result:
    """The traceback a real endpoint prints for a malformed id (`/orders/x'`) or a body that
    is not JSON is invisible to a scan of `/`. Every response of the sweep (anonymous,
    authenticated, malformed input) is searched for stack traces and debug pages."""
    result = await sweep(ctx)
    if not result.probed:
        return _no_operations(result)
    reasons: list[str] = []
    hits: list[Exchange] = []
    for probe in result.probed:
        for ex in probe.exchanges():
            found = find_signatures(
                response_text(ex), STACK_TRACE_PATTERNS + DEBUG_PAGE_PATTERNS, ex.redactor
            )
            if found:
                hits.append(ex)
                reasons += [f"{label} in {ex.summary}: {excerpt!r}" for label, excerpt in found]
    if reasons:
        evidence = join_evidence(
            *(ex.describe(["content-type"], body=True) for ex in hits[:MAX_SHOWN])
        )
        return Result.failed(evidence, "; ".join(reasons[:MAX_SHOWN]))
    total = sum(len(p.exchanges()) for p in result.probed)
    return Result.passed(f"{total} responses without a leak signature", _coverage_note(result))


@check(
    id="headers.operation-errors",
    title="Every operation's error responses carry the security headers",
    category="headers",
    severity="medium",
    references=(f"{OWASP_HEADERS}#security-headers",),
    remediation="Add security headers in the outermost layer so that every route's 4xx/5xx "
    "carries them, including errors raised before routing (auth, validation).",
    max_requests=0,
)
async def operation_error_headers(ctx: ScanContext) -> Result:
    """Every security header the target's own response carries must also be on each error an
    operation answers (401 from the auth layer, 400 from validation, 404 for an unknown id):
    those are the responses an attacker provokes at will."""
    result = await sweep(ctx)
    if not result.probed:
        return _no_operations(result)
    base = await ctx.baseline()
    present = [h for h in _ON_ERRORS if base.header(h) is not None]
    if not present:
        return Result.skipped("the target's response carries no security header to compare")
    errors = [ex for p in result.probed for ex in p.exchanges() if ex.status >= 400]
    if not errors:
        return Result.skipped(f"no operation answered an error ({_coverage_note(result)})")
    missing: dict[str, list[str]] = {}
    for ex in errors:
        lacking = [h for h in present if not ex.header(h)]
        if lacking:
            missing[ex.summary] = lacking
    if missing:
        bad = [ex for ex in errors if ex.summary in missing]
        first = next(iter(missing.items()))
        return Result.failed(
            join_evidence(*(ex.describe(present) for ex in bad[:MAX_SHOWN])),
            f"{len(missing)} of {len(errors)} error responses lack security headers, e.g. "
            f"{first[0]} lacks {', '.join(first[1])}",
        )
    return Result.passed(
        f"{len(errors)} error responses carry {', '.join(present)}", _coverage_note(result)
    )


# --- methods and rate limits on every operation --------------------------------------------
@check(
    id="methods.operation-405",
    title="Each operation's path refuses the methods it does not implement with 405 and Allow",
    category="methods",
    severity="low",
    references=(f"{RFC}/rfc9110#section-15.5.6",),
    remediation="Route by method and answer others with `405` and an `Allow` header listing "
    "what the path serves.",
    max_requests=20,
    active=True,
)
async def operation_405(ctx: ScanContext) -> Result:
    """A path that accepts a method its document does not declare runs code nobody reviewed
    (a forgotten DELETE handler, a catch-all). Each path gets one undeclared write method,
    anonymously and with a body that is not JSON, so that nothing can change; 2xx or 5xx
    fail, a 405 must name the allowed methods (RFC 9110 §15.5.6)."""
    api = await api_map(ctx)
    if not api.operations:
        return _no_operations(await sweep(ctx))
    declared: dict[str, set[str]] = {}
    for op in api.operations:
        declared.setdefault(op.path, set()).add(op.method)
    bad: list[Exchange] = []
    checked: list[Exchange] = []
    reasons: list[str] = []
    for template, methods in list(declared.items())[:20]:
        method = next((m for m in ("PATCH", "PUT", "DELETE", "POST") if m not in methods), None)
        if method is None:
            continue
        path = re.sub(r"\{[^/{}]+\}", malformed_id(), template)
        ex = await ctx.request(
            method,
            path,
            headers={"Content-Type": "application/json"},
            content=MALFORMED_JSON,
            extra_headers=ANONYMOUS,
        )
        checked.append(ex)
        if 200 <= ex.status < 300 or ex.status >= 500:
            reasons.append(f"{ex.summary} (undeclared method)")
            bad.append(ex)
        elif ex.status == 405 and not ex.header("allow"):
            reasons.append(f"{ex.summary} without Allow")
            bad.append(ex)
    if not checked:
        return Result.skipped("every path declares every write method")
    if bad:
        return Result.failed(
            join_evidence(*(ex.describe(["allow"]) for ex in bad[:MAX_SHOWN])),
            "; ".join(reasons[:MAX_SHOWN]),
        )
    return Result.passed("\n".join(ex.summary for ex in checked[: MAX_SHOWN * 2]))


@check(
    id="ratelimit.operation-headers",
    title="Every protected operation advertises its rate limit",
    category="ratelimit",
    severity="low",
    references=(
        OWASP_API4,
        "https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/",
    ),
    remediation="Apply the limiter in front of every API route and send `RateLimit-Policy` / "
    "`RateLimit` (or `X-RateLimit-*`) on each response.",
    max_requests=0,
)
async def operation_limit_headers(ctx: ScanContext) -> Result:
    """A limiter mounted on some routes only leaves the others open to brute force and
    scraping. Every operation that refuses anonymous requests (the API's functions, not its
    health check or key set) must carry rate-limit headers, refused or answered."""
    result = await sweep(ctx)
    if not result.probed:
        return _no_operations(result)
    judged = [
        ex
        for p in result.probed
        if _refused(p.anonymous)
        for ex in (p.anonymous, p.authed)
        if ex is not None and ex.status != 404
    ]
    if not judged:
        return Result.skipped(f"no protected operation was reached ({_coverage_note(result)})")
    bare = [ex for ex in judged if not any(ex.header(h) for h in LIMIT_HEADERS)]
    if len(bare) == len(judged):
        return Result.warned(
            join_evidence(*(ex.describe(LIMIT_HEADERS) for ex in bare[:MAX_SHOWN])),
            f"none of {len(judged)} protected responses advertises a limit",
        )
    if bare:
        return Result.warned(
            join_evidence(*(ex.describe(LIMIT_HEADERS) for ex in bare[:MAX_SHOWN])),
            f"{len(bare)} of {len(judged)} protected responses lack rate-limit headers, e.g. "
            f"{bare[0].summary}",
        )
    return Result.passed(judged[0].describe(LIMIT_HEADERS), _coverage_note(result))
