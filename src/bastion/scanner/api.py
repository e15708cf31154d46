"""The API's map: its operations, from its OpenAPI document or discovered, and one sweep of them.

The first-generation scanner judged ``/`` and a handful of well-known paths, so a traceback on a
real endpoint, an API under ``/svc/api/v1`` or an unprotected ``/api/v0`` went unseen. Here:

* :func:`api_map` finds the OpenAPI document (``--openapi FILE|URL``, or the usual names under
  the target's path prefix and each shorter prefix), and lists its operations with the path
  they are served at (``servers``/``basePath``, or the directory the document was found in).
  Without a document it discovers endpoints from the links the API returns, versioned
  prefixes and common API paths. Everything the target names is read without trusting it
  (:mod:`bastion.scanner.documents`) and fetched only on the scanned origin.
* :func:`sweep` sends each operation a few harmless requests, within ``--operation-budget``
  requests in all: anonymously, with ``--token``, with a malformed identifier for templated
  paths, and (``--active`` only) a malformed JSON body to write operations, which no sane
  server can turn into a change. The per-operation controls judge the sweep; the report's
  ``coverage`` says how many operations it reached.

Both are memoised per scan: every control shares one map and one sweep.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bastion.scanner.context import ANONYMOUS, BudgetExhausted, ScanContext
from bastion.scanner.documents import HTTP_METHODS, DocumentError, load_json, resolve
from bastion.scanner.evidence import Exchange
from bastion.scanner.model import Coverage

SPEC_NAMES = ("/openapi.json", "/swagger.json", "/v3/api-docs", "/api-docs", "/v2/api-docs")
VERSION_PREFIXES = ("/api/v1", "/api/v2", "/v1", "/api")
COMMON_RESOURCES = ("me", "users", "orders", "items", "accounts", "products")
MAX_OPERATIONS = 2000  # a hostile document cannot make the sweep plan unbounded
MAX_LINKS = 40
SAFE = frozenset({"GET", "HEAD"})
WRITE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MALFORMED_JSON = b'{"bastion-scan": '  # never parses: a write probe that cannot change anything
ID_KEYS = ("id", "uuid", "_id", "key")
LIST_KEYS = ("items", "data", "results", "records", "content", "orders", "users")
_PARAM = re.compile(r"\{[^/{}]+\}")
_VERSION = re.compile(r"/v(\d+)(?=/|$)")


class SpecError(Exception):
    """``--openapi`` names something that is not a usable OpenAPI document (one line)."""


@dataclass(frozen=True)
class Operation:
    """One operation: a method and the absolute path template it is served at."""

    method: str
    path: str
    secured: bool | None = None  # the document's security requirement (None: it says nothing)
    source: str = "openapi"
    example: Any = None  # a request body built from the document's schema, for creating objects

    @property
    def templated(self) -> bool:
        return bool(_PARAM.search(self.path))

    @property
    def collection(self) -> str:
        """The path before the first parameter: ``/orders/{id}`` -> ``/orders``."""
        match = _PARAM.search(self.path)
        return self.path[: match.start()].rstrip("/") if match else self.path.rstrip("/")

    def concrete(self, ident: str) -> str:
        return _PARAM.sub(ident, self.path)

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class ApiMap:
    operations: tuple[Operation, ...]
    source: str  # "openapi <url or file>", "discovered" or "none"
    note: str = ""


@dataclass
class Probed:
    """What the sweep saw for one operation."""

    op: Operation
    path: str  # the concrete path probed
    anonymous: Exchange | None = None
    authed: Exchange | None = None
    extra: list[Exchange] = field(default_factory=list)  # malformed-input probes

    def exchanges(self) -> list[Exchange]:
        return [ex for ex in (self.anonymous, self.authed, *self.extra) if ex is not None]


@dataclass
class Sweep:
    api: ApiMap
    probed: list[Probed]
    budget: int
    used: int = 0
    not_probed: int = 0
    # Why the sweep stopped early: the target said it is rate-limiting this client (a 429, or
    # a quota nearly spent). The sweep is polite: it leaves the rest of the quota to the API's
    # real clients and to the other controls, and the coverage says so.
    stopped: str = ""
    ids: dict[str, str] = field(default_factory=dict)  # collection path -> an id A can see
    listings: dict[str, Exchange] = field(default_factory=dict)  # collection -> A's listing


# --- the map -------------------------------------------------------------------------------
async def api_map(ctx: ScanContext) -> ApiMap:
    """The API's operations (memoised): from the OpenAPI document, else discovered."""
    return await ctx.memo("api-map", lambda: _build_map(ctx))


