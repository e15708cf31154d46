"""Rate limiting: advertised limits (passive), and with ``--active`` bounded bursts that find
whether a limit exists, whether a 429 says when to retry, and whether a spoofed
X-Forwarded-For resets it.

Bursts are bounded (at most :data:`AUTH_BURST` failed logins and :data:`API_BURST` GETs) and
announced on stderr by the CLI before the scan starts.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from bastion.scanner.check import Result, check
from bastion.scanner.checks._util import (
    OWASP_API4,
    PROTECTED_CANDIDATES,
    RFC,
    find_login,
    find_protected,
)
from bastion.scanner.checks.auth import enumeration_pair, login_body
from bastion.scanner.context import ANONYMOUS, ScanContext
from bastion.scanner.evidence import Exchange, join_evidence

RATELIMIT_DRAFT = "https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/"
LIMIT_HEADERS = (
    "ratelimit",
    "ratelimit-policy",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "retry-after",
)
AUTH_BURST = 12
API_BURST = 30


def not_a_login(status: int) -> bool:
    """A login refuses a wrong password with a 4xx (401, 400, even an enumerating 404). A
    2xx/3xx (a catch-all page, a form) or a 405/501 (POST not taken) means the path is not a
    login, and its answers say nothing about login limits."""
    return 200 <= status < 400 or status in {405, 501}


# A quota allowing more than this many requests per second, sustained, limits nothing an
# attacker needs (1e9 per 15 minutes is over a million a second). An advertised limit without
# a window is read as per hour, the most generous common window.
EFFECTIVELY_UNLIMITED_PER_S = 100
DEFAULT_WINDOW_S = 3600


@dataclass(frozen=True)
class Quota:
    requests: int
    window_s: int | None  # None: the headers did not say
    source: str

    @property
    def per_second(self) -> float:
        return self.requests / (self.window_s or DEFAULT_WINDOW_S)

    @property
    def unlimited(self) -> bool:
        return self.per_second > EFFECTIVELY_UNLIMITED_PER_S

    def describe(self) -> str:
        window = f"per {self.window_s} s" if self.window_s else "with no window (read as per hour)"
        return (
            f"{self.source} advertises {self.requests} requests {window}, about "
            f"{self.per_second:,.0f} per second: effectively unlimited"
        )


_POLICY_ITEM = re.compile(
    r"\bq=(\d{1,20})\b[^,]*?\bw=(\d{1,12})\b|\bw=(\d{1,12})\b[^,]*?\bq=(\d{1,20})\b"
)
_OLD_POLICY = re.compile(r"^\s*(\d{1,20})\s*;\s*w=(\d{1,12})")


def advertised_quotas(ex: Exchange) -> list[Quota]:
    """Every quota the response's limit headers state (RateLimit-Policy items of
    draft-ietf-httpapi-ratelimit-headers, the older ``100;w=900`` form, RateLimit-Limit and
    X-RateLimit-Limit)."""
    quotas: list[Quota] = []
    for value in ex.header_list("ratelimit-policy"):
        for item in value.split(","):
            match = _POLICY_ITEM.search(item)
            if match:
                q, w = (
                    (match.group(1), match.group(2))
                    if match.group(1)
                    else (match.group(4), match.group(3))
                )
                quotas.append(Quota(int(q), int(w) or None, "RateLimit-Policy"))
                continue
            old = _OLD_POLICY.match(item)
            if old:
                quotas.append(
                    Quota(int(old.group(1)), int(old.group(2)) or None, "RateLimit-Policy")
                )
    for name in ("RateLimit-Limit", "X-RateLimit-Limit"):
        value = (ex.header(name) or "").split(",")[0].strip()
        if value.isdigit():
            quotas.append(Quota(int(value), None, name))
    return quotas


def unlimited_quota(exchanges: list[Exchange]) -> Quota | None:
    """The advertised quota, when even the most restrictive one limits nothing; else None."""
    quotas = [q for ex in exchanges for q in advertised_quotas(ex)]
    # A stated window beats a guessed one (X-RateLimit-Limit usually restates the policy).
    quotas = [q for q in quotas if q.window_s] or quotas
    if not quotas:
        return None
    strictest = min(quotas, key=lambda q: q.per_second)
    return strictest if strictest.unlimited else None


@check(
    id="ratelimit.headers",
    title="Rate limits are advertised (RateLimit / X-RateLimit-* headers)",
    category="ratelimit",
    severity="low",
    references=(RATELIMIT_DRAFT,),
    remediation="Send `RateLimit-Policy` and `RateLimit` (IETF draft) or "
    "`X-RateLimit-Limit`/`X-RateLimit-Remaining` on limited routes.",
    max_requests=7,
)
async def headers(ctx: ScanContext) -> Result:
    """Limit headers let well-behaved clients slow down before a 429, and show a limit is in
    place at all. Looked for on the target's response and on the protected resource's (or,
    when none was found, on the API paths probed for one). A quota of more than 100
    requests a second (1e9 per 15 minutes) is advertised, but limits nothing: it fails."""
    exchanges = [await ctx.baseline()]
    protected = await find_protected(ctx)
    if protected is not None:
        exchanges.append(protected.anonymous)
    else:
        # Discovery already fetched these API paths (cached): whatever they answered, a
        # limiter in front of them shows in their headers.
        exchanges += [
            await ctx.fetch("GET", p, extra_headers=ANONYMOUS) for p in PROTECTED_CANDIDATES
        ]
    limited = [ex for ex in exchanges if any(ex.header(h) for h in LIMIT_HEADERS[:4])]
    if limited:
        absurd = unlimited_quota(limited)
        if absurd is not None:
            return Result.failed(limited[0].describe(LIMIT_HEADERS[:4]), absurd.describe())
        return Result.passed(limited[0].describe(LIMIT_HEADERS[:4]))
    evidence = join_evidence(*(ex.describe(LIMIT_HEADERS[:4]) for ex in exchanges[:3]))
    return Result.failed(evidence, f"no rate-limit header on {len(exchanges)} responses seen")


@dataclass
class Burst:
    path: str
    exchanges: list[Exchange]
    limited: Exchange | None  # the first 429
    spoofed: Exchange | None = None  # the same request with forged client-address headers


async def login_burst(ctx: ScanContext) -> Burst | None:
    """Failed logins in a row until a 429 (at most AUTH_BURST), then one more with a random
    X-Forwarded-For / X-Real-IP / Forwarded. Runs after the enumeration pair."""

    async def burst() -> Burst | None:
        path = await find_login(ctx)
        if path is None:
            return None
        await enumeration_pair(ctx)  # keep its two probes ahead of the burst
        headers = {"Content-Type": "application/json"}
        body = login_body(f"bastion-scan-{secrets.token_hex(4)}@example.invalid")
        exchanges: list[Exchange] = []
        limited = None
        for _ in range(AUTH_BURST):
            ex = await ctx.request(
                "POST", path, headers=headers, content=body, extra_headers=ANONYMOUS
            )
            exchanges.append(ex)
            if ex.status == 429:
                limited = ex
                break
            if not_a_login(ex.status):
                break  # not a login's answer to a wrong password: nothing to count here
        result = Burst(path, exchanges, limited)
        if limited is not None:
            ip = f"203.0.113.{secrets.randbelow(250) + 1}"  # TEST-NET-3: never a real client
            spoof = {
                **headers,
                "X-Forwarded-For": ip,
                "X-Real-IP": ip,
                "Forwarded": f"for={ip}",
                "X-Client-IP": ip,
            }
            result.spoofed = await ctx.request(
                "POST", path, headers=spoof, content=body, extra_headers=ANONYMOUS
            )
        return result

    return await ctx.memo("login-burst", burst)


def _burst_evidence(burst: Burst) -> str:
    statuses = ", ".join(str(ex.status) for ex in burst.exchanges)
    last = burst.exchanges[-1]
    return last.describe(
        LIMIT_HEADERS, note=f"statuses of {len(burst.exchanges)} failed logins: {statuses}"
    )


@check(
    id="ratelimit.login-burst",
    title="Failed logins are rate-limited",
    category="ratelimit",
    severity="high",
    references=(OWASP_API4,),
    remediation="Limit failed authentication attempts per client (e.g. 5 per 15 minutes) and "
    "answer 429 beyond it.",
    max_requests=20,
    active=True,
)
async def login_burst_limited(ctx: ScanContext) -> Result:
    """Without a limit on failed logins, passwords can be guessed at line speed (credential
    stuffing). Sends up to 12 failed logins with a wrong password; a 429 must come first. A
    path that answers a wrong password with a 2xx/3xx (a catch-all page) or 405 is not a
    login: the burst stops there and the control skips, rather than blaming a missing limit."""
    burst = await login_burst(ctx)
    if burst is None:
        return Result.skipped("no login endpoint found")
    odd = sorted({ex.status for ex in burst.exchanges if not_a_login(ex.status)})
    if odd:
        # A 200 to a wrong password is a catch-all page or a form, not a login refusing it:
        # counting those as "failed logins" would blame a limit that has nothing to limit.
        return Result.skipped(
            f"POST {ctx.url(burst.path)} answered {', '.join(map(str, odd))} to a wrong "
            "password: not a login endpoint, no failed login to count",
            _burst_evidence(burst),
        )
    if burst.limited is None:
        return Result.failed(_burst_evidence(burst), f"no 429 within {AUTH_BURST} failed logins")
    return Result.passed(_burst_evidence(burst), f"429 after {len(burst.exchanges)} attempts")


_HTTP_DATE = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")


@check(
    id="ratelimit.retry-after",
    title="429 responses carry Retry-After",
    category="ratelimit",
    severity="low",
    references=(f"{RFC}/rfc6585#section-4",),
    remediation="Send `Retry-After: <seconds>` with every 429.",
    max_requests=20,
    active=True,
)
async def retry_after(ctx: ScanContext) -> Result:
    """RFC 6585 §4: a 429 MAY include Retry-After; without it clients retry at once and keep
    the limit saturated. The value must be delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    burst = await login_burst(ctx)
    if burst is None or burst.limited is None:
        return Result.skipped("no 429 was reached")
    ex = burst.limited
    evidence = ex.describe(["retry-after"])
    value = (ex.header("retry-after") or "").strip()
    if not value:
        return Result.failed(evidence, "429 without Retry-After")
    if not (value.isdigit() or _HTTP_DATE.match(value)):
        return Result.failed(evidence, f"invalid Retry-After {value!r}")
    return Result.passed(evidence)


