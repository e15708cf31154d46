"""Exposed files and endpoints, judged by CONTENT, never by status alone.

Each probe path has a signature of what the real file looks like (``ref: refs/`` for
``.git/HEAD``, ``KEY=value`` lines for ``.env``, magic bytes for archives and databases, JSON
keys for specs and actuators). A server that answers 200 to everything (an SPA fallback, a
soft 404) is recognised by comparing with the 404 probe, so it is not a false positive.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from bastion.scanner.check import Result, check
from bastion.scanner.checks._util import OWASP_API8, OWASP_API9, WSTG, is_catch_all, ok_body
from bastion.scanner.context import ScanContext
from bastion.scanner.documents import DocumentError, openapi_operations
from bastion.scanner.evidence import Exchange, join_evidence

WSTG_BACKUPS = (
    f"{WSTG}/02-Configuration_and_Deployment_Management_Testing/"
    "04-Review_Old_Backup_and_Unreferenced_Files_for_Sensitive_Information"
)
WSTG_ADMIN = (
    f"{WSTG}/02-Configuration_and_Deployment_Management_Testing/"
    "05-Enumerate_Infrastructure_and_Application_Admin_Interfaces"
)
ZAP = "https://www.zaproxy.org/docs/alerts"

Matcher = Callable[[Exchange], bool]


def _text_re(pattern: str, flags: int = 0) -> Matcher:
    compiled = re.compile(pattern, flags)

    def match(ex: Exchange) -> bool:
        return not ex.is_html and bool(compiled.search(ex.text))

    return match


def _html_re(pattern: str) -> Matcher:
    compiled = re.compile(pattern, re.IGNORECASE)
    return lambda ex: bool(compiled.search(ex.text))


def _magic(prefix: bytes) -> Matcher:
    return lambda ex: ex.body.startswith(prefix)


def _json_keys(*keys: str, any_of: bool = False) -> Matcher:
    def match(ex: Exchange) -> bool:
        data = ex.json()
        if data is None and ex.json_problem.startswith("JSON nested"):
            # Not judged as "absent": a document built to break parsers is reported.
            raise DocumentError(ex.json_problem)
        if not isinstance(data, dict):
            return False
        found = [k in data for k in keys]
        return any(found) if any_of else all(found)

    return match


@dataclass(frozen=True)
class Probe:
    path: str
    matcher: Matcher
    what: str
    method: str = "GET"
    body: bytes | None = None


Describe = Callable[[Exchange], str]


async def _run(
    ctx: ScanContext, probes: Sequence[Probe], describe: Describe | None = None
) -> Result:
    """Fetch each probe path; a 2xx whose content matches the signature (and is not the
    server's catch-all answer) is an exposure. A document built to break parsers (JSON nested
    thousands deep) is neither a match nor a pass: it is a warning naming the problem.
    ``describe`` adds a line about each exposed document to the reason."""
    not_found = await ctx.not_found()
    found: list[tuple[Probe, Exchange]] = []
    hostile: list[tuple[Probe, Exchange, str]] = []
    seen: list[Exchange] = []
    for probe in probes:
        headers = {"Content-Type": "application/json"} if probe.body is not None else None
        try:
            ex = await ctx.fetch(probe.method, probe.path, headers=headers, content=probe.body)
        except httpx.HTTPError:
            continue
        seen.append(ex)
        if not ok_body(ex) or is_catch_all(ex, not_found):
            continue
        try:
            if probe.matcher(ex):
                found.append((probe, ex))
        except DocumentError as exc:
            hostile.append((probe, ex, str(exc)))
    if found:
        evidence = join_evidence(*(ex.describe(["content-type"], body=True) for _, ex in found))
        reasons = [
            f"{p.what} at {p.path}" + (f" ({describe(ex)})" if describe else "") for p, ex in found
        ]
        reasons += [f"{p.path}: {problem}" for p, _, problem in hostile]
        return Result.failed(evidence, "; ".join(reasons))
    if hostile:
        evidence = join_evidence(*(ex.describe(["content-type"]) for _, ex, _ in hostile))
        reason = "; ".join(
            f"{p.path} serves a document that cannot be read safely: {problem}"
            for p, _, problem in hostile
        )
        return Result.warned(evidence, reason)
    if not seen:
        return Result.errored("no probe got a response")
    summary = "\n".join(f"{ex.summary}" for ex in seen)
    return Result.passed(summary)


@check(
    id="exposure.git",
    title="No Git repository exposed",
    category="exposure",
    severity="high",
    references=(f"{ZAP}/40035/",),
    remediation="Never deploy the .git directory; deny /.git* at the proxy.",
    max_requests=4,
)
async def git(ctx: ScanContext) -> Result:
    """An exposed .git directory lets anyone download the full source and history, secrets
    committed once included (git-dumper)."""
    return await _run(
        ctx,
        [
            Probe("/.git/HEAD", _text_re(r"^(ref: refs/|[0-9a-f]{40}\s*$)"), ".git/HEAD"),
            Probe("/.git/config", _text_re(r"\[core\]"), ".git/config"),
        ],
    )


_ENV_LINES = re.compile(r"^\s*(export\s+)?[A-Z][A-Z0-9_]{1,}\s*=", re.MULTILINE)


def _env_file(ex: Exchange) -> bool:
    return not ex.is_html and ex.json() is None and len(_ENV_LINES.findall(ex.text)) >= 2


@check(
    id="exposure.env",
    title="No .env file exposed",
    category="exposure",
    severity="critical",
    references=(f"{ZAP}/40034/",),
    remediation="Keep .env files out of the web root and the image; deny /.env* at the proxy; "
    "rotate every secret that was exposed.",
    max_requests=4,
)
async def env(ctx: ScanContext) -> Result:
    """.env files hold database passwords, API keys and signing secrets: one GET away from a
    full compromise (nuclei generic-env is rated high, ZAP 40034)."""
    return await _run(
        ctx,
        [
            Probe("/.env", _env_file, ".env file"),
            Probe("/.env.local", _env_file, ".env file"),
            Probe("/.env.production", _env_file, ".env file"),
        ],
    )


@check(
    id="exposure.vcs-artifacts",
    title="No other VCS or OS artefacts exposed (.svn, .hg, .DS_Store, .idea)",
    category="exposure",
    severity="medium",
    references=(f"{ZAP}/40035/",),
    remediation="Exclude dotfiles from deployments and deny them at the proxy.",
    max_requests=5,
)
async def vcs_artifacts(ctx: ScanContext) -> Result:
    """.DS_Store lists directory contents, .svn/.hg leak source, .idea leaks paths and run
    configurations (often with credentials)."""
    return await _run(
        ctx,
        [
            Probe("/.DS_Store", _magic(b"\x00\x00\x00\x01Bud1"), ".DS_Store"),
            Probe("/.svn/entries", _text_re(r"^(\d+\s*$|dir\s*$)", re.MULTILINE), ".svn"),
            Probe("/.hg/requires", _text_re(r"revlogv1|store|fncache"), ".hg"),
            Probe("/.idea/workspace.xml", _text_re(r"<project version="), ".idea"),
        ],
    )


_SQL_DUMP = _text_re(r"(?i)(CREATE TABLE|INSERT INTO|-- (MySQL|PostgreSQL) database dump)")


@check(
    id="exposure.backups",
    title="No backup or dump files exposed",
    category="exposure",
    severity="high",
    references=(WSTG_BACKUPS,),
    remediation="Never store backups under the web root; deny archive and dump extensions.",
    max_requests=7,
)
async def backups(ctx: ScanContext) -> Result:
    """Backups and database dumps contain the data itself (password hashes, tokens) and the
    source (ZAP 10095)."""
    return await _run(
        ctx,
        [
            Probe("/backup.zip", _magic(b"PK\x03\x04"), "ZIP archive"),
            Probe("/backup.tar.gz", _magic(b"\x1f\x8b"), "gzip archive"),
            Probe("/backup.sql", _SQL_DUMP, "SQL dump"),
            Probe("/dump.sql", _SQL_DUMP, "SQL dump"),
            Probe("/db.sqlite", _magic(b"SQLite format 3\x00"), "SQLite database"),
            Probe("/database.sqlite3", _magic(b"SQLite format 3\x00"), "SQLite database"),
        ],
    )


_SECRET_KEYS = re.compile(
    r"(?i)(password|passwd|secret|api[_-]?key|_authToken|aws_secret_access_key|"
    r"connectionstrings?|database_url|private[_-]?key)"
)


def _config(structure: str) -> Matcher:
    pattern = re.compile(structure)

    def match(ex: Exchange) -> bool:
        return (
            not ex.is_html and bool(pattern.search(ex.text)) and bool(_SECRET_KEYS.search(ex.text))
        )

    return match


@check(
    id="exposure.config-files",
    title="No configuration or credential files exposed",
    category="exposure",
    severity="high",
    references=(OWASP_API8,),
    remediation="Keep configuration outside the web root; serve only the API's routes.",
    max_requests=7,
)
async def config_files(ctx: ScanContext) -> Result:
    """Configuration files (appsettings.json, config.json, .npmrc, docker-compose.yml,
    bastion.toml, AWS credentials) carry connection strings and keys. Judged by structure plus
    a secret-looking key, so a public config.json of feature flags is not flagged."""
    return await _run(
        ctx,
        [
            Probe("/config.json", _config(r"^\s*\{"), "config.json"),
            Probe("/appsettings.json", _config(r'"(ConnectionStrings|Logging)"'), "appsettings"),
            Probe("/.npmrc", _config(r"_authToken|registry="), ".npmrc"),
            Probe("/docker-compose.yml", _config(r"(?m)^services:"), "docker-compose.yml"),
            Probe("/bastion.toml", _config(r"(?m)^\s*\w+\s*=\s*"), "bastion.toml"),
            Probe("/.aws/credentials", _config(r"\[default\]"), "AWS credentials"),
        ],
    )


_OPENAPI = _json_keys("openapi", "swagger", any_of=True)


def _operations(ex: Exchange) -> str:
    """How much of the API the document maps, read without trusting it: path-item ``$ref``
    chains are followed with loop detection (a malformed document is said to be so)."""
    try:
        operations = openapi_operations(ex.json())
    except DocumentError as exc:
        return f"malformed: {exc}"
    return f"{len(operations)} operations"


@check(
    id="exposure.openapi",
    title="No public OpenAPI/Swagger document",
    category="exposure",
    severity="low",
    references=(OWASP_API9,),
    remediation="Serve the API description only where it is meant to be public (or behind "
    "authentication); BASTION_EXPOSE_DOCS=false in production.",
    max_requests=6,
)
async def openapi(ctx: ScanContext) -> Result:
    """A public spec maps every route, parameter and often internal endpoints (OWASP API9,
    improper inventory). It is not a vulnerability on a public API, so it costs little, but
    it must be a decision."""
    return await _run(
        ctx,
        [
            Probe("/openapi.json", _OPENAPI, "OpenAPI document"),
            Probe("/swagger.json", _OPENAPI, "Swagger document"),
            Probe("/v3/api-docs", _OPENAPI, "OpenAPI document"),
            Probe("/v2/api-docs", _OPENAPI, "Swagger document"),
            Probe("/api-docs", _OPENAPI, "OpenAPI document"),
        ],
        describe=_operations,
    )


_DOCS_UI = _html_re(r"swagger-ui|redoc|graphiql|graphql-playground|<title>[^<]*API docs")


@check(
    id="exposure.docs-ui",
    title="No interactive API console in production",
    category="exposure",
    severity="low",
    references=(OWASP_API9,),
    remediation="Disable /docs, Swagger UI and ReDoc in production.",
    max_requests=6,
)
async def docs_ui(ctx: ScanContext) -> Result:
    """Interactive consoles invite exploration of every route with a browser, and load
    third-party script from CDNs."""
    return await _run(
        ctx,
        [
            Probe("/docs", _DOCS_UI, "API console"),
            Probe("/swagger", _DOCS_UI, "Swagger UI"),
            Probe("/swagger-ui/", _DOCS_UI, "Swagger UI"),
            Probe("/swagger-ui.html", _DOCS_UI, "Swagger UI"),
            Probe("/redoc", _DOCS_UI, "ReDoc"),
        ],
    )


_INTROSPECTION = b'{"query":"query{__schema{queryType{name}}}"}'


def _graphql_schema(ex: Exchange) -> bool:
    data = ex.json()
    return (
        isinstance(data, dict)
        and isinstance(data.get("data"), dict)
        and ("__schema" in data["data"])
    )


@check(
    id="exposure.graphql",
    title="GraphQL introspection is disabled",
    category="exposure",
    severity="medium",
    references=("https://cheatsheetseries.owasp.org/cheatsheets/GraphQL_Cheat_Sheet.html",),
    remediation="Disable introspection (and GraphiQL) in production.",
    max_requests=3,
)
async def graphql(ctx: ScanContext) -> Result:
    """Introspection hands out the whole schema, including fields the UI never uses
    (OWASP GraphQL cheat sheet). Probe: a read-only `__schema` query."""
    return await _run(
        ctx,
        [
            Probe("/graphql", _graphql_schema, "GraphQL introspection", "POST", _INTROSPECTION),
            Probe("/api/graphql", _graphql_schema, "GraphQL introspection", "POST", _INTROSPECTION),
        ],
    )


@check(
    id="exposure.actuator",
    title="No Spring Boot actuator endpoints",
    category="exposure",
    severity="high",
    references=(f"{ZAP}/40042/",),
    remediation="Expose only health (without details) or move actuators to a management port.",
    max_requests=3,
)
async def actuator(ctx: ScanContext) -> Result:
    """`/actuator/env` prints configuration (secrets masked only partly), `/heapdump` the
    process memory with live credentials (ZAP 40042)."""
    return await _run(
        ctx,
        [
            Probe("/actuator", _json_keys("_links"), "actuator index"),
            Probe(
                "/actuator/env",
                _json_keys("propertySources", "activeProfiles", any_of=True),
                "actuator env",
            ),
        ],
    )


@check(
    id="exposure.server-status",
    title="No server status pages",
    category="exposure",
    severity="medium",
    references=(WSTG_ADMIN,),
    remediation="Restrict /server-status and /nginx_status to localhost.",
    max_requests=3,
)
async def server_status(ctx: ScanContext) -> Result:
    """Apache's server-status lists every client address and URL being served (tokens in
    query strings included); nginx's stub status leaks traffic figures."""
    return await _run(
        ctx,
        [
            Probe("/server-status", _html_re(r"Apache Server Status for"), "Apache server-status"),
            Probe("/nginx_status", _text_re(r"Active connections:\s*\d+"), "nginx stub_status"),
        ],
    )


