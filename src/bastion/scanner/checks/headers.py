"""Security headers, values checked (not just presence), judged as an API needs them.

A JSON API needs nosniff, no-store, a locked-down CSP (`default-src 'none'; frame-ancestors
'none'`, the Observatory's API advice), framing refused, no referrer, CORP, and no legacy
X-XSS-Protection filter: what a browser-only page needs (COOP, COEP, Permissions-Policy) is
not demanded, to avoid false positives on APIs.
"""

from __future__ import annotations

import re

from bastion.scanner.check import Result, check
from bastion.scanner.checks._util import (
    MDN_HEADERS,
    OBSERVATORY,
    OWASP_HEADERS,
    OWASP_REST,
    csp_directives,
    directives,
    trace,
)
from bastion.scanner.context import ScanContext
from bastion.scanner.evidence import Exchange, join_evidence
from bastion.scanner.proxy_pages import describe_skipped, refused_by_proxy


@check(
    id="headers.xcto",
    title="X-Content-Type-Options is nosniff",
    category="headers",
    severity="low",
    references=(f"{OBSERVATORY}#x-content-type-options",),
    remediation="Send `X-Content-Type-Options: nosniff` on every response.",
    max_requests=1,
)
async def xcto(ctx: ScanContext) -> Result:
    """Without nosniff a browser may sniff a JSON body as HTML or script and run it. The
    only valid value is `nosniff` (case-insensitive); anything else is ignored."""
    ex = await ctx.baseline()
    evidence = ex.describe(["x-content-type-options"])
    value = ex.header("x-content-type-options")
    if value is None:
        return Result.failed(evidence, "header missing")
    if value.strip().lower() != "nosniff":
        return Result.failed(evidence, f"invalid value {value!r}")
    return Result.passed(evidence)


@check(
    id="headers.cache-control",
    title="API responses are not cacheable (Cache-Control: no-store)",
    category="headers",
    severity="medium",
    references=(f"{OWASP_REST}#security-headers",),
    remediation="Send `Cache-Control: no-store` on API responses (and errors), so tokens and "
    "personal data are not kept by browsers, proxies or CDNs.",
    max_requests=1,
)
async def cache_control(ctx: ScanContext) -> Result:
    """API responses often carry personal data or tokens; OWASP's REST cheat sheet asks for
    `no-store`. `private`/`no-cache` without `no-store` still lets the browser store it
    (warn); a shared-cacheable or absent policy fails."""
    ex = await ctx.baseline()
    evidence = ex.describe(["cache-control"])
    d = directives(ex.header("cache-control"), sep=",")
    if "no-store" in d:
        return Result.passed(evidence)
    if "private" in d or "no-cache" in d or d.get("max-age") == "0":
        return Result.warned(evidence, "cacheable by the browser (no no-store)")
    if not d:
        return Result.failed(evidence, "no Cache-Control header")
    return Result.failed(evidence, "response may be stored by shared caches")


@check(
    id="headers.csp",
    title="Content-Security-Policy is enforced",
    category="headers",
    severity="medium",
    references=(f"{OBSERVATORY}#content-security-policy",),
    remediation="Send `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'` "
    "(an API serves no scripts, styles or frames).",
    max_requests=1,
)
async def csp(ctx: ScanContext) -> Result:
    """If a response is ever rendered as HTML (an error page, a sniffed body), a strict CSP
    stops any script in it. Judged on the target's response; Report-Only does not count."""
    ex = await ctx.baseline()
    evidence = ex.describe(["content-security-policy"])
    value = ex.header("content-security-policy")
    if not value:
        return Result.failed(evidence, "no enforced Content-Security-Policy")
    d = csp_directives(value)
    if "default-src" not in d and "script-src" not in d:
        return Result.failed(evidence, "policy sets neither default-src nor script-src")
    return Result.passed(evidence)


_UNSAFE_SOURCES = ("'unsafe-inline'", "'unsafe-eval'", "*", "http:", "data:", "https:")


@check(
    id="headers.csp-strict",
    title="Content-Security-Policy is strict (default-src 'none', nothing unsafe)",
    category="headers",
    severity="low",
    references=(f"{OBSERVATORY}#content-security-policy",),
    remediation="Use `default-src 'none'` and do not allow 'unsafe-inline', 'unsafe-eval', "
    "wildcards or insecure schemes.",
    max_requests=1,
)
async def csp_strict(ctx: ScanContext) -> Result:
    """The Observatory deducts for 'unsafe-inline' (-20), 'unsafe-eval' (-10) and insecure
    schemes, and rewards `default-src 'none'`; an API needs no source at all."""
    ex = await ctx.baseline()
    evidence = ex.describe(["content-security-policy"])
    value = ex.header("content-security-policy")
    if not value:
        return Result.skipped("no enforced CSP (see headers.csp)")
    d = csp_directives(value)
    script = d.get("script-src", d.get("default-src", []))
    unsafe = [s for s in _UNSAFE_SOURCES if s in script or s in d.get("object-src", [])]
    if unsafe:
        return Result.failed(evidence, f"script sources allow {', '.join(unsafe)}")
    if d.get("default-src") != ["'none'"]:
        return Result.warned(evidence, "default-src is not 'none'")
    return Result.passed(evidence)


