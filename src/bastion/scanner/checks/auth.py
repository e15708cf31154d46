"""Authentication from outside: 401s that say how to authenticate, tokens kept out of URLs,
protected resources that need the token, and (``--active``) login errors that do not tell
which accounts exist."""

from __future__ import annotations

import json
import re
import secrets

from bastion.scanner.check import Result, check
from bastion.scanner.checks._util import (
    OWASP_API2,
    PROTECTED_CANDIDATES,
    RFC,
    WSTG,
    candidates_tried,
    find_login,
    find_protected,
    find_token_resource,
    no_token_resource,
    prefixed,
)
from bastion.scanner.context import ANONYMOUS, ScanContext
from bastion.scanner.evidence import Exchange, join_evidence

WSTG_ENUM = (
    f"{WSTG}/03-Identity_Management_Testing/"
    "04-Testing_for_Account_Enumeration_and_Guessable_User_Account"
)
GARBAGE_TOKEN = "bastion-scan.invalid.token"  # noqa: S105 - a deliberately invalid token


@check(
    id="auth.www-authenticate",
    title="401 responses carry WWW-Authenticate",
    category="auth",
    severity="low",
    references=(f"{RFC}/rfc6750#section-3",),
    remediation='Send `WWW-Authenticate: Bearer` with every 401 (`error="invalid_token"` when '
    "a token was refused).",
    max_requests=7,
)
async def www_authenticate(ctx: ScanContext) -> Result:
    """RFC 9110 §15.5.2: a 401 MUST carry WWW-Authenticate; RFC 6750 §3 says how for bearer
    tokens. Clients and libraries rely on it to refresh tokens instead of failing."""
    protected = await find_protected(ctx)
    if protected is None:
        return Result.skipped(f"no 401/403 found at {candidates_tried(ctx)}")
    ex = protected.anonymous
    evidence = ex.describe(["www-authenticate"])
    if ex.status == 403:
        return Result.skipped(
            "the protected resource answers 403, which needs no challenge", evidence
        )
    if not ex.header("www-authenticate"):
        return Result.failed(evidence, "401 without WWW-Authenticate")
    return Result.passed(evidence)


def _auth_error(ex: Exchange) -> str:
    match = re.search(r'error="?([\w-]+)', ex.header("www-authenticate") or "")
    return match.group(1) if match else ""


@check(
    id="auth.token-in-url",
    title="Access tokens are not accepted in the URL",
    category="auth",
    severity="medium",
    references=(f"{RFC}/rfc6750#section-5.3",),
    remediation="Accept bearer tokens only in the Authorization header; never read "
    "`?access_token=` (it ends up in logs, history and Referer).",
    max_requests=9,
)
async def token_in_url(ctx: ScanContext) -> Result:
    """RFC 6750 §5.3: don't pass bearer tokens in page URLs; they leak through logs,
    browser history and Referer headers. With `--token`: the token sent as `?access_token=`
    must not open the resource. Without: a junk `?access_token=` must get the same answer as
    no token at all (a different one shows the server reads tokens from the URL)."""
    resource = await find_token_resource(ctx)
    if resource is not None:
        sep = "&" if "?" in ctx.url(resource.path) else "?"
        ex = await ctx.fetch(
            "GET",
            ctx.url(resource.path) + f"{sep}access_token={ctx.options.token}",
            extra_headers=ANONYMOUS,
        )
        evidence = ex.describe(["www-authenticate"])
        if 200 <= ex.status < 300:
            return Result.failed(evidence, "the token in ?access_token= was accepted")
        return Result.passed(evidence)
    protected = await find_protected(ctx)
    if protected is None:
        return Result.skipped(f"no 401/403 found at {candidates_tried(ctx)}")
    url = ctx.url(protected.path)
    sep = "&" if "?" in url else "?"
    junk = await ctx.fetch(
        "GET", url + f"{sep}access_token={GARBAGE_TOKEN}", extra_headers=ANONYMOUS
    )
    evidence = join_evidence(
        protected.anonymous.describe(["www-authenticate"]), junk.describe(["www-authenticate"])
    )
    if 200 <= junk.status < 300:
        return Result.failed(evidence, "a junk ?access_token= opened the protected resource")
    if junk.status != protected.anonymous.status or _auth_error(junk) != _auth_error(
        protected.anonymous
    ):
        return Result.failed(evidence, "the server reads (and validates) tokens from the URL")
    return Result.passed(evidence)