_PROMETHEUS = _text_re(r"(?m)^# (HELP|TYPE) \w+")


@check(
    id="exposure.metrics",
    title="No public metrics endpoint",
    category="exposure",
    severity="medium",
    references=(OWASP_API8,),
    remediation="Serve metrics on an internal port or behind authentication.",
    max_requests=3,
)
async def metrics(ctx: ScanContext) -> Result:
    """Prometheus metrics reveal routes, versions, traffic patterns and sometimes user ids in
    labels."""
    return await _run(
        ctx,
        [
            Probe("/metrics", _PROMETHEUS, "Prometheus metrics"),
            Probe("/actuator/prometheus", _PROMETHEUS, "Prometheus metrics"),
        ],
    )


_DEBUG_BODY = _html_re(
    r"Types of profiles available|Symfony Profiler|Laravel Telescope|Error Log for|"
    r"Application Trace|Interactive Console|django-debug-toolbar|djDebug|"
    r'"(environ|env|settings|config)"\s*:\s*\{'
)


@check(
    id="exposure.debug-endpoints",
    title="No debug or profiling endpoints",
    category="exposure",
    severity="high",
    references=(f"{ZAP}/40028/",),
    remediation="Remove profilers and debug routes from production builds.",
    max_requests=9,
)
async def debug_endpoints(ctx: ScanContext) -> Result:
    """pprof, the Symfony profiler, Telescope, ELMAH, trace.axd and Werkzeug's console show
    requests, queries and environment, or run code."""
    return await _run(
        ctx,
        [
            Probe("/debug", _DEBUG_BODY, "debug endpoint"),
            Probe("/debug/pprof/", _DEBUG_BODY, "Go pprof"),
            Probe("/_profiler", _DEBUG_BODY, "Symfony profiler"),
            Probe("/__debug__/", _DEBUG_BODY, "Django debug toolbar"),
            Probe("/telescope", _DEBUG_BODY, "Laravel Telescope"),
            Probe("/elmah.axd", _DEBUG_BODY, "ELMAH"),
            Probe("/trace.axd", _DEBUG_BODY, "ASP.NET trace"),
            Probe("/console", _DEBUG_BODY, "Werkzeug console"),
        ],
    )


