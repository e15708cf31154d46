"""API versions: the API is versioned, pre-release versions are gone, and an older version
still served announces its retirement (Deprecation / Sunset)."""

from __future__ import annotations

import re

from bastion.scanner.check import Result, check
from bastion.scanner.checks._util import (
    OWASP_API9,
    RFC,
    find_login,
    find_protected,
    is_catch_all,
)
from bastion.scanner.context import ANONYMOUS, ScanContext
from bastion.scanner.evidence import Exchange, join_evidence

_VERSION_SEGMENT = re.compile(r"/v(\d+)(?=/|$)")
PRERELEASE_PATHS = ("/api/v0/", "/v0/", "/api/beta/", "/api/old/", "/api/legacy/")


def _alive(ex: Exchange, not_found: Exchange) -> bool:
    return ex.status not in (404, 410) and ex.status < 500 and not is_catch_all(ex, not_found)


@check(
    id="versioning.versioned",
    title="The API is versioned",
    category="versioning",
    severity="low",
    references=(OWASP_API9,),
    remediation="Put a version in the path (/api/v1/...) or a header (API-Version), so old "
    "clients keep working while the API changes and old versions can be retired.",
    max_requests=9,
)
async def versioned(ctx: ScanContext) -> Result:
    """Without versions, every change is a breaking change or never happens, and nobody can
    tell which clients still use what (OWASP API9, improper inventory). Looks for a /vN/
    segment in the target and in the routes discovered, and for an API-Version header."""
    base = await ctx.baseline()
    seen = [ctx.url("")]
    if _VERSION_SEGMENT.search(ctx.target.path):
        return Result.passed(base.describe(()), "the target URL is versioned")
    if base.header("api-version"):
        return Result.passed(base.describe(["api-version"]), "API-Version header")
    protected = await find_protected(ctx)
    login = await find_login(ctx)
    for path in [protected.path if protected else None, login]:
        if path and _VERSION_SEGMENT.search(ctx.url(path)):
            return Result.passed(reason=f"versioned route {ctx.url(path)}")
        if path:
            seen.append(ctx.url(path))
    not_found = await ctx.not_found()
    for path in ("/api/v1/", "/v1/"):
        ex = await ctx.fetch("GET", path, extra_headers=ANONYMOUS)
        if _alive(ex, not_found):
            return Result.passed(ex.describe(()), f"versioned prefix {path} exists")
        seen.append(ex.summary)
    return Result.warned("\n".join(seen), "no version found in paths or headers")


@check(
    id="versioning.prerelease-gone",
    title="No pre-release or retired API versions are served",
    category="versioning",
    severity="low",
    references=(OWASP_API9,),
    remediation="Remove v0/beta/legacy routes from production (they rarely get the fixes the "
    "current version gets).",
    max_requests=6,
)
async def prerelease_gone(ctx: ScanContext) -> Result:
    """Old and beta versions keep old bugs and often skip newer protections (OWASP API9's
    example: a beta host without rate limiting). Probes /api/v0/, /v0/, /api/beta/,
    /api/old/, /api/legacy/: each must be 404/410."""
    not_found = await ctx.not_found()
    exchanges = [await ctx.fetch("GET", p, extra_headers=ANONYMOUS) for p in PRERELEASE_PATHS]
    alive = [ex for ex in exchanges if _alive(ex, not_found)]
    if alive:
        return Result.failed(
            join_evidence(*(ex.describe(()) for ex in alive)),
            f"still served: {', '.join(ex.summary for ex in alive)}",
        )
    return Result.passed("\n".join(ex.summary for ex in exchanges))


@check(
    id="versioning.previous-deprecated",
    title="An older version still served announces Deprecation/Sunset",
    category="versioning",
    severity="info",
    references=(f"{RFC}/rfc8594",),
    remediation="Send `Deprecation` (RFC 9745) and `Sunset` (RFC 8594) headers on older "
    "versions with a Link to the migration notes.",
    max_requests=2,
)
async def previous_deprecated(ctx: ScanContext) -> Result:
    """When the target is /vN/ and /v(N-1)/ still answers, clients deserve to be told when it
    goes away. Informational: keeping an old version is a product decision."""
    match = _VERSION_SEGMENT.search(ctx.target.path)
    if match is None or int(match.group(1)) < 2:
        return Result.skipped("the target URL has no /vN/ segment with N >= 2")
    current = int(match.group(1))
    previous_path = (
        ctx.target.path[: match.start()] + f"/v{current - 1}" + ctx.target.path[match.end() :]
    )
    ex = await ctx.fetch("GET", previous_path, extra_headers=ANONYMOUS)
    if not _alive(ex, await ctx.not_found()):
        return Result.passed(ex.describe(()), f"v{current - 1} is gone")
    evidence = ex.describe(["deprecation", "sunset", "link"])
    if ex.header("deprecation") or ex.header("sunset"):
        return Result.passed(evidence)
    return Result.warned(evidence, f"v{current - 1} is served without Deprecation or Sunset")
