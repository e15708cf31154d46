"""HTTPS controls: the plain-HTTP listener redirects (permanently, to the same host) and refuses
bodies; HSTS is present, long, covers subdomains, is well-formed and only sent over HTTPS."""

from __future__ import annotations

import httpx

from bastion.scanner.check import Result, check
from bastion.scanner.checks._util import (
    OBSERVATORY,
    RFC,
    directives,
    repeated_directives,
)
from bastion.scanner.context import ScanContext
from bastion.scanner.evidence import Exchange

OWASP_HSTS = (
    "https://cheatsheetseries.owasp.org/cheatsheets/HTTP_Strict_Transport_Security_Cheat_Sheet.html"
)
OWASP_TLS = (
    "https://cheatsheetseries.owasp.org/cheatsheets/Transport_Layer_Security_Cheat_Sheet.html"
)
ONE_YEAR = 31_536_000
SIX_MONTHS = 15_552_000  # the Observatory's threshold (strict-transport-security.js)


async def _http_get(ctx: ScanContext) -> Exchange | None:
    """``GET`` of the target's path on the plain-HTTP listener; None when there is none."""

    async def probe() -> Exchange | None:
        origin = ctx.http_origin()
        if origin is None:
            return None
        path = ctx.target.raw_path.decode("ascii") or "/"
        try:
            return await ctx.fetch("GET", origin + path, extra_headers=False)
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ConnectTimeout):
            return None

    return await ctx.memo("http-get", probe)


def _no_listener_reason(ctx: ScanContext) -> str:
    if ctx.http_origin() is None:
        return (
            f"no plain-HTTP port is known for port {ctx.target.port}: pass --http-url "
            "to test the redirect"
        )
    return f"nothing answers plain HTTP at {ctx.http_origin()} (no HTTP to redirect)"


async def _hsts(ctx: ScanContext) -> tuple[Exchange, str | None] | Result:
    if not ctx.is_https:
        return Result.skipped("the target is plain HTTP: HSTS can only be set over HTTPS")
    ex = await ctx.baseline()
    return ex, ex.header("strict-transport-security")


async def _hsts_present(ctx: ScanContext) -> tuple[Exchange, str, str] | Result:
    """The exchange, HSTS value and evidence for the controls that judge a header that is
    there (``https.hsts`` reports a missing one; the others skip rather than fail twice)."""
    got = await _hsts(ctx)
    if isinstance(got, Result):
        return got
    ex, value = got
    if value is None:
        return Result.skipped("no HSTS header (see https.hsts)")
    return ex, value, ex.describe(["strict-transport-security"])


@check(
    id="https.tls",
    title="The API is served over HTTPS",
    category="https",
    severity="high",
    references=(
        OWASP_TLS,
        "https://owasp.org/API-Security/editions/2023/en/0xa8-security-misconfiguration/",
    ),
    remediation="Serve the API only over HTTPS (TLS 1.2+); if TLS ends at a proxy in front of "
    "this service, scan the proxy's https:// URL (or --ignore this control with that reason).",
    max_requests=0,
    cap="C",
)
async def served_over_tls(ctx: ScanContext) -> Result:
    """Without TLS every token, password and body crosses the network in clear, and none of
    the TLS controls can run. Skipped controls deduct nothing, so an API scanned over plain
    HTTP would otherwise grade as if its TLS were perfect: failing here caps the grade at C.
    An http:// target that only redirects to https:// passes (its TLS is graded by scanning
    the https:// URL)."""
    if ctx.is_https:
        return Result.passed(reason=f"{ctx.origin} speaks TLS")
    ex = await ctx.baseline()
    location = ex.header("location") or ""
    if ex.status in {301, 302, 303, 307, 308} and location.startswith("https://"):
        return Result.passed(
            ex.describe(["location"]),
            f"the target redirects to {location}: scan that URL to grade its TLS",
        )
    return Result.failed(
        ex.describe(["content-type"]),
        f"the API answered {ex.status} over plain HTTP ({ctx.origin}): no TLS, so the TLS "
        "controls were skipped and the grade is capped at C",
    )


@check(
    id="https.redirect",
    title="Plain HTTP redirects to HTTPS",
    category="https",
    severity="high",
    references=(f"{OBSERVATORY}#redirection",),
    remediation="Answer every plain-HTTP GET/HEAD with a 301 or 308 to the same host and path "
    "over https://, and serve the API only over HTTPS.",
    max_requests=1,
)
async def redirect(ctx: ScanContext) -> Result:
    """An API reachable over plain HTTP exposes tokens and bodies to anyone on the path.
    The HTTP listener must redirect to HTTPS (the Observatory's `redirection` test). A target
    given as http:// that answers without redirecting fails; no plain-HTTP listener at all
    passes, as the Observatory's "not-needed-no-http"."""
    ex = await _http_get(ctx)
    if ex is None:
        if ctx.http_origin() is None:
            return Result.skipped(_no_listener_reason(ctx))
        return Result.passed(reason=_no_listener_reason(ctx))
    location = ex.header("location") or ""
    evidence = ex.describe(["location"])
    if ex.status in {301, 302, 303, 307, 308} and location.startswith("https://"):
        return Result.passed(evidence)
    if ex.status in {301, 302, 303, 307, 308}:
        return Result.failed(evidence, f"redirects to {location!r}, not to https://")
    return Result.failed(evidence, f"plain HTTP answered {ex.status} without redirecting")