@check(
    id="ratelimit.forwarded-spoof",
    title="A spoofed X-Forwarded-For does not reset the limit",
    category="ratelimit",
    severity="high",
    references=(OWASP_API4,),
    remediation="Believe forwarding headers only from your own proxies (trusted_proxies); key "
    "limits on the peer address otherwise.",
    max_requests=20,
    active=True,
)
async def forwarded_spoof(ctx: ScanContext) -> Result:
    """If the limiter keys on X-Forwarded-For from anyone, an attacker picks a fresh address
    per request and the limit never applies. After the first 429, the same failed login is
    sent with a random X-Forwarded-For, X-Real-IP, X-Client-IP and Forwarded: it must stay 429."""
    burst = await login_burst(ctx)
    if burst is None or burst.limited is None or burst.spoofed is None:
        return Result.skipped("no 429 was reached")
    evidence = burst.spoofed.describe(LIMIT_HEADERS[2:])
    if burst.spoofed.status != 429:
        return Result.failed(evidence, f"a forged client address got {burst.spoofed.status}")
    return Result.passed(evidence)


async def _burst_path(ctx: ScanContext) -> str:
    """Where a limit should be: the protected resource; else an API path whose answer already
    advertised a limit; else the target itself."""
    protected = await find_protected(ctx)
    if protected is not None:
        return protected.path
    for path in PROTECTED_CANDIDATES:
        ex = await ctx.fetch("GET", path, extra_headers=ANONYMOUS)
        if any(ex.header(h) for h in LIMIT_HEADERS[:4]):
            return path
    return ""