async def _build_map(ctx: ScanContext) -> ApiMap:
    given = ctx.options.openapi
    if given:
        document, where, base = await _given_spec(ctx, given)
        return _from_document(document, f"openapi {where}", base)
    for path in spec_candidates(ctx):
        try:
            ex = await ctx.fetch("GET", path)
        except BudgetExhausted:
            break
        document = ex.json() if 200 <= ex.status < 300 else None
        if isinstance(document, dict) and ("openapi" in document or "swagger" in document):
            directory = path.rsplit("/", 1)[0]
            try:
                return _from_document(document, f"openapi {ctx.url(path)}", directory)
            except DocumentError as exc:
                return ApiMap((), "none", f"{ctx.url(path)}: malformed OpenAPI document ({exc})")
    return await _discover(ctx)


def spec_candidates(ctx: ScanContext) -> list[str]:
    found: list[str] = []
    for name in SPEC_NAMES:
        for path in ctx.under_prefix(name):
            if path not in found:
                found.append(path)
    # the prefix's own names first, then shorter prefixes, name by name
    return sorted(found, key=lambda p: -p.count("/"))


async def _given_spec(ctx: ScanContext, given: str) -> tuple[Any, str, str]:
    """``--openapi FILE|URL``: a file, or a URL on the scanned origin (fetched with the
    user's credentials, which may be what the document needs)."""
    if given.startswith(("http://", "https://")):
        if not ctx.same_target(given):
            raise SpecError(f"--openapi {given}: not on the scanned origin (pass it as a file)")
        ex = await ctx.fetch("GET", given)
        if not 200 <= ex.status < 300:
            raise SpecError(f"--openapi {given}: {ex.status}")
        path = httpx.URL(given).path
        return _loaded(ex.body, given), given, path.rsplit("/", 1)[0]
    try:
        data = await asyncio.to_thread(Path(given).read_bytes)
    except OSError as exc:
        raise SpecError(f"--openapi {given}: {exc.strerror or exc}") from None
    return _loaded(data, given), given, ctx.prefix


def _loaded(data: bytes, where: str) -> Any:
    try:
        document = load_json(data)
    except DocumentError as exc:
        raise SpecError(f"--openapi {where}: {exc}") from None
    if not isinstance(document, dict) or not ("openapi" in document or "swagger" in document):
        raise SpecError(f"--openapi {where}: not an OpenAPI or Swagger document")
    return document


def _base_path(document: dict[str, Any], directory: str) -> str:
    """Where the document's paths are served: ``servers[0].url``'s path (OpenAPI 3),
    ``basePath`` (Swagger 2), else the directory the document was found in (an API behind a
    path prefix often serves a document that does not know its prefix)."""
    servers = document.get("servers")
    if isinstance(servers, list) and servers and isinstance(servers[0], dict):
        url = servers[0].get("url")
        if isinstance(url, str) and "{" not in url:
            try:
                return httpx.URL(url).path.rstrip("/")
            except httpx.InvalidURL:
                pass
    base = document.get("basePath")
    if isinstance(base, str) and base.startswith("/"):
        return base.rstrip("/")
    return directory.rstrip("/")


def _from_document(document: Any, source: str, directory: str) -> ApiMap:
    if not isinstance(document, dict):
        raise DocumentError("an OpenAPI document is a JSON object")
    paths = document.get("paths")
    if not isinstance(paths, dict):
        return ApiMap((), source, "the document has no paths")
    base = _base_path(document, directory)
    default_security = document.get("security")
    operations: list[Operation] = []
    for raw_path, raw_item in paths.items():
        item = resolve(document, raw_item)
        if not isinstance(item, dict) or not isinstance(raw_path, str):
            continue
        path = join_prefix(base, raw_path if raw_path.startswith("/") else "/" + raw_path)
        for method in HTTP_METHODS:
            op = item.get(method)
            if not isinstance(op, dict) or method in {"options", "trace", "head"}:
                continue
            security = op.get("security", default_security)
            secured = None if security is None else _requires(security)
            operations.append(
                Operation(method.upper(), path, secured, "openapi", _example(document, op))
            )
            if len(operations) >= MAX_OPERATIONS:
                return ApiMap(tuple(operations), source, f"first {MAX_OPERATIONS} operations")
    return ApiMap(tuple(operations), source)