@check(
    id="headers.csp-report-only",
    title="CSP is not only in Report-Only mode",
    category="headers",
    severity="low",
    references=(f"{MDN_HEADERS}/Content-Security-Policy-Report-Only",),
    remediation="Move the policy from Content-Security-Policy-Report-Only to "
    "Content-Security-Policy once reports are clean.",
    max_requests=1,
)
async def csp_report_only(ctx: ScanContext) -> Result:
    """A Report-Only policy blocks nothing; the Observatory scores it like no policy."""
    ex = await ctx.baseline()
    evidence = ex.describe(["content-security-policy", "content-security-policy-report-only"])
    enforced = ex.header("content-security-policy")
    report_only = ex.header("content-security-policy-report-only")
    if report_only and not enforced:
        return Result.failed(evidence, "only a Report-Only policy is sent")
    if not report_only and not enforced:
        return Result.skipped("no CSP at all (see headers.csp)")
    return Result.passed(evidence)


@check(
    id="headers.frame-options",
    title="Framing is refused (frame-ancestors or X-Frame-Options)",
    category="headers",
    severity="low",
    references=(f"{OBSERVATORY}#x-frame-options",),
    remediation="Send `X-Frame-Options: DENY` and CSP `frame-ancestors 'none'`.",
    max_requests=1,
)
async def frame_options(ctx: ScanContext) -> Result:
    """Clickjacking defence: CSP frame-ancestors (modern) or X-Frame-Options DENY/SAMEORIGIN
    (legacy). ALLOW-FROM is obsolete and ignored by browsers, so it fails."""
    ex = await ctx.baseline()
    evidence = ex.describe(["x-frame-options", "content-security-policy"])
    ancestors = csp_directives(ex.header("content-security-policy") or "").get("frame-ancestors")
    xfo = (ex.header("x-frame-options") or "").strip().upper()
    if ancestors is not None and "*" not in ancestors:
        return Result.passed(evidence)
    if xfo in {"DENY", "SAMEORIGIN"}:
        return Result.passed(evidence)
    if xfo:
        return Result.failed(evidence, f"invalid X-Frame-Options {xfo!r}")
    return Result.failed(evidence, "neither frame-ancestors nor X-Frame-Options")


_STRICT_REFERRER = {
    "no-referrer",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
}
_ALL_REFERRER = _STRICT_REFERRER | {
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "unsafe-url",
}


@check(
    id="headers.referrer-policy",
    title="Referrer-Policy does not leak URLs",
    category="headers",
    severity="low",
    references=(f"{OBSERVATORY}#referrer-policy",),
    remediation="Send `Referrer-Policy: no-referrer` (or strict-origin-when-cross-origin).",
    max_requests=1,
)
async def referrer_policy(ctx: ScanContext) -> Result:
    """URLs can carry identifiers; a lax policy sends them to third parties. The browser uses
    the last value it understands, so the last known token decides. Absent is a warning
    (browsers default to strict-origin-when-cross-origin)."""
    ex = await ctx.baseline()
    evidence = ex.describe(["referrer-policy"])
    value = ex.header("referrer-policy")
    if value is None:
        return Result.warned(evidence, "no Referrer-Policy (browser default applies)")
    tokens = [t.strip().lower() for t in value.split(",") if t.strip().lower() in _ALL_REFERRER]
    if not tokens:
        return Result.failed(evidence, f"invalid value {value!r}")
    if tokens[-1] in _STRICT_REFERRER:
        return Result.passed(evidence)
    return Result.failed(evidence, f"{tokens[-1]} sends full URLs cross-origin")


@check(
    id="headers.corp",
    title="Cross-Origin-Resource-Policy restricts cross-origin reads",
    category="headers",
    severity="low",
    references=(f"{MDN_HEADERS}/Cross-Origin-Resource-Policy",),
    remediation="Send `Cross-Origin-Resource-Policy: same-origin` (or same-site).",
    max_requests=1,
)
async def corp(ctx: ScanContext) -> Result:
    """CORP stops other sites from loading the response in no-cors mode (e.g. as an image or
    script) where side channels such as Spectre could read it. `cross-origin` is allowed but
    warned; an invalid value is ignored by browsers and fails."""
    ex = await ctx.baseline()
    evidence = ex.describe(["cross-origin-resource-policy"])
    value = (ex.header("cross-origin-resource-policy") or "").strip().lower()
    if value in {"same-origin", "same-site"}:
        return Result.passed(evidence)
    if value == "cross-origin":
        return Result.warned(evidence, "cross-origin: any site may embed the response")
    if value:
        return Result.failed(evidence, f"invalid value {value!r}")
    return Result.warned(evidence, "no Cross-Origin-Resource-Policy")