@check(
    id="https.redirect-permanent",
    title="The HTTPS redirect is permanent (301 or 308)",
    category="https",
    severity="low",
    references=(f"{RFC}/rfc9110#section-15.4",),
    remediation="Use 301 (or 308) for the HTTP-to-HTTPS redirect, so clients and caches "
    "remember it instead of trying plain HTTP again.",
    max_requests=1,
)
async def redirect_permanent(ctx: ScanContext) -> Result:
    """A temporary redirect (302/307) is not cached, so every visit starts over plain HTTP
    again; RFC 9110 §15.4 defines 301/308 as the permanent ones."""
    ex = await _http_get(ctx)
    if ex is None or ex.status not in {301, 302, 303, 307, 308}:
        return Result.skipped("no HTTP redirect to judge" if ex else _no_listener_reason(ctx))
    if ex.status in {301, 308}:
        return Result.passed(ex.describe(["location"]))
    return Result.failed(ex.describe(["location"]), f"redirect status is {ex.status}")


@check(
    id="https.redirect-same-host",
    title="The first redirect stays on the same host",
    category="https",
    severity="low",
    references=(f"{OBSERVATORY}#redirection",),
    remediation="Redirect http://host/ to https://host/ first (so HSTS can be set for host), "
    "and only then elsewhere.",
    max_requests=1,
)
async def redirect_same_host(ctx: ScanContext) -> Result:
    """A first hop to another host means the original host never gets an HSTS header over
    HTTPS (the Observatory's "off-host-from-http")."""
    ex = await _http_get(ctx)
    if ex is None or ex.status not in {301, 302, 303, 307, 308}:
        return Result.skipped("no HTTP redirect to judge" if ex else _no_listener_reason(ctx))
    target = httpx.URL(ex.url).join(ex.header("location") or "")
    if target.host == httpx.URL(ex.url).host:
        return Result.passed(ex.describe(["location"]))
    return Result.failed(ex.describe(["location"]), f"first hop goes to host {target.host!r}")


@check(
    id="https.http-body-refused",
    title="Requests with a body are refused over plain HTTP",
    category="https",
    severity="medium",
    references=(f"{OWASP_TLS}#use-tls-for-all-pages",),
    remediation="On the plain-HTTP listener, answer non-GET/HEAD requests with 403 (or 400): "
    "never process them and never 307/308-redirect them (the client would re-send the body).",
    max_requests=1,
)
async def http_body_refused(ctx: ScanContext) -> Result:
    """A POST over plain HTTP has already exposed its body (credentials, tokens). Processing
    it (2xx) or answering 307/308 (which makes clients re-send the body) both fail; 301/302/303
    warn (clients usually drop the body, but the request was still accepted)."""
    origin = ctx.http_origin()
    if origin is None:
        return Result.skipped(_no_listener_reason(ctx))
    path = ctx.target.raw_path.decode("ascii") or "/"
    try:
        ex = await ctx.request(
            "POST",
            origin + path,
            headers={"Content-Type": "application/json"},
            content=b'{"bastion_scan": "probe"}',
            extra_headers=False,
        )
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ConnectTimeout):
        return Result.passed(reason=_no_listener_reason(ctx))
    evidence = ex.describe(["location"])
    if 200 <= ex.status < 300:
        return Result.failed(evidence, f"POST over plain HTTP was processed ({ex.status})")
    if ex.status in {307, 308}:
        return Result.failed(evidence, f"{ex.status} makes the client re-send the body")
    if ex.status in {301, 302, 303}:
        return Result.warned(evidence, f"POST over HTTP redirected with {ex.status}")
    return Result.passed(evidence)


@check(
    id="https.hsts",
    title="Strict-Transport-Security is sent",
    category="https",
    severity="medium",
    references=(f"{OBSERVATORY}#strict-transport-security",),
    remediation="Send `Strict-Transport-Security: max-age=31536000; includeSubDomains` on every "
    "HTTPS response, errors included.",
    max_requests=1,
)
async def hsts(ctx: ScanContext) -> Result:
    """Without HSTS a client that ever types http:// (or follows an http:// link) can be
    downgraded before the redirect (SSL stripping). Judged on the target's response."""
    got = await _hsts(ctx)
    if isinstance(got, Result):
        return got
    ex, value = got
    evidence = ex.describe(["strict-transport-security"])
    if value is None:
        return Result.failed(evidence, "no Strict-Transport-Security header")
    if "max-age" not in directives(value):
        return Result.failed(evidence, "header without max-age is ignored (RFC 6797 §6.1.1)")
    return Result.passed(evidence)


