"""Cookie attributes: Secure, HttpOnly, SameSite, scope, prefixes and lifetime.

Cookies are collected passively from the responses the scan fetches anyway (the target with
its redirects, the 404 probe); when none is set every control here is skipped, not passed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from bastion.scanner.check import Result, check
from bastion.scanner.checks._util import OBSERVATORY, Cookie, seen_cookies
from bastion.scanner.context import ScanContext

MDN_COOKIES = "https://developer.mozilla.org/en-US/docs/Web/HTTP/Guides/Cookies"
RFC6265BIS = "https://datatracker.ietf.org/doc/html/draft-ietf-httpbis-rfc6265bis"
NO_COOKIE = "no cookie was set by the responses seen"


def _verdict(cookies: list[Cookie], bad: list[tuple[Cookie, str]], *, warn: bool = False) -> Result:
    evidence = "\n".join(c.describe() for c in cookies)
    if not bad:
        return Result.passed(evidence)
    reason = "; ".join(f"{c.name}: {why}" for c, why in bad)
    return Result.warned(evidence, reason) if warn else Result.failed(evidence, reason)


@check(
    id="cookies.secure",
    title="Cookies set over HTTPS are Secure",
    category="cookies",
    severity="high",
    references=(f"{OBSERVATORY}#cookies",),
    remediation="Add the `Secure` attribute to every cookie.",
    max_requests=2,
)
async def secure(ctx: ScanContext) -> Result:
    """A cookie without Secure is sent over plain HTTP too, where anyone on the path reads
    it (the Observatory deducts 40 points for a session cookie without it)."""
    cookies = await seen_cookies(ctx)
    if not cookies:
        return Result.skipped(NO_COOKIE)
    return _verdict(cookies, [(c, "no Secure") for c in cookies if not c.secure])


@check(
    id="cookies.httponly",
    title="Credential cookies are HttpOnly",
    category="cookies",
    severity="medium",
    references=(f"{OBSERVATORY}#cookies",),
    remediation="Add `HttpOnly` to session, token and refresh cookies.",
    max_requests=2,
)
async def httponly(ctx: ScanContext) -> Result:
    """A script injected anywhere on the origin can read a session cookie without HttpOnly.
    Judged on cookies whose names look like credentials (sess, token, auth, sid, ...)."""
    cookies = await seen_cookies(ctx)
    if not cookies:
        return Result.skipped(NO_COOKIE)
    return _verdict(
        cookies,
        [
            (c, "credential cookie without HttpOnly")
            for c in cookies
            if c.looks_like_session and not c.httponly
        ],
    )


@check(
    id="cookies.samesite",
    title="Cookies set SameSite=Strict or Lax",
    category="cookies",
    severity="medium",
    references=(f"{RFC6265BIS}#section-5.6.7",),
    remediation="Set `SameSite=Strict` (or Lax) on every cookie.",
    max_requests=2,
)
async def samesite(ctx: ScanContext) -> Result:
    """SameSite keeps cookies off cross-site requests (CSRF). `None` sends them everywhere;
    an unknown value is treated by browsers as absent; absent relies on browser defaults that
    differ (warn)."""
    cookies = await seen_cookies(ctx)
    if not cookies:
        return Result.skipped(NO_COOKIE)
    bad = []
    warn = []
    for c in cookies:
        value = c.samesite
        if value == "none":
            bad.append((c, "SameSite=None"))
        elif value is not None and value not in {"strict", "lax"}:
            bad.append((c, f"invalid SameSite={value}"))
        elif value is None:
            warn.append((c, "no SameSite"))
    if bad:
        return _verdict(cookies, bad + warn)
    return _verdict(cookies, warn, warn=True)


@check(
    id="cookies.scope",
    title="Credential cookies are narrowly scoped (host-only, narrow Path)",
    category="cookies",
    severity="low",
    references=(f"{MDN_COOKIES}#define_where_cookies_are_sent",),
    remediation="Omit `Domain` (host-only cookie); give refresh cookies the narrowest `Path` "
    "(e.g. `Path=/api/v1/auth`).",
    max_requests=2,
)
async def scope(ctx: ScanContext) -> Result:
    """A Domain attribute shares the cookie with every subdomain (one compromised subdomain
    reads it); a refresh token with `Path=/` rides along on every request instead of only to
    the endpoint that needs it."""
    cookies = await seen_cookies(ctx)
    if not cookies:
        return Result.skipped(NO_COOKIE)
    bad = []
    for c in cookies:
        domain = c.attributes.get("domain", "").lstrip(".").lower()
        if domain and domain != ctx.host.lower():
            bad.append((c, f"Domain={domain} shares it with other hosts"))
        elif domain and c.looks_like_session:
            bad.append((c, f"Domain={domain} also sends it to every subdomain"))
        if "refresh" in c.name.lower() and c.attributes.get("path", "/") == "/":
            bad.append((c, "refresh cookie sent on every path"))
    return _verdict(cookies, bad)


@check(
    id="cookies.prefix",
    title="Cookie name prefixes (__Host-, __Secure-) are used and valid",
    category="cookies",
    severity="low",
    references=(f"{RFC6265BIS}#section-4.1.3",),
    remediation="Name credential cookies `__Host-...` (Secure, Path=/, no Domain) or "
    "`__Secure-...` (Secure), so a sibling subdomain or plain-HTTP page cannot overwrite them.",
    max_requests=2,
)
async def prefix(ctx: ScanContext) -> Result:
    """Prefixed cookies are rejected by browsers unless their rules hold, so a broken prefix
    fails (the cookie is silently dropped); an unprefixed credential cookie is a warning,
    since without a prefix it can be planted from a sibling subdomain (cookie tossing)."""
    cookies = await seen_cookies(ctx)
    if not cookies:
        return Result.skipped(NO_COOKIE)
    bad = []
    unprefixed = []
    for c in cookies:
        name = c.name
        if name.startswith("__Host-"):
            if not c.secure or c.attributes.get("path") != "/" or "domain" in c.attributes:
                bad.append((c, "__Host- needs Secure, Path=/ and no Domain"))
        elif name.startswith("__Secure-"):
            if not c.secure:
                bad.append((c, "__Secure- needs Secure"))
        elif c.looks_like_session:
            unprefixed.append((c, "credential cookie without __Host-/__Secure- prefix"))
    if bad:
        return _verdict(cookies, bad)
    return _verdict(cookies, unprefixed, warn=True)


MAX_CREDENTIAL_LIFETIME_S = 30 * 24 * 3600


def _lifetime(cookie: Cookie, now: datetime) -> float | None:
    max_age = cookie.attributes.get("max-age")
    if max_age is not None:
        try:
            return float(max_age)
        except ValueError:
            return None
    expires = cookie.attributes.get("expires")
    if expires:
        try:
            return (parsedate_to_datetime(expires) - now).total_seconds()
        except (TypeError, ValueError):
            return None
    return None  # a session cookie: gone when the browser closes


@check(
    id="cookies.lifetime",
    title="Credential cookies do not live longer than 30 days",
    category="cookies",
    severity="low",
    references=(
        "https://cheatsheetseries.owasp.org/cheatsheets/Session_Management_Cheat_Sheet.html",
    ),
    remediation="Keep credential cookies short-lived (the refresh token's lifetime, e.g. 7 "
    "days), and rotate them.",
    max_requests=2,
)
async def lifetime(ctx: ScanContext) -> Result:
    """A stolen long-lived credential cookie stays useful for months; OWASP's session
    guidance asks for short absolute timeouts."""
    cookies = await seen_cookies(ctx)
    if not cookies:
        return Result.skipped(NO_COOKIE)
    now = datetime.now(UTC)
    bad = []
    for c in cookies:
        seconds = _lifetime(c, now)
        if c.looks_like_session and seconds is not None and seconds > MAX_CREDENTIAL_LIFETIME_S:
            bad.append((c, f"lives {seconds / 86400:.0f} days"))
    return _verdict(cookies, bad, warn=True)
