"""Helpers shared by the controls: header and cookie parsing, leak signatures, discovery.

Discovery results (which path is protected, where the login endpoint is) are memoised per scan
with :meth:`ScanContext.memo`, so controls that need them share the same few requests.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from bastion.scanner.context import ANONYMOUS, ScanContext
from bastion.scanner.evidence import Exchange
from bastion.scanner.redaction import Redactor

# --- references (one source per control; these are the ones used most) -------------------
OWASP_HEADERS = "https://cheatsheetseries.owasp.org/cheatsheets/HTTP_Headers_Cheat_Sheet.html"
OWASP_REST = "https://cheatsheetseries.owasp.org/cheatsheets/REST_Security_Cheat_Sheet.html"
OWASP_API8 = "https://owasp.org/API-Security/editions/2023/en/0xa8-security-misconfiguration/"
OWASP_API2 = "https://owasp.org/API-Security/editions/2023/en/0xa2-broken-authentication/"
OWASP_API4 = (
    "https://owasp.org/API-Security/editions/2023/en/0xa4-unrestricted-resource-consumption/"
)
OWASP_API9 = "https://owasp.org/API-Security/editions/2023/en/0xa9-improper-inventory-management/"
WSTG = "https://owasp.org/www-project-web-security-testing-guide/latest/4-Web_Application_Security_Testing"
MDN_HEADERS = "https://developer.mozilla.org/en-US/docs/Web/HTTP/Reference/Headers"
OBSERVATORY = "https://developer.mozilla.org/en-US/observatory/docs/tests_and_scoring"
RFC = "https://www.rfc-editor.org/rfc"


# --- header parsing ------------------------------------------------------------------------
def directives(value: str | None, sep: str = ";") -> dict[str, str]:
    """``max-age=1; includeSubDomains`` -> ``{"max-age": "1", "includesubdomains": ""}``.

    Names are lower-cased; a repeated directive keeps the first value (RFC 6797 §6.1 makes
    repeats invalid; :func:`repeated_directives` reports them).
    """
    result: dict[str, str] = {}
    for part in (value or "").split(sep):
        name, _, arg = part.strip().partition("=")
        name = name.strip().lower()
        if name and name not in result:
            result[name] = arg.strip().strip('"')
    return result


def repeated_directives(value: str, sep: str = ";") -> list[str]:
    seen: list[str] = []
    repeated: list[str] = []
    for part in value.split(sep):
        name = part.strip().partition("=")[0].strip().lower()
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.append(name)
    return repeated


def csp_directives(value: str) -> dict[str, list[str]]:
    """CSP ``default-src 'none'; frame-ancestors 'none'`` -> directive name -> source list."""
    result: dict[str, list[str]] = {}
    for part in value.split(";"):
        tokens = part.split()
        if tokens and tokens[0].lower() not in result:
            result[tokens[0].lower()] = [t.lower() for t in tokens[1:]]
    return result


def list_tokens(value: str | None) -> list[str]:
    """Comma-separated header tokens, lower-cased (``Vary``, ``Allow``, ``Access-Control-*``)."""
    return [t.strip().lower() for t in (value or "").split(",") if t.strip()]


# --- cookies -------------------------------------------------------------------------------
_SESSION_WORDS = ("sess", "sid", "token", "auth", "login", "jwt", "refresh", "remember")


@dataclass(frozen=True)
class Cookie:
    """One ``Set-Cookie`` as the browser would read its attributes (RFC 6265 §5.2)."""

    name: str
    attributes: dict[str, str]
    flags: frozenset[str]
    source: str  # "GET https://... -> 200": which response set it

    @property
    def secure(self) -> bool:
        return "secure" in self.flags

    @property
    def httponly(self) -> bool:
        return "httponly" in self.flags

    @property
    def samesite(self) -> str | None:
        return self.attributes.get("samesite")

    @property
    def looks_like_session(self) -> bool:
        """Credential-bearing by name (the Observatory uses 'sess'/'login'; we add token words)."""
        name = self.name.lower()
        return any(word in name for word in _SESSION_WORDS)

    def describe(self) -> str:
        attrs = [f"{k}={v}" for k, v in self.attributes.items()]
        attrs += sorted(self.flags)
        return f"{self.name}=<redacted>; {'; '.join(attrs)}  (from {self.source})"


def parse_set_cookie(value: str, source: str) -> Cookie:
    first, *rest = value.split(";")
    name = first.split("=", 1)[0].strip()
    attributes: dict[str, str] = {}
    flags: set[str] = set()
    for part in rest:
        key, sep, arg = part.strip().partition("=")
        key = key.strip().lower()
        if not key:
            continue
        if sep:
            attributes.setdefault(key, arg.strip().lower() if key == "samesite" else arg.strip())
        else:
            flags.add(key)
    return Cookie(name, attributes, frozenset(flags), source)


async def seen_cookies(ctx: ScanContext) -> list[Cookie]:
    """Cookies set by the responses every scan fetches anyway (baseline with its redirect
    hops, the 404 probe). Passive: no login is attempted."""

    async def collect() -> list[Cookie]:
        exchanges: list[Exchange] = []
        baseline = await ctx.baseline()
        exchanges += [*baseline.history, baseline, await ctx.not_found()]
        cookies: dict[str, Cookie] = {}
        for ex in exchanges:
            for value in ex.header_list("set-cookie"):
                cookie = parse_set_cookie(value, ex.summary)
                cookies.setdefault(cookie.name, cookie)
        return list(cookies.values())

    return await ctx.memo("cookies", collect)


# --- leak signatures -----------------------------------------------------------------------
STACK_TRACE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "Python traceback",
        re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+"),
    ),
    (
        "Java stack trace",
        re.compile(r"\bat [a-z][\w$]*(\.[\w$]+)+\([\w$]+\.java:\d+\)|java\.lang\.\w+Exception"),
    ),
    (".NET stack trace", re.compile(r"System\.\w+Exception|at [\w.]+\(\) in [^\n]+:line \d+")),
    (
        "Node.js stack trace",
        re.compile(r"\n\s+at [^\n]+\((?:/|[A-Z]:\\)[^\n]+:\d+:\d+\)|node_modules/"),
    ),
    ("Go panic", re.compile(r"goroutine \d+ \[running\]|panic: runtime error")),
    (
        "PHP error",
        re.compile(
            r"(?:Fatal error|Warning|Parse error)</b>:? .+ on line <b>\d+|Stack trace:\s*#0"
        ),
    ),
    ("Ruby backtrace", re.compile(r"\.rb:\d+:in `")),
)
DEBUG_PAGE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "Werkzeug debugger",
        re.compile(r"Werkzeug Debugger|__debugger__|The debugger caught an exception"),
    ),
    (
        "Django DEBUG page",
        re.compile(
            r"You're seeing this error because you have <code>DEBUG = True|DEBUG = True</code>"
        ),
    ),
    (
        "Laravel Ignition / Whoops",
        re.compile(r"Whoops, looks like something went wrong|ignition-|Illuminate\\\\"),
    ),
    ("Symfony debug", re.compile(r"Symfony\\\\Component\\\\|sf-toolbar|_profiler/")),
    ("Rails debug", re.compile(r"Action Controller: Exception caught")),
    (
        "Starlette/FastAPI debug",
        re.compile(r"<title>Starlette Debugger</title>|starlette/middleware/errors\.py"),
    ),
    ("ASP.NET YSOD", re.compile(r"Server Error in '/' Application|<!-- \[\w+Exception\]")),
    ("Express dev error", re.compile(r"<pre>\w*Error: [^<]*<br> &nbsp; &nbsp;at ")),
)
FRAMEWORK_PAGE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Spring Whitelabel page", re.compile(r"Whitelabel Error Page")),
    (
        "Express default page",
        re.compile(r"<pre>Cannot (?:GET|POST|PUT|DELETE|PATCH|OPTIONS|TRACE) /"),
    ),
    ("nginx default page", re.compile(r"<center>nginx(?:/[\d.]+)?</center>")),
    ("Apache default page", re.compile(r"<address>Apache(?:/[\d.]+)? .*Server at")),
    (
        "Werkzeug/Flask default page",
        re.compile(
            r"The requested URL was not found on the server\. If you entered the URL manually"
        ),
    ),
    (
        "Django default page",
        re.compile(
            r"<h1>Not Found</h1><p>The requested resource was not found on this server\.</p>"
        ),
    ),
    ("IIS default page", re.compile(r"IIS \d+\.\d+ Detailed Error|Microsoft-IIS")),
    ("Tomcat default page", re.compile(r"Apache Tomcat/[\d.]+")),
    ("Jetty default page", re.compile(r"Powered by Jetty")),
    ("Express body-parser", re.compile(r"SyntaxError: Unexpected token .* in JSON at position")),
)
INTERNAL_DETAIL_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "SQL error",
        re.compile(
            r"(?i)SQLSTATE\[|syntax error at or near|ORA-\d{5}|sqlite3\.\w+Error|"
            r"psycopg2?\.\w+|asyncpg\.exceptions|You have an error in your SQL syntax|"
            r"sqlalchemy\.exc\."
        ),
    ),
    (
        "file path",
        re.compile(
            r"(?:/home/\w+|/usr/(?:local/)?lib/python3|/var/www/|/opt/\w+/|"
            r"/site-packages/|[A-Z]:\\\\(?:Users|inetpub|Program Files))"
        ),
    ),
    (
        "private address",
        re.compile(r"\b(?:10\.\d{1,3}|192\.168|172\.(?:1[6-9]|2\d|3[01]))\.\d{1,3}\.\d{1,3}\b"),
    ),
    (
        "exception class",
        re.compile(
            r"\b(?:ValueError|KeyError|TypeError|AttributeError|"
            r"IntegrityError|NullPointerException|JSONDecodeError|"
            r"pydantic_core|ValidationError:)\b"
        ),
    ),
)


SIGNATURE_EXCERPT = 120


def find_signatures(
    text: str, patterns: tuple[tuple[str, re.Pattern[str]], ...], redactor: Redactor
) -> list[tuple[str, str]]:
    """``(label, matched excerpt)`` for each pattern found in ``text``; the excerpt is masked
    before it is cut (a cut first could leave part of a secret the match contained)."""
    found = []
    for label, pattern in patterns:
        match = pattern.search(text)
        if match:
            found.append((label, redactor.excerpt(match.group(0), SIGNATURE_EXCERPT)))
    return found


def response_text(ex: Exchange) -> str:
    """Headers and body as one text (leaks hide in both)."""
    headers = "\n".join(f"{k}: {v}" for k, v in ex.headers.multi_items())
    return headers + "\n\n" + ex.text


# --- content judging -----------------------------------------------------------------------
def is_catch_all(ex: Exchange, not_found: Exchange) -> bool:
    """True when ``ex`` is the server's answer to *anything* (an SPA fallback or a soft 404).

    Exposure controls judge by content; this guards the weaker signatures: if a random path
    gets the same 2xx body, the body says nothing about the probed file.
    """
    if not 200 <= not_found.status < 300:
        return False
    return ex.status == not_found.status and ex.body[:4096] == not_found.body[:4096]


def ok_body(ex: Exchange) -> bool:
    """A 2xx with a body: the only answer worth judging for file exposure."""
    return 200 <= ex.status < 300 and bool(ex.body.strip())


# --- discovery (memoised per scan) ---------------------------------------------------------
PROTECTED_CANDIDATES = (
    "/api/v1/me",
    "/api/me",
    "/me",
    "/api/v1/users/me",
    "/api/user",
    "/userinfo",
)
LOGIN_CANDIDATES = (
    "/api/v1/auth/login",
    "/api/auth/login",
    "/auth/login",
    "/api/login",
    "/login",
)


@dataclass
class Protected:
    """A path that refuses anonymous requests (401/403), with the anonymous exchange and, when
    ``--token`` was given, the exchange that the token made succeed."""

    path: str
    anonymous: Exchange
    with_token: Exchange | None = None


def _candidates(ctx: ScanContext, *, target: bool = True) -> list[str]:
    """The target itself, then each "who am I" path under the target's path prefix (an API
    mounted at ``/svc/api/v1`` serves ``/svc/api/v1/me``), then at shorter prefixes."""
    others = prefixed(ctx, PROTECTED_CANDIDATES)
    others = [p for p in others if ctx.url(p) != ctx.url("")]
    return ([""] if target else []) + others


def prefixed(ctx: ScanContext, paths: tuple[str, ...]) -> list[str]:
    """``paths`` under the target's prefix first (all of them), then under shorter ones."""
    levels: list[list[str]] = []
    for path in paths:
        for i, where in enumerate(ctx.under_prefix(path)):
            while len(levels) <= i:
                levels.append([])
            levels[i].append(where)
    found: list[str] = []
    for level in levels:
        found += [p for p in level if p not in found]
    return found