def join_prefix(base: str, path: str) -> str:
    """``path`` served under ``base``, folding an overlap: ``/svc/api/v1`` + ``/api/v1/me`` is
    ``/svc/api/v1/me`` (a document written for the API's own root, found under a mount)."""
    base = base.rstrip("/")
    if not base or path == base or path.startswith(base + "/"):
        return path
    segments = [s for s in base.split("/") if s]
    parts = [s for s in path.split("/") if s]
    for k in range(min(len(parts), len(segments)), 0, -1):
        if segments[-k:] == parts[:k]:
            rest = "/".join(parts[k:])
            return (
                base + ("/" + rest if rest else "") + ("/" if path.endswith("/") and rest else "")
            )
    return base + path


def _requires(security: Any) -> bool:
    """An operation requires credentials when every alternative names a scheme (``{}`` is
    the "anonymous allowed" alternative)."""
    if not isinstance(security, list) or not security:
        return False
    return all(isinstance(req, dict) and req for req in security)


def _example(document: dict[str, Any], op: dict[str, Any]) -> Any:
    body = resolve(document, op.get("requestBody"))
    if not isinstance(body, dict):
        return None
    content = body.get("content")
    media = content.get("application/json") if isinstance(content, dict) else None
    if not isinstance(media, dict):
        return None
    if "example" in media:
        return media["example"]
    try:
        return _sample(document, media.get("schema"), 0)
    except DocumentError:
        return None