@check(
    id="headers.x-xss-protection",
    title="No legacy XSS filter (X-XSS-Protection absent or 0)",
    category="headers",
    severity="low",
    references=(f"{OWASP_HEADERS}#x-xss-protection",),
    remediation="Remove X-XSS-Protection or send `X-XSS-Protection: 0`; rely on CSP.",
    max_requests=1,
)
async def x_xss_protection(ctx: ScanContext) -> Result:
    """The legacy XSS auditor could be abused to leak data cross-site; OWASP says to disable it
    (`0`) or omit the header. A JSON API does not need it at all, so absence passes (no false
    positive for APIs, unlike tools that demand the header)."""
    ex = await ctx.baseline()
    evidence = ex.describe(["x-xss-protection"])
    value = ex.header("x-xss-protection")
    if value is None or value.strip() == "0":
        return Result.passed(evidence)
    return Result.failed(evidence, f"X-XSS-Protection: {value} enables the legacy filter")


@check(
    id="headers.content-type",
    title="Responses declare an accurate Content-Type",
    category="headers",
    severity="low",
    references=(f"{OWASP_REST}#send-safe-response-content-types",),
    remediation="Send `Content-Type: application/json` on JSON bodies; never serve API data "
    "as text/html.",
    max_requests=2,
)
async def content_type(ctx: ScanContext) -> Result:
    """A body without Content-Type is sniffed; a JSON body labelled text/html can be rendered
    as a page. Judged on the target's response and the 404 probe."""
    problems = []
    exchanges = [await ctx.baseline(), await ctx.not_found()]
    for ex in exchanges:
        if not ex.body.strip():
            continue
        ctype = ex.content_type
        if not ctype:
            problems.append(f"{ex.summary}: body without Content-Type")
        elif ctype == "text/html" and ex.json() is not None:
            problems.append(f"{ex.summary}: JSON body served as text/html")
    evidence = join_evidence(*(ex.describe(["content-type"]) for ex in exchanges))
    if problems:
        return Result.failed(evidence, "; ".join(problems))
    return Result.passed(evidence)


_ON_ERRORS = (
    "x-content-type-options",
    "cache-control",
    "content-security-policy",
    "x-frame-options",
    "strict-transport-security",
    "referrer-policy",
    "cross-origin-resource-policy",
)


@check(
    id="headers.on-errors",
    title="Security headers are also sent on error responses",
    category="headers",
    severity="medium",
    references=(f"{OWASP_HEADERS}#security-headers",),
    remediation="Add security headers in the outermost layer (or the proxy, with `always` in "
    "nginx) so 4xx/5xx responses carry them too.",
    max_requests=3,
)
async def on_errors(ctx: ScanContext) -> Result:
    """Many stacks add headers only on successful responses, so an error page (the one an
    attacker can provoke at will) is unprotected. Every security header the target's own
    response carries must also be on a 404 and a 405/TRACE answer."""
    base = await ctx.baseline()
    present = [h for h in _ON_ERRORS if base.header(h) is not None]
    errors: list[Exchange] = [await ctx.not_found(), await trace(ctx)]
    errors = [ex for ex in errors if ex.status >= 400 and ex.status != base.status]
    if not present:
        return Result.skipped("the target's response carries no security header to compare")
    # A reverse proxy's own page for a request it refused before routing (nginx's TRACE 405)
    # cannot carry headers the API behind it sets, and holds no API data: named, not counted.
    proxy = [ex for ex in errors if refused_by_proxy(ex)]
    errors = [ex for ex in errors if not refused_by_proxy(ex)]
    note = f"not counted: the proxy's own page for {describe_skipped(proxy)}" if proxy else ""
    if not errors:
        if proxy:
            return Result.skipped(f"no error response from the API itself to compare ({note})")
        return Result.skipped("no error response different from the target's to compare")
    missing = [f"{ex.summary} lacks {h}" for ex in errors for h in present if not ex.header(h)]
    evidence = join_evidence(*(ex.describe(present) for ex in [base, *errors, *proxy]))
    if missing:
        return Result.failed(evidence, "; ".join(missing))
    return Result.passed(evidence, note)


_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@check(
    id="headers.request-id",
    title="A client's X-Request-ID is echoed only when it is safe",
    category="headers",
    severity="low",
    references=("https://cheatsheetseries.owasp.org/cheatsheets/Logging_Cheat_Sheet.html",),
    remediation="Echo a client-sent X-Request-ID only if it matches ^[A-Za-z0-9._-]{1,64}$; "
    "otherwise generate a fresh one.",
    max_requests=1,
)
async def request_id(ctx: ScanContext) -> Result:
    """A request id copied unchecked into responses and logs lets a client forge log lines
    or inject markup into tools that display it (log injection)."""
    hostile = 'bastion"scan<probe>;' + "x" * 70
    ex = await ctx.fetch("GET", "", headers={"X-Request-ID": hostile})
    evidence = ex.describe(["x-request-id"])
    echoed = ex.header("x-request-id")
    if echoed is not None and hostile in echoed:
        return Result.failed(evidence, "an unsafe 90-character X-Request-ID was echoed verbatim")
    if echoed is not None and not _SAFE_REQUEST_ID.match(echoed):
        return Result.warned(evidence, "the X-Request-ID returned has unsafe characters")
    return Result.passed(evidence)