@check(
    id="https.hsts-max-age",
    title="HSTS max-age is at least one year",
    category="https",
    severity="low",
    references=(OWASP_HSTS,),
    remediation="Use `max-age=31536000` (one year) or more.",
    max_requests=1,
)
async def hsts_max_age(ctx: ScanContext) -> Result:
    """A short max-age lets the protection lapse between visits. One year is the OWASP
    recommendation (and preload's minimum); below the Observatory's six months fails, between
    six months and a year warns."""
    got = await _hsts_present(ctx)
    if isinstance(got, Result):
        return got
    _, value, evidence = got
    raw = directives(value).get("max-age", "")
    if not raw.isdigit():
        return Result.failed(evidence, f"max-age {raw!r} is not a number")
    age = int(raw)
    if age >= ONE_YEAR:
        return Result.passed(evidence)
    if age >= SIX_MONTHS:
        return Result.warned(evidence, f"max-age={age} is under one year")
    return Result.failed(evidence, f"max-age={age} is under six months")


@check(
    id="https.hsts-subdomains",
    title="HSTS covers subdomains (includeSubDomains)",
    category="https",
    severity="low",
    references=(f"{RFC}/rfc6797#section-6.1.2",),
    remediation="Add `includeSubDomains` once every subdomain serves HTTPS.",
    max_requests=1,
)
async def hsts_subdomains(ctx: ScanContext) -> Result:
    """Without includeSubDomains an attacker can plant cookies from a plain-HTTP sibling
    subdomain (RFC 6797 §14.4)."""
    got = await _hsts_present(ctx)
    if isinstance(got, Result):
        return got
    _, value, evidence = got
    if "includesubdomains" in directives(value):
        return Result.passed(evidence)
    return Result.failed(evidence, "includeSubDomains is missing")


@check(
    id="https.hsts-preload",
    title="HSTS is preload-ready",
    category="https",
    severity="info",
    references=("https://hstspreload.org/#deployment-recommendations",),
    remediation="When every subdomain is HTTPS-only, add `preload` (with a max-age of at least "
    "one year and includeSubDomains) and submit the domain to the preload list.",
    max_requests=1,
)
async def hsts_preload(ctx: ScanContext) -> Result:
    """Preloading protects even the very first visit; it is an opt-in commitment (the contract
    leaves it off by default), so its absence is information, not a deduction."""
    got = await _hsts_present(ctx)
    if isinstance(got, Result):
        return got
    _, value, evidence = got
    d = directives(value)
    if "preload" not in d:
        return Result.warned(evidence, "preload not requested (opt-in)")
    age = d.get("max-age", "")
    if not (age.isdigit() and int(age) >= ONE_YEAR and "includesubdomains" in d):
        return Result.failed(evidence, "preload needs max-age >= 1 year and includeSubDomains")
    return Result.passed(evidence)


@check(
    id="https.hsts-valid",
    title="HSTS header is well-formed",
    category="https",
    severity="low",
    references=(f"{RFC}/rfc6797#section-6.1",),
    remediation="Send exactly one Strict-Transport-Security header, each directive once.",
    max_requests=1,
)
async def hsts_valid(ctx: ScanContext) -> Result:
    """RFC 6797 §6.1: directives MUST appear at most once, and a UA processes only the first
    header; several headers or repeated directives may make browsers ignore the policy."""
    got = await _hsts_present(ctx)
    if isinstance(got, Result):
        return got
    ex, _, evidence = got
    fields = ex.header_list("strict-transport-security")
    if len(fields) > 1:
        return Result.failed(evidence, f"{len(fields)} Strict-Transport-Security headers")
    repeated = repeated_directives(fields[0])
    if repeated:
        return Result.failed(evidence, f"repeated directives: {', '.join(repeated)}")
    return Result.passed(evidence)


@check(
    id="https.hsts-over-http",
    title="HSTS is not sent over plain HTTP",
    category="https",
    severity="info",
    references=(f"{RFC}/rfc6797#section-7.2",),
    remediation="Send Strict-Transport-Security only on HTTPS responses.",
    max_requests=1,
)
async def hsts_over_http(ctx: ScanContext) -> Result:
    """RFC 6797 §7.2: an HSTS host MUST NOT include the header over non-secure transport
    (browsers ignore it there); sending it shows the policy is applied without looking at
    the scheme."""
    ex = await _http_get(ctx)
    if ex is None:
        return Result.skipped(_no_listener_reason(ctx))
    evidence = ex.describe(["strict-transport-security"])
    if ex.header("strict-transport-security"):
        return Result.warned(evidence, "HSTS sent on a plain-HTTP response")
    return Result.passed(evidence)