async def find_protected(ctx: ScanContext) -> Protected | None:
    """The first path (the target itself, then common "who am I" paths) that answers 401/403
    to an anonymous request. Anonymous probes never carry the user's ``--header`` values."""

    async def discover() -> Protected | None:
        for path in _candidates(ctx):
            anonymous = await ctx.fetch("GET", path, extra_headers=ANONYMOUS)
            if anonymous.status in (401, 403):
                return Protected(path, anonymous)
        return None

    return await ctx.memo("protected", discover)


async def find_token_resource(ctx: ScanContext) -> Protected | None:
    """With ``--token``: the first candidate path that refuses anonymous requests (401/403)
    and answers 2xx with the token: the place where a forged token's acceptance means
    something. None without a token or when no path behaves so."""

    async def discover() -> Protected | None:
        if not ctx.options.token:
            return None
        for path in _candidates(ctx):
            anonymous = await ctx.fetch("GET", path, extra_headers=ANONYMOUS)
            if anonymous.status not in (401, 403):
                continue
            authed = await ctx.fetch(
                "GET", path, headers=ctx.auth_headers(), extra_headers=ANONYMOUS
            )
            if 200 <= authed.status < 300:
                return Protected(path, anonymous, authed)
        return None

    return await ctx.memo("token-resource", discover)