@check(
    id="auth.requires-token",
    title="Identity endpoints refuse anonymous requests",
    category="auth",
    severity="high",
    references=(OWASP_API2,),
    remediation="Require authentication on every non-public route (deny by default).",
    max_requests=24,
    needs_token=True,
)
async def requires_token(ctx: ScanContext) -> Result:
    """A "who am I" route (/api/v1/me, /me, /userinfo, ...) that the token opens must answer
    401/403 without it; a 2xx to an anonymous request there means a route registered outside
    the authentication layer, or a dependency that lets missing credentials through."""
    opened = []
    for path in prefixed(ctx, PROTECTED_CANDIDATES):
        if ctx.url(path) == ctx.url(""):
            continue
        authed = await ctx.fetch("GET", path, headers=ctx.auth_headers(), extra_headers=ANONYMOUS)
        if not 200 <= authed.status < 300:
            continue
        anonymous = await ctx.fetch("GET", path, extra_headers=ANONYMOUS)
        opened.append(anonymous)
        if 200 <= anonymous.status < 300:
            return Result.failed(
                anonymous.describe(["www-authenticate"]), f"{anonymous.summary} without a token"
            )
    if not opened:
        return Result.skipped(f"the token opened none of {candidates_tried(ctx)}")
    return Result.passed(join_evidence(*(ex.describe(["www-authenticate"]) for ex in opened)))


@check(
    id="auth.invalid-token",
    title="A malformed bearer token is refused with 401",
    category="auth",
    severity="high",
    references=(f"{RFC}/rfc6750#section-3.1",),
    remediation='Answer 401 with `WWW-Authenticate: Bearer error="invalid_token"` for any token '
    "that does not verify.",
    max_requests=8,
    needs_token=True,
)
async def invalid_token(ctx: ScanContext) -> Result:
    """A junk bearer value must not pass (some stacks only check that the header exists) and
    must be a 401, not a 500 from a parser exception."""
    resource = await find_token_resource(ctx)
    if resource is None:
        return Result.skipped(no_token_resource(ctx))
    ex = await ctx.fetch(
        "GET",
        resource.path,
        headers={"Authorization": f"Bearer {GARBAGE_TOKEN}"},
        extra_headers=ANONYMOUS,
    )
    evidence = ex.describe(["www-authenticate"])
    if 200 <= ex.status < 300:
        return Result.failed(evidence, "a junk token was accepted")
    if ex.status != 401:
        return Result.failed(evidence, f"a junk token got {ex.status}, not 401")
    return Result.passed(evidence)


# --- active login probes (shared with ratelimit) -------------------------------------------
_VOLATILE = re.compile(
    r'"(requestId|request_id|timestamp|time|traceId)"\s*:\s*"[^"]*"|'
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|"
    r"\d{4}-\d{2}-\d{2}T[\d:.]+Z?"
)


def normalised(ex: Exchange) -> str:
    """A body with request ids, UUIDs and timestamps blanked (they differ on every call)."""
    return _VOLATILE.sub("<volatile>", ex.text)


def login_body(email: str) -> bytes:
    # A wrong password by construction: the probe must never log anyone in.
    return json.dumps({"email": email, "password": "Bastion-scan-wrong-password-1"}).encode()


async def enumeration_pair(ctx: ScanContext) -> tuple[str, Exchange, Exchange] | None:
    """Two failed logins: an address that cannot exist and an existing one: the account the
    user named with ``--login-email``, else a likely one (admin@<host>). Memoised; sent
    before any burst so the rate limiter has not kicked in yet."""

    async def probe() -> tuple[str, Exchange, Exchange] | None:
        path = await find_login(ctx)
        if path is None:
            return None
        headers = {"Content-Type": "application/json"}
        unknown = f"bastion-scan-{secrets.token_hex(6)}@example.invalid"
        domain = ctx.host if "." in ctx.host and not ctx.host[0].isdigit() else "example.com"
        likely = ctx.options.login_email or f"admin@{domain}"
        a = await ctx.request(
            "POST", path, headers=headers, content=login_body(unknown), extra_headers=ANONYMOUS
        )
        b = await ctx.request(
            "POST", path, headers=headers, content=login_body(likely), extra_headers=ANONYMOUS
        )
        return path, a, b

    return await ctx.memo("enumeration-pair", probe)


@check(
    id="auth.user-enumeration",
    title="Login failures do not reveal which accounts exist",
    category="auth",
    severity="high",
    references=(WSTG_ENUM,),
    remediation='Answer every failed login identically (`401 {"error": "Invalid email or '
    'password"}`), whether the account exists or not.',
    max_requests=7,
    active=True,
)
async def user_enumeration(ctx: ScanContext) -> Result:
    """Different status codes or messages for unknown vs existing accounts let an attacker
    list users, then spray passwords at them. Compares an impossible address with a known
    account (`--login-email`; without it a likely one, `admin@<host>`, which proves nothing
    when it does not exist); request ids, UUIDs and timestamps are ignored."""
    pair = await enumeration_pair(ctx)
    if pair is None:
        return Result.skipped("no login endpoint found")
    _, unknown, likely = pair
    evidence = join_evidence(unknown.describe((), body=True), likely.describe((), body=True))
    if 429 in (unknown.status, likely.status):
        return Result.skipped("the login endpoint was already rate-limited", evidence)
    if unknown.status != likely.status:
        return Result.failed(evidence, f"status {unknown.status} vs {likely.status}")
    if normalised(unknown) != normalised(likely):
        return Result.failed(evidence, "the failure bodies differ")
    if not ctx.options.login_email:
        return Result.passed(
            evidence, "compared with a guessed account; --login-email names a real one"
        )
    return Result.passed(evidence)
