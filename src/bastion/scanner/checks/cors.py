"""CORS: which foreign origins may read the API with the user's credentials.

Probes send ``Origin`` headers an attacker could send (an unrelated site, ``null``, look-alikes
of the target's host, the target's host over plain HTTP) and judge the
``Access-Control-Allow-*`` answer. An API that sends no CORS headers at all passes: absence
of CORS is not a vulnerability (the browser then refuses every cross-origin read;
https://github.com/projectdiscovery/nuclei-templates/issues/7265).
"""

from __future__ import annotations

import httpx

from bastion.scanner.check import Result, check
from bastion.scanner.checks._util import OBSERVATORY, list_tokens
from bastion.scanner.context import ANONYMOUS, ScanContext
from bastion.scanner.evidence import Exchange, join_evidence

WSTG_CORS = (
    "https://owasp.org/www-project-web-security-testing-guide/latest/4-Web_Application_Security_"
    "Testing/11-Client-side_Testing/07-Testing_Cross_Origin_Resource_Sharing"
)
FETCH_CORS = "https://fetch.spec.whatwg.org/#http-cors-protocol"
EVIL_ORIGIN = "https://bastion-scan-attacker.example"
MAX_ORIGINS = 4  # --origin values judged (each costs a few requests)
CORS_HEADERS = (
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "vary",
)


async def _with_origin(ctx: ScanContext, origin: str) -> Exchange:
    return await ctx.fetch("GET", "", headers={"Origin": origin}, extra_headers=ANONYMOUS)


def _allows(ex: Exchange, origin: str) -> bool:
    return (ex.header("access-control-allow-origin") or "").strip() == origin


def _credentials(ex: Exchange) -> bool:
    return (ex.header("access-control-allow-credentials") or "").strip().lower() == "true"


def _host_port(ctx: ScanContext) -> str:
    host = ctx.host if ":" not in ctx.host else f"[{ctx.host}]"
    return host + (f":{ctx.target.port}" if ctx.target.port else "")


def _own_origin(ctx: ScanContext) -> str:
    return ctx.origin


@check(
    id="cors.origin-reflection-credentials",
    title="Arbitrary origins cannot read responses with credentials",
    category="cors",
    severity="critical",
    references=(f"{OBSERVATORY}#cross-origin-resource-sharing",),
    remediation="Allow an exact list of origins; never copy the request's Origin into "
    "Access-Control-Allow-Origin together with Access-Control-Allow-Credentials: true.",
    max_requests=1,
)
async def origin_reflection_credentials(ctx: ScanContext) -> Result:
    """Reflecting any Origin with `Access-Control-Allow-Credentials: true` lets every web
    page read authenticated API responses in its visitors' browsers (the Observatory's
    "universal access", -50; ZAP 40040 rates it High)."""
    ex = await _with_origin(ctx, EVIL_ORIGIN)
    evidence = ex.describe(CORS_HEADERS)
    if _allows(ex, EVIL_ORIGIN) and _credentials(ex):
        return Result.failed(evidence, f"{EVIL_ORIGIN} reflected with credentials allowed")
    return Result.passed(evidence)


@check(
    id="cors.origin-reflection",
    title="Arbitrary origins are not reflected",
    category="cors",
    severity="medium",
    references=(WSTG_CORS,),
    remediation="Compare Origin against an exact allow-list instead of echoing it.",
    max_requests=1,
)
async def origin_reflection(ctx: ScanContext) -> Result:
    """Even without credentials, echoing any origin exposes whatever the API returns to
    network-position attackers (intranet APIs, IP-restricted APIs)."""
    ex = await _with_origin(ctx, EVIL_ORIGIN)
    evidence = ex.describe(CORS_HEADERS)
    if _allows(ex, EVIL_ORIGIN):
        return Result.failed(evidence, f"{EVIL_ORIGIN} reflected in Access-Control-Allow-Origin")
    return Result.passed(evidence)


