"""HTTP methods: TRACE/TRACK, unexpected write methods, OPTIONS, 405 with Allow, overrides."""

from __future__ import annotations

from bastion.scanner.check import Result, check
from bastion.scanner.checks._util import RFC, TRACE_MARKER, WSTG, list_tokens, trace
from bastion.scanner.context import ANONYMOUS, ScanContext
from bastion.scanner.evidence import Exchange, join_evidence
from bastion.scanner.proxy_pages import describe_skipped, refused_by_proxy

WSTG_METHODS = f"{WSTG}/02-Configuration_and_Deployment_Management_Testing/06-Test_HTTP_Methods"


def _echoes(ex: Exchange) -> bool:
    """The response reflects the request (what makes TRACE useful to XST)."""
    return TRACE_MARKER[1] in ex.text or TRACE_MARKER[1] in str(ex.headers)


async def _echo_method(ctx: ScanContext, method: str) -> Result:
    ex = await trace(ctx, method)
    evidence = ex.describe(["allow", "content-type"], body=True)
    if 200 <= ex.status < 300 and _echoes(ex):
        return Result.failed(evidence, f"{method} echoed the request back")
    if 200 <= ex.status < 300:
        return Result.warned(evidence, f"{method} answered {ex.status}")
    return Result.passed(evidence)


@check(
    id="methods.trace",
    title="TRACE is disabled",
    category="methods",
    severity="medium",
    references=(WSTG_METHODS,),
    remediation="Refuse TRACE with 405 everywhere (and in the proxy).",
    max_requests=1,
)
async def trace_disabled(ctx: ScanContext) -> Result:
    """TRACE echoes the request, headers included, which lets script read credentials the
    browser attaches (cross-site tracing) and discloses what proxies add."""
    return await _echo_method(ctx, "TRACE")


@check(
    id="methods.track",
    title="TRACK is disabled",
    category="methods",
    severity="low",
    references=(WSTG_METHODS,),
    remediation="Refuse TRACK with 405 (it is IIS's alias of TRACE).",
    max_requests=1,
)
async def track_disabled(ctx: ScanContext) -> Result:
    """TRACK is Microsoft's TRACE; same echo, same risk."""
    return await _echo_method(ctx, "TRACK")


async def _writes(ctx: ScanContext) -> list[Exchange]:
    # Empty bodies, on the origin root: a write method that succeeds there is a finding by
    # itself, and nothing meaningful can be created by an empty PUT on "/".
    return [await ctx.fetch(m, "/", extra_headers=ANONYMOUS) for m in ("PUT", "DELETE")]


@check(
    id="methods.unexpected",
    title="Write methods are not accepted on /",
    category="methods",
    severity="medium",
    references=(WSTG_METHODS,),
    remediation="Route only the methods each path implements; others get 405.",
    max_requests=2,
)
async def unexpected(ctx: ScanContext) -> Result:
    """`PUT /` or `DELETE /` succeeding means a catch-all handler or WebDAV-style server
    accepts writes nobody designed."""
    exchanges = await _writes(ctx)
    evidence = join_evidence(*(ex.describe(["allow"]) for ex in exchanges))
    accepted = [ex.summary for ex in exchanges if 200 <= ex.status < 300]
    if accepted:
        return Result.failed(evidence, f"accepted: {', '.join(accepted)}")
    return Result.passed(evidence)


@check(
    id="methods.options",
    title="OPTIONS does not advertise dangerous methods",
    category="methods",
    severity="low",
    references=(WSTG_METHODS,),
    remediation="Answer OPTIONS only as a CORS preflight, and never list TRACE/TRACK/CONNECT.",
    max_requests=1,
)
async def options(ctx: ScanContext) -> Result:
    """A plain OPTIONS (no CORS headers) that lists TRACE, TRACK or CONNECT advertises echo
    and tunnelling; listing write methods on `/` is a warning."""
    ex = await ctx.fetch("OPTIONS", "/", extra_headers=ANONYMOUS)
    evidence = ex.describe(["allow", "public"])
    allowed = list_tokens(ex.header("allow")) + list_tokens(ex.header("public"))
    dangerous = [m for m in ("trace", "track", "connect") if m in allowed]
    if dangerous and ex.status < 400:
        return Result.failed(evidence, f"advertises {', '.join(m.upper() for m in dangerous)}")
    writes = [m for m in ("put", "delete", "patch") if m in allowed]
    if writes and ex.status < 400:
        return Result.warned(evidence, f"advertises {', '.join(m.upper() for m in writes)} on /")
    return Result.passed(evidence)


@check(
    id="methods.405-allow",
    title="405 responses carry an Allow header",
    category="methods",
    severity="low",
    references=(f"{RFC}/rfc9110#section-15.5.6",),
    remediation="Send `Allow: <methods>` with every 405 (RFC 9110 §15.5.6: MUST).",
    max_requests=4,
)
async def allow_on_405(ctx: ScanContext) -> Result:
    """RFC 9110 §15.5.6: the origin server MUST generate an Allow header in a 405 response.
    Judged on every 405 the method probes received."""
    exchanges = [await trace(ctx), await trace(ctx, "TRACK"), *await _writes(ctx)]
    refused = [ex for ex in exchanges if ex.status == 405]
    # nginx refuses TRACE itself with its own page and no Allow: that is the proxy's answer
    # to a method it never routes, not the API's method table. Named, not counted.
    proxy = [ex for ex in refused if refused_by_proxy(ex)]
    refused = [ex for ex in refused if not refused_by_proxy(ex)]
    note = f"not counted: the proxy's own page for {describe_skipped(proxy)}" if proxy else ""
    if not refused:
        return Result.skipped(
            f"no 405 response from the API itself ({note})" if proxy else "no 405 response seen"
        )
    evidence = join_evidence(*(ex.describe(["allow"]) for ex in [*refused, *proxy]))
    missing = [ex.summary for ex in refused if ex.header("allow") is None]
    if missing:
        return Result.failed(evidence, f"405 without Allow: {', '.join(missing)}")
    return Result.passed(evidence, note)


OVERRIDE_HEADERS = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")


@check(
    id="methods.override",
    title="Method-override headers are not honoured",
    category="methods",
    severity="medium",
    references=(WSTG_METHODS,),
    remediation="Ignore X-HTTP-Method-Override and similar headers (or accept them only on "
    "POST from trusted clients, after authorisation of the overriding method).",
    max_requests=6,
)
async def override(ctx: ScanContext) -> Result:
    """An override header turns a GET into a DELETE behind filters that only look at the
    real method (auth bypass, WAF bypass). Differential probe: `GET /` with
    `X-HTTP-Method-Override: DELETE` must answer like `GET /`; answering like `DELETE /`
    (when the two differ) means the override was honoured."""
    get = await ctx.fetch("GET", "/", extra_headers=ANONYMOUS)
    delete = (await _writes(ctx))[1]
    if get.status == delete.status:
        return Result.skipped(
            f"GET / and DELETE / both answer {get.status}: no difference to detect"
        )
    for header in OVERRIDE_HEADERS:
        ex = await ctx.fetch("GET", "/", headers={header: "DELETE"}, extra_headers=ANONYMOUS)
        if ex.status == delete.status and ex.status != get.status:
            evidence = join_evidence(get.describe(()), delete.describe(()), ex.describe(()))
            return Result.failed(evidence, f"{header}: DELETE turned GET / into a DELETE")
    return Result.passed(join_evidence(get.describe(()), delete.describe(())))