def candidates_tried(ctx: ScanContext) -> str:
    return ", ".join(ctx.url(p) for p in _candidates(ctx))


def no_token_resource(ctx: ScanContext) -> str:
    """Why a token control could not run."""
    return (
        "no path both refuses anonymous requests and accepts the token "
        f"(tried {candidates_tried(ctx)})"
    )


async def find_login(ctx: ScanContext) -> str | None:
    """The first login-looking path that exists (answers neither 404 nor 5xx to GET)."""

    async def discover() -> str | None:
        for path in prefixed(ctx, LOGIN_CANDIDATES):
            ex = await ctx.fetch("GET", path, extra_headers=ANONYMOUS)
            if ex.status != 404 and ex.status < 500:
                return path
        return None

    return await ctx.memo("login", discover)


# --- JWT helpers ---------------------------------------------------------------------------
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str] | None:
    """Header, payload and signature of a compact JWS, or None when it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(b64url_decode(parts[0]))
        payload = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return None
    return header, payload, parts[2]


def encode_segment(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


# --- shared probes -------------------------------------------------------------------------
TRACE_MARKER = ("X-Bastion-Scan-Trace", "bastion-trace-7f3a9c")


async def trace(ctx: ScanContext, method: str = "TRACE") -> Exchange:
    """``TRACE /`` (or TRACK) with a marker header an echoing server would reflect."""
    return await ctx.fetch(method, "/", headers=dict([TRACE_MARKER]), extra_headers=ANONYMOUS)