@check(
    id="cors.null-origin",
    title="The null origin is not allowed",
    category="cors",
    severity="high",
    references=(f"{FETCH_CORS}",),
    remediation="Never allow `Origin: null` (sandboxed iframes and file:// pages send it, "
    "so any attacker can).",
    max_requests=1,
)
async def null_origin(ctx: ScanContext) -> Result:
    """`Origin: null` is sent by sandboxed iframes, data: URLs and redirects, all of which an
    attacker controls; allowing it is as good as allowing everyone."""
    ex = await _with_origin(ctx, "null")
    evidence = ex.describe(CORS_HEADERS)
    if _allows(ex, "null"):
        extra = " with credentials" if _credentials(ex) else ""
        return Result.failed(evidence, f"Origin: null allowed{extra}")
    return Result.passed(evidence)


@check(
    id="cors.lookalike-origin",
    title="Look-alike origins (suffix/prefix matches of the host) are refused",
    category="cors",
    severity="high",
    references=(WSTG_CORS,),
    remediation="Match origins exactly (scheme, host and port); no startswith/endswith or "
    "unanchored regular expressions.",
    max_requests=2,
)
async def lookalike_origin(ctx: ScanContext) -> Result:
    """Allow-lists implemented with `endswith(host)` or `startswith(origin)` accept
    `https://attacker<host>` and `https://<host>.attacker.example`, domains anyone can
    register."""
    host = _host_port(ctx)
    scheme = ctx.target.scheme
    candidates = [
        f"{scheme}://{host}.bastion-scan-attacker.example",  # prefix match: starts with host
        f"{scheme}://bastionscanattacker{host}",  # suffix match: ends with host
    ]
    exchanges = [await _with_origin(ctx, origin) for origin in candidates]
    evidence = join_evidence(*(ex.describe(CORS_HEADERS) for ex in exchanges))
    allowed = [o for o, ex in zip(candidates, exchanges, strict=True) if _allows(ex, o)]
    if allowed:
        return Result.failed(evidence, f"look-alike origin allowed: {', '.join(allowed)}")
    return Result.passed(evidence)


@check(
    id="cors.insecure-origin",
    title="Plain-HTTP origins are not trusted by an HTTPS API",
    category="cors",
    severity="medium",
    references=(WSTG_CORS,),
    remediation="Allow only https:// origins.",
    max_requests=1,
)
async def insecure_origin(ctx: ScanContext) -> Result:
    """Trusting `http://<host>` lets a network attacker inject script into that plain-HTTP
    origin and read the HTTPS API through it."""
    if not ctx.is_https:
        return Result.skipped("the target is plain HTTP")
    origin = f"http://{_host_port(ctx)}"
    ex = await _with_origin(ctx, origin)
    evidence = ex.describe(CORS_HEADERS)
    if _allows(ex, origin):
        return Result.failed(evidence, f"{origin} allowed")
    return Result.passed(evidence)


@check(
    id="cors.wildcard",
    title="Access-Control-Allow-Origin is not a wildcard",
    category="cors",
    severity="low",
    references=(f"{OBSERVATORY}#cross-origin-resource-sharing",),
    remediation="Use `*` only for truly public, unauthenticated data; otherwise list origins.",
    max_requests=1,
)
async def wildcard(ctx: ScanContext) -> Result:
    """`*` lets any page read the response (without cookies). Fine for public data, a
    warning otherwise."""
    ex = await _with_origin(ctx, EVIL_ORIGIN)
    evidence = ex.describe(CORS_HEADERS)
    if (ex.header("access-control-allow-origin") or "").strip() == "*":
        return Result.warned(evidence, "Access-Control-Allow-Origin: *")
    return Result.passed(evidence)


@check(
    id="cors.wildcard-credentials",
    title="No wildcard origin together with credentials",
    category="cors",
    severity="high",
    references=(f"{FETCH_CORS}",),
    remediation="Never combine `Access-Control-Allow-Origin: *` with "
    "`Access-Control-Allow-Credentials: true`.",
    max_requests=1,
)
async def wildcard_credentials(ctx: ScanContext) -> Result:
    """Browsers refuse this combination, so it only shows up where a configuration meant to
    allow everyone with credentials (the next "fix" is usually origin reflection)."""
    ex = await _with_origin(ctx, EVIL_ORIGIN)
    evidence = ex.describe(CORS_HEADERS)
    if (ex.header("access-control-allow-origin") or "").strip() == "*" and _credentials(ex):
        return Result.failed(evidence, "wildcard origin with credentials")
    return Result.passed(evidence)