def _sample(document: dict[str, Any], schema: Any, depth: int) -> Any:
    """A value the schema accepts, from its examples, defaults and types (bounded depth)."""
    schema = resolve(document, schema)
    if not isinstance(schema, dict) or depth > 8:
        return None
    for key in ("example", "default", "const"):
        if key in schema:
            return schema[key]
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        return examples[0]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("allOf", "anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return _sample(document, options[0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or "properties" in schema:
        props = schema.get("properties")
        required = schema.get("required") if isinstance(schema.get("required"), list) else None
        if not isinstance(props, dict):
            return {}
        return {
            name: _sample(document, sub, depth + 1)
            for name, sub in props.items()
            if required is None or name in required
        }
    if kind == "array":
        return [_sample(document, schema.get("items"), depth + 1)]
    if kind == "integer":
        low = schema.get("minimum", 1)
        return low if isinstance(low, int) else 1
    if kind == "number":
        return 1
    if kind == "boolean":
        return False
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "uuid":
            return "00000000-0000-4000-8000-000000000001"
        if fmt == "email":
            return "bastion-scan@example.com"
        if fmt == "date-time":
            return "2030-01-01T00:00:00Z"
        length = schema.get("minLength", 2)
        size = max(2, length if isinstance(length, int) and length < 64 else 2)
        max_len = schema.get("maxLength")
        if isinstance(max_len, int) and max_len < size:
            size = max_len
        return "US"[:size] if size <= 2 else "bastion-scan".ljust(size, "x")[:size]
    return None


# --- discovery without a document ----------------------------------------------------------
DISCOVERY_REQUESTS = 30


async def _discover(ctx: ScanContext) -> ApiMap:
    """Endpoints from the links the API returns, versioned prefixes and common API paths.
    Only anonymous GETs; a path counts when it answers neither 404/410 nor the same body as a
    path that cannot exist (a catch-all)."""
    from bastion.scanner.checks._util import is_catch_all

    not_found = await ctx.not_found()
    baseline = await ctx.baseline()
    candidates: list[str] = []
    for link in _links(ctx, baseline):
        candidates.append(link)
    for prefix in VERSION_PREFIXES:
        for path in ctx.under_prefix(prefix):
            for resource in COMMON_RESOURCES:
                candidates.append(f"{path}/{resource}")
    seen: set[str] = set()
    found: list[Operation] = []
    sent = 0
    for path in candidates:
        if path in seen or sent >= DISCOVERY_REQUESTS:
            continue
        seen.add(path)
        sent += 1
        try:
            ex = await ctx.fetch("GET", path, extra_headers=ANONYMOUS)
        except BudgetExhausted:
            break
        if ex.status in (404, 410, 405) or ex.status >= 500 or is_catch_all(ex, not_found):
            continue
        found.append(Operation("GET", path, None, "discovered"))
        for link in _links(ctx, ex):
            if link not in seen:
                candidates.append(link)
    return ApiMap(tuple(found), "discovered" if found else "none")


def _links(ctx: ScanContext, ex: Exchange) -> list[str]:
    """Same-origin paths an API response names (``href`` values, ``_links``, JSON strings that
    are paths): how a hypermedia API says where its resources are."""
    text = ex.text[:65536]
    found: list[str] = []
    for match in re.finditer(r'"(?:href|url|self|next|link)"\s*:\s*"([^"\s]{1,200})"', text):
        found.append(match.group(1))
    for match in re.finditer(r'"(/[A-Za-z0-9_./-]{1,200})"', text):
        found.append(match.group(1))
    for match in re.finditer(r'href="([^"\s]{1,200})"', text):
        found.append(match.group(1))
    paths: list[str] = []
    for link in found:
        try:
            url = httpx.URL(ex.url).join(link)
        except httpx.InvalidURL:
            continue
        if ctx.same_target(url) and url.path not in paths and "." not in url.path.rsplit("/")[-1]:
            paths.append(url.path)
        if len(paths) >= MAX_LINKS:
            break
    return paths


# --- the sweep -----------------------------------------------------------------------------
async def sweep(ctx: ScanContext) -> Sweep:
    """Probe every operation once or a few times, within ``--operation-budget`` (memoised)."""
    return await ctx.memo("sweep", lambda: _sweep(ctx))


def malformed_id() -> str:
    # A quote (SQL), a non-UUID, unique per scan: a sane API answers 404 or 400.
    return f"bastion-scan-{secrets.token_hex(3)}%27"


async def _sweep(ctx: ScanContext) -> Sweep:
    api = await api_map(ctx)
    result = Sweep(api, [], ctx.options.operation_budget)
    token = bool(ctx.options.token)
    active = ctx.options.active

    async def send(
        method: str,
        path: str,
        *,
        auth: bool,
        content: bytes | None = None,
        shared: bool = True,
    ) -> Exchange | None:
        if result.used >= result.budget or result.stopped:
            return None
        result.used += 1
        headers = dict(ctx.auth_headers()) if auth else {}
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            if shared and content is None:
                ex = await ctx.fetch(method, path, headers=headers, extra_headers=ANONYMOUS)
            else:
                ex = await ctx.request(
                    method, path, headers=headers, content=content, extra_headers=ANONYMOUS
                )
        except (httpx.HTTPError, BudgetExhausted):
            return None
        result.stopped = throttled(ex)
        return ex

    safe = [op for op in api.operations if op.method in SAFE]
    # Collections first, so that a templated operation can be probed with an id A can see.
    ordered = sorted(safe, key=lambda op: (op.templated, op.path))
    # Login, registration and reset endpoints have their own tight limit (5 failures per 15
    # minutes on bastion serve) and their own controls: a malformed body there would spend it.
    writes = [op for op in api.operations if op.method in WRITE and not AUTH_PATH.search(op.path)]
    for op in ordered:
        if result.used >= result.budget:
            break
        if op.templated:
            probe = Probed(op, op.concrete(malformed_id()))
            probe.anonymous = await send("GET", probe.path, auth=False)
            if token:
                probe.authed = await send("GET", probe.path, auth=True)
        else:
            probe = Probed(op, op.path)
            probe.anonymous = await send("GET", op.path, auth=False)
            if token:
                probe.authed = await send("GET", op.path, auth=True)
                if probe.authed is not None and 200 <= probe.authed.status < 300:
                    ident = first_id(probe.authed)
                    if ident:
                        result.ids[op.collection] = ident
                        result.listings[op.collection] = probe.authed
        if probe.anonymous is None:
            break
        result.probed.append(probe)
    for op in writes:
        if not active:
            break
        if result.used >= result.budget:
            break
        path = op.concrete(malformed_id()) if op.templated else op.path
        probe = Probed(op, path)
        probe.anonymous = await send(op.method, path, auth=False, content=MALFORMED_JSON)
        if token and op.method != "DELETE":
            authed = await send(op.method, path, auth=True, content=MALFORMED_JSON)
            if authed is not None:
                probe.extra.append(authed)
        if probe.anonymous is None:
            break
        result.probed.append(probe)
    all_writes = [op for op in api.operations if op.method in WRITE]
    swept_writes = sum(1 for p in result.probed if p.op.method in WRITE)
    planned = len(ordered) + (len(writes) if active else 0)
    result.not_probed = max(0, planned - len(result.probed))
    ctx.coverage = Coverage(
        stopped=result.stopped,
        source=api.source,
        operations=len(api.operations),
        probed=len(result.probed),
        requests=result.used,
        budget=result.budget,
        not_probed_writes=len(all_writes) - swept_writes,
    )
    return result


QUOTA_RESERVE = 10  # requests of the target's quota the sweep always leaves unspent
_REMAINING = re.compile(r"\br=(\d+)")
_QUOTA = re.compile(r"\bq=(\d+)")


def _numbers(ex: Exchange, plain: str, structured: str, pattern: re.Pattern[str]) -> list[int]:
    found = [int(m) for m in pattern.findall(ex.header(structured) or "")]
    value = (ex.header(plain) or "").strip()
    return found + ([int(value)] if value.isdigit() else [])


AUTH_PATH = re.compile(r"/(?:auth|login|logout|register|signup|password|token|oauth)\b", re.I)


def throttled(ex: Exchange) -> str:
    """Why ``ex`` says to stop sending ("" when it does not): a 429, or an advertised quota
    (``X-RateLimit-*``, ``RateLimit``/``RateLimit-Policy``) more than half spent. Limiters
    often slow clients down well before they refuse them (bastion serve: after half of its
    100 requests), so the sweep stops at half and leaves the rest to the API's clients."""
    if AUTH_PATH.search(httpx.URL(ex.url).path):
        return ""  # the authentication rule's own small budget, spent by the login controls
    if ex.status == 429:
        return f"the target rate-limited the scan ({ex.summary})"
    remaining = _numbers(ex, "x-ratelimit-remaining", "ratelimit", _REMAINING)
    if not remaining:
        return ""
    limits = _numbers(ex, "x-ratelimit-limit", "ratelimit-policy", _QUOTA)
    floor = max(QUOTA_RESERVE, min(limits) // 2 if limits else 0)
    if min(remaining) <= floor:
        return f"the target's quota is half spent ({min(remaining)} left at {ex.summary})"
    return ""


def first_id(ex: Exchange) -> str | None:
    """The id of the first object in a listing (``[...]``, ``{"items": [...]}``, ...)."""
    document = ex.json()
    items: Any = document
    if isinstance(document, dict):
        items = next((document[k] for k in LIST_KEYS if isinstance(document.get(k), list)), None)
    if not isinstance(items, list):
        return None
    for item in items[:20]:
        if isinstance(item, dict):
            for key in ID_KEYS:
                value = item.get(key)
                if isinstance(value, str | int) and not isinstance(value, bool):
                    text = str(value)
                    if re.fullmatch(r"[A-Za-z0-9._~-]{1,128}", text):
                        return text
    return None


def object_id(ex: Exchange) -> str | None:
    """The id of an object a create returned (``{"id": ...}`` or ``{"data": {"id": ...}}``)."""
    document = ex.json()
    if isinstance(document, dict) and isinstance(document.get("data"), dict):
        document = document["data"]
    if not isinstance(document, dict):
        return None
    for key in ID_KEYS:
        value = document.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            text = str(value)
            if re.fullmatch(r"[A-Za-z0-9._~-]{1,128}", text):
                return text
    return None


def version_of(path: str) -> int | None:
    match = _VERSION.search(path)
    return int(match.group(1)) if match else None


def with_version(path: str, version: int) -> str:
    return _VERSION.sub(f"/v{version}", path, count=1)