_PHPINFO = _html_re(r"<title>phpinfo\(\)</title>|PHP Version \d|PHP Credits")


@check(
    id="exposure.phpinfo",
    title="No phpinfo() page",
    category="exposure",
    severity="high",
    references=(WSTG_ADMIN,),
    remediation="Delete phpinfo files from the server.",
    max_requests=3,
)
async def phpinfo(ctx: ScanContext) -> Result:
    """phpinfo() prints the environment (secrets included), modules and paths."""
    return await _run(
        ctx,
        [
            Probe("/phpinfo.php", _PHPINFO, "phpinfo()"),
            Probe("/info.php", _PHPINFO, "phpinfo()"),
        ],
    )


_LISTING = _html_re(r"<title>(Index of /|Directory listing for /)")


@check(
    id="exposure.dir-listing",
    title="No directory listings",
    category="exposure",
    severity="medium",
    references=(f"{ZAP}/10033/",),
    remediation="Turn off autoindex / directory browsing.",
    max_requests=4,
)
async def dir_listing(ctx: ScanContext) -> Result:
    """An index page lists files nobody linked (backups, configs) for the taking."""
    return await _run(
        ctx,
        [
            Probe("/", _LISTING, "directory listing"),
            Probe("/static/", _LISTING, "directory listing"),
            Probe("/uploads/", _LISTING, "directory listing"),
        ],
    )