async def _preflight(ctx: ScanContext, origin: str, method: str, headers: str) -> Exchange:
    return await ctx.fetch(
        "OPTIONS",
        "",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
        extra_headers=ANONYMOUS,
    )


PROBE_METHOD = "PROPFIND"
PROBE_HEADER = "x-bastion-scan-probe"


async def _preflight_lax(ctx: ScanContext, allow_header: str, probe: str) -> Result:
    """Fail when a preflight that is granted (own origin or an unrelated one) also approves
    the arbitrary ``probe`` value in ``allow_header`` (or ``*``)."""
    shown = ["access-control-allow-origin", allow_header]
    exchanges = []
    # The front-end origins the user named (--origin) are the ones the server grants: a lax
    # preflight shows only there.
    for origin in (*ctx.options.origins[:MAX_ORIGINS], _own_origin(ctx), EVIL_ORIGIN):
        ex = await _preflight(ctx, origin, PROBE_METHOD, PROBE_HEADER)
        exchanges.append(ex)
        granted = _allows(ex, origin) or (ex.header("access-control-allow-origin") or "") == "*"
        allowed = list_tokens(ex.header(allow_header))
        if granted and (probe in allowed or "*" in allowed):
            return Result.failed(ex.describe(shown), f"preflight for {origin} approves {probe}")
    return Result.passed(join_evidence(*(ex.describe(shown) for ex in exchanges)))


@check(
    id="cors.preflight-methods",
    title="Preflight does not allow whatever method is asked",
    category="cors",
    severity="low",
    references=(WSTG_CORS,),
    remediation="Answer preflights with a fixed list of the methods the API implements.",
    max_requests=2 + 4,
)
async def preflight_methods(ctx: ScanContext) -> Result:
    """A preflight that echoes Access-Control-Request-Method (here `PROPFIND`) approves
    methods nobody reviewed. Judged for the `--origin` front ends, the target's own origin
    and an unrelated one."""
    return await _preflight_lax(ctx, "access-control-allow-methods", PROBE_METHOD.lower())


@check(
    id="cors.preflight-headers",
    title="Preflight does not allow whatever header is asked",
    category="cors",
    severity="low",
    references=(WSTG_CORS,),
    remediation="Answer preflights with a fixed list of request headers "
    "(e.g. Content-Type, Authorization, X-Request-ID).",
    max_requests=2 + 4,
)
async def preflight_headers(ctx: ScanContext) -> Result:
    """Echoing Access-Control-Request-Headers approves any custom header, including ones the
    backend trusts (X-Forwarded-For, X-User-Id, method overrides)."""
    return await _preflight_lax(ctx, "access-control-allow-headers", PROBE_HEADER)


@check(
    id="cors.vary-origin",
    title="Origin-dependent responses carry Vary: Origin",
    category="cors",
    severity="low",
    references=(f"{FETCH_CORS}-and-http-caches",),
    remediation="Add `Vary: Origin` whenever Access-Control-Allow-Origin depends on the request.",
    max_requests=2,
)
async def vary_origin(ctx: ScanContext) -> Result:
    """Without Vary: Origin a cache can serve one origin's CORS answer to another (cache
    poisoning of the allow-list, or a denial for legitimate origins)."""
    exchanges = [await _with_origin(ctx, EVIL_ORIGIN), await _with_origin(ctx, _own_origin(ctx))]
    evidence = join_evidence(*(ex.describe(CORS_HEADERS) for ex in exchanges))
    dynamic = [
        ex
        for ex in exchanges
        if (ex.header("access-control-allow-origin") or "*").strip() not in {"*", ""}
    ]
    if not dynamic:
        return Result.passed(evidence, "no origin-specific CORS answer")
    missing = [ex.summary for ex in dynamic if "origin" not in list_tokens(ex.header("vary"))]
    if missing:
        return Result.failed(evidence, f"no Vary: Origin on {', '.join(missing)}")
    return Result.passed(evidence)