def _remaining(ex: Exchange) -> int | None:
    value = ex.header("x-ratelimit-remaining")
    if value and value.strip().isdigit():
        return int(value)
    match = re.search(r"\br=(\d+)", ex.header("ratelimit") or "")
    return int(match.group(1)) if match else None


@check(
    id="ratelimit.api-burst",
    title="The API has a request limit",
    category="ratelimit",
    severity="medium",
    references=(OWASP_API4,),
    remediation="Limit requests per client on the API (e.g. 100 per 15 minutes) with 429 "
    "beyond it.",
    max_requests=API_BURST + 7,
    active=True,
)
async def api_burst(ctx: ScanContext) -> Result:
    """OWASP API4 (unrestricted resource consumption). Sends up to 30 GETs to the protected
    resource (or an API path that advertises a limit, or the target); a
    429, or a remaining-quota header that counts down, shows a limit, unless the quota
    counting down is effectively unlimited (more than 100 a second). A limit above 30 per
    window that advertises nothing cannot be seen and is reported as failing."""
    path = await _burst_path(ctx)
    exchanges: list[Exchange] = []
    for _ in range(API_BURST):
        ex = await ctx.request("GET", path, extra_headers=ANONYMOUS)
        exchanges.append(ex)
        remaining = [r for r in (_remaining(e) for e in exchanges) if r is not None]
        counting_down = len(remaining) >= 2 and remaining[-1] < remaining[0]
        if counting_down and ex.status != 429:
            absurd = unlimited_quota(exchanges)
            if absurd is not None:
                return Result.failed(ex.describe(LIMIT_HEADERS), absurd.describe())
        if ex.status == 429 or counting_down:
            why = (
                "429" if ex.status == 429 else f"remaining quota {remaining[0]} -> {remaining[-1]}"
            )
            return Result.passed(
                ex.describe(LIMIT_HEADERS), f"{why} after {len(exchanges)} requests"
            )
    statuses = ", ".join(sorted({str(e.status) for e in exchanges}))
    return Result.failed(
        exchanges[-1].describe(LIMIT_HEADERS),
        f"{API_BURST} requests, no 429 and no counting-down quota (statuses: {statuses})",
    )