@check(
    id="cors.legacy-policy-files",
    title="No permissive crossdomain.xml / clientaccesspolicy.xml",
    category="cors",
    severity="low",
    references=("https://www.zaproxy.org/docs/alerts/10098/",),
    remediation="Remove /crossdomain.xml and /clientaccesspolicy.xml, or list exact domains.",
    max_requests=2,
)
async def legacy_policy_files(ctx: ScanContext) -> Result:
    """Flash and Silverlight policy files with `*` grant cross-domain reads to any site for
    clients that still honour them (ZAP 10098)."""
    cross = await ctx.fetch("GET", "/crossdomain.xml", extra_headers=ANONYMOUS)
    client = await ctx.fetch("GET", "/clientaccesspolicy.xml", extra_headers=ANONYMOUS)
    evidence = join_evidence(cross.describe((), body=True), client.describe((), body=True))
    problems = []
    if cross.status == 200 and '<allow-access-from domain="*"' in cross.text:
        problems.append("crossdomain.xml allows every domain")
    if client.status == 200 and 'uri="*"' in client.text and "<cross-domain-access" in client.text:
        problems.append("clientaccesspolicy.xml allows every domain")
    if problems:
        return Result.failed(evidence, "; ".join(problems))
    return Result.passed(evidence)


def origin_variants(origin: str) -> list[tuple[str, str, bool]]:
    """``(kind, variant, serious)`` for a legitimate front-end origin: what a policy that
    matches by prefix, suffix, substring or an unescaped regular expression also accepts.
    A trusted subdomain is reported as a warning (``serious`` False): a wildcard for one's
    own subdomains can be a decision, but any subdomain takeover then reads the API."""
    url = httpx.URL(origin)
    host = url.host
    port = f":{url.port}" if url.port else ""
    scheme = url.scheme
    variants = [
        ("suffix", f"{scheme}://{host}.bastion-scan-attacker.example{port}", True),
        ("prefix", f"{scheme}://bastionscanattacker{host}{port}", True),
        ("prefix", f"{scheme}://bastion-scan-attacker-{host}{port}", True),
    ]
    if "." in host:
        variants.append(("unescaped dot", f"{scheme}://{host.replace('.', 'x', 1)}{port}", True))
    if scheme == "https":
        variants.append(("scheme", f"http://{host}{port}", True))
    variants.append(("subdomain", f"{scheme}://bastion-scan-attacker.{host}{port}", False))
    return variants


@check(
    id="cors.trusted-origin-variants",
    title="Look-alikes of the trusted front-end origins are refused",
    category="cors",
    severity="high",
    references=(WSTG_CORS, FETCH_CORS),
    remediation="Compare Origin with the exact configured origins (scheme, host and port); "
    "no startswith/endswith/contains, no unanchored or unescaped regular expressions, no "
    "http:// variant of an https:// front end.",
    max_requests=1 + 6 * MAX_ORIGINS,
)
async def trusted_origin_variants(ctx: ScanContext) -> Result:
    """A policy written as `origin.endswith("example.com")` or `startswith("https://app.
    example.com")` trusts `https://evilexample.com` and `https://app.example.com.evil.net`,
    domains anyone can register, with the user's credentials. Given the real front ends
    (`--origin`), each is mutated (scheme, suffix, prefix, unescaped dot, subdomain) and the
    mutations must get no Access-Control-Allow-Origin."""
    origins = ctx.options.origins[:MAX_ORIGINS]
    if not origins:
        return Result.skipped("name the real front-end origins with --origin to test this")
    exchanges = []
    serious: list[str] = []
    mild: list[str] = []
    granted = []
    for origin in origins:
        own = await _with_origin(ctx, origin)
        exchanges.append(own)
        if _allows(own, origin):
            granted.append(origin)
        for kind, variant, is_serious in origin_variants(origin):
            ex = await _with_origin(ctx, variant)
            if _allows(ex, variant):
                exchanges.append(ex)
                (serious if is_serious else mild).append(f"{variant} ({kind} of {origin})")
    evidence = join_evidence(*(ex.describe(CORS_HEADERS) for ex in exchanges))
    if serious:
        return Result.failed(evidence, "trusted look-alike: " + ", ".join(serious))
    if mild:
        return Result.warned(evidence, "any subdomain is trusted: " + ", ".join(mild))
    if not granted:
        return Result.passed(
            evidence, "no variant allowed (the --origin values themselves were not granted)"
        )
    return Result.passed(evidence, f"{len(granted)} origin(s) granted, every look-alike refused")
