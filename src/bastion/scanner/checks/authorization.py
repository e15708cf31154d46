"""Authorization with two identities: one user's objects, read, changed and deleted by another.

Broken object-level authorization (OWASP API1) is the first API risk and invisible to a scanner
with one identity. With ``--token`` (identity A) and ``--token-b``/``--auth-b`` (identity B):

* objects A can see (the first id of each of A's listings; with ``--active`` also an object the
  scan creates as A from the OpenAPI document's schema) are fetched with B's credentials and
  with none (``auth.bola``);
* with ``--active``, only on the object the scan created itself: B and an anonymous client try
  each write operation the document declares on it (PUT/PATCH/DELETE), the object is re-read
  as A to see whether it changed, and A deletes it at the end (``auth.bfla``).

Everything is one memoised probe shared by both controls, so the writes happen once, in order,
and the clean-up after the last read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bastion.scanner.api import Operation, Sweep, object_id, sweep, throttled
from bastion.scanner.check import Result, check
from bastion.scanner.checks._util import jwt_parts
from bastion.scanner.checks.auth import normalised
from bastion.scanner.context import ANONYMOUS, ScanContext
from bastion.scanner.evidence import Exchange, join_evidence

OWASP_API1 = (
    "https://owasp.org/API-Security/editions/2023/en/0xa1-broken-object-level-authorization/"
)
OWASP_API5 = (
    "https://owasp.org/API-Security/editions/2023/en/0xa5-broken-function-level-authorization/"
)
MAX_OBJECTS = 5
MAX_SHOWN = 4


@dataclass
class Read:
    path: str
    owner: Exchange  # A's read
    other: Exchange | None  # B's read
    anonymous: Exchange
    shared: bool = False  # the id is in B's own listing too: a shared object, not a leak


@dataclass
class Write:
    who: str  # "B" or "anonymous"
    attempt: Exchange
    after: Exchange | None  # A's re-read afterwards
    changed: bool


@dataclass
class Authz:
    reads: list[Read] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    created: str | None = None
    create: Exchange | None = None
    cleanup: Exchange | None = None
    note: str = ""


def _ok(ex: Exchange | None) -> bool:
    return ex is not None and 200 <= ex.status < 300


def _sub(token: str | None) -> Any:
    parts = jwt_parts(token or "")
    return parts[1].get("sub") if parts else None


def _same_user(ctx: ScanContext) -> bool:
    a, b = _sub(ctx.options.token), _sub(ctx.options.token_b)
    return a is not None and a == b


async def authz(ctx: ScanContext) -> Authz:
    return await ctx.memo("authz", lambda: _probe(ctx))


def _item_ops(ops: tuple[Operation, ...], collection: str) -> dict[str, Operation]:
    """Operations on one object of ``collection`` (``/orders/{id}``), by method."""
    found: dict[str, Operation] = {}
    for op in ops:
        if op.templated and op.collection == collection and op.path.count("{") == 1:
            found.setdefault(op.method, op)
    return found


async def _probe(ctx: ScanContext) -> Authz:
    result = Authz()
    swept: Sweep = await sweep(ctx)
    ops = swept.api.operations
    a_headers, b_headers = ctx.auth_headers(), ctx.auth_headers_b()

    async def send(method: str, path: str, headers: dict[str, str], body: Any = None) -> Exchange:
        content = None if body is None else json.dumps(body).encode()
        extra = {"Content-Type": "application/json"} if content is not None else {}
        return await ctx.request(
            method, path, headers={**headers, **extra}, content=content, extra_headers=ANONYMOUS
        )

    targets: list[tuple[str, str]] = []  # (object path, collection)
    if ctx.options.active:
        await _create(ctx, result, ops, send, a_headers)
        if result.created:
            targets.append((result.created, result.created.rsplit("/", 1)[0]))
    for collection, ident in swept.ids.items():
        get = _item_ops(ops, collection).get("GET")
        if get is not None:
            targets.append((get.concrete(ident), collection))
    b_lists: dict[str, set[str]] = {}
    for path, collection in targets[:MAX_OBJECTS]:
        owner = await send("GET", path, a_headers)
        if not _ok(owner):
            continue
        other = await send("GET", path, b_headers)
        anonymous = await send("GET", path, {})
        read = Read(path, owner, other, anonymous)
        if _ok(other):
            if collection not in b_lists:
                listing = await send("GET", collection, b_headers)
                b_lists[collection] = _ids(listing)
            read.shared = path.rsplit("/", 1)[-1] in b_lists[collection]
        result.reads.append(read)
        if any(throttled(ex) for ex in (owner, anonymous, other)):
            break  # the target is limiting this client: read no further (clean-up still runs)
    if result.created:
        await _writes(ctx, result, ops, send, a_headers, b_headers)
        delete = _item_ops(ops, result.created.rsplit("/", 1)[0]).get("DELETE")
        if delete is not None and not any(
            w.changed and w.attempt.method == "DELETE" for w in result.writes
        ):
            result.cleanup = await send("DELETE", result.created, a_headers)
    return result


def _ids(listing: Exchange) -> set[str]:
    if not _ok(listing):
        return set()
    document = listing.json()
    items = document
    if isinstance(document, dict):
        items = next((v for v in document.values() if isinstance(v, list)), [])
    found = set()
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            for key in ("id", "uuid", "_id"):
                if isinstance(item.get(key), str | int):
                    found.add(str(item[key]))
    return found


async def _create(
    ctx: ScanContext,
    result: Authz,
    ops: tuple[Operation, ...],
    send: Any,
    a_headers: dict[str, str],
) -> None:
    """Create one object as A, on a collection whose document declares how to read it and how
    to delete it again (an object the scan cannot clean up is never created)."""
    for op in ops:
        if op.method != "POST" or op.templated or op.example is None:
            continue
        item = _item_ops(ops, op.path.rstrip("/"))
        if "GET" not in item or "DELETE" not in item:
            continue
        created = await send("POST", op.path, a_headers, op.example)
        result.create = created
        ident = object_id(created) if _ok(created) else None
        if ident is None:
            result.note = f"creating an object failed: {created.summary}"
            if _ok(created):
                # created but no id to clean up with: say so rather than guess
                result.note = f"{created.summary} returned no id: the object was left in place"
            continue
        result.created = item["GET"].concrete(ident)
        return


async def _writes(
    ctx: ScanContext,
    result: Authz,
    ops: tuple[Operation, ...],
    send: Any,
    a_headers: dict[str, str],
    b_headers: dict[str, str],
) -> None:
    if result.created is None:
        return
    collection = result.created.rsplit("/", 1)[0]
    item = _item_ops(ops, collection)
    before = await send("GET", result.created, a_headers)
    for method in ("PATCH", "PUT", "DELETE"):
        op = item.get(method)
        if op is None:
            continue
        body = None if method == "DELETE" else (op.example if op.example is not None else {})
        for who, headers in (("B", b_headers), ("anonymous", {})):
            attempt = await send(method, result.created, headers, body)
            after = await send("GET", result.created, a_headers)
            changed = (not _ok(after)) or normalised(after) != normalised(before)
            result.writes.append(Write(who, attempt, after, changed))
            if not _ok(after):
                return  # the object is gone: nothing left to attack or clean up
            before = after


def _two_identities(ctx: ScanContext) -> Result | None:
    if not ctx.options.token:
        return Result.skipped("needs identity A: run with --token JWT")
    if not ctx.has_identity_b:
        return Result.skipped("needs a second identity: run with --token-b JWT or --auth-b")
    if _same_user(ctx):
        return Result.skipped("--token and --token-b are the same user (same sub)")
    return None


@check(
    id="auth.bola",
    title="One user cannot read another user's objects (BOLA)",
    category="auth",
    severity="critical",
    references=(OWASP_API1,),
    remediation="Check ownership on every object access (`WHERE id = :id AND owner = :user`), "
    "and answer 404 for another user's object exactly as for a missing one.",
    max_requests=0,
)
async def bola(ctx: ScanContext) -> Result:
    """Objects identity A can see are fetched with B's credentials and with none. B reading an
    object that is not in B's own listing, or anyone reading it anonymously, is broken
    object-level authorization (OWASP API1), the first API risk and one no header scan sees."""
    missing = _two_identities(ctx)
    if missing is not None:
        return missing
    outcome = await authz(ctx)
    if not outcome.reads:
        hint = "" if ctx.options.active else " (with --active the scan creates one)"
        note = f"; {outcome.note}" if outcome.note else ""
        return Result.skipped(f"no object of A's to read: A's listings were empty{hint}{note}")
    leaks = []
    shown: list[Exchange] = []
    for read in outcome.reads:
        if read.other is not None and _ok(read.other) and not read.shared:
            leaks.append(f"B read {read.path} ({read.other.status})")
            shown += [read.owner, read.other]
        if _ok(read.anonymous):
            leaks.append(f"anonymous read {read.path} ({read.anonymous.status})")
            shown.append(read.anonymous)
    if leaks:
        return Result.failed(
            join_evidence(*(ex.describe((), body=True) for ex in shown[: MAX_SHOWN * 2])),
            "; ".join(leaks[:MAX_SHOWN]),
        )
    evidence = join_evidence(
        *(
            ex.describe(())
            for read in outcome.reads
            for ex in (read.other, read.anonymous)
            if ex is not None
        )
    )
    count = len(outcome.reads)
    return Result.passed(evidence, f"{count} of A's objects refused to B and anonymous")


@check(
    id="auth.bfla",
    title="One user cannot change or delete another user's objects",
    category="auth",
    severity="critical",
    references=(OWASP_API1, OWASP_API5),
    remediation="Authorize every write on the object and the caller (owner or role), not only "
    "the route; answer 404 (or 403) and leave the object untouched.",
    max_requests=0,
    active=True,
)
async def bfla(ctx: ScanContext) -> Result:
    """With `--active`, the scan creates one object as A (from the OpenAPI document's request
    schema, only where the document also declares how to delete it), then B and an anonymous
    client try each declared PATCH/PUT/DELETE on it; A re-reads it after each attempt. Any
    accepted write, or a change A can see, fails. A deletes the object at the end."""
    missing = _two_identities(ctx)
    if missing is not None:
        return missing
    outcome = await authz(ctx)
    if outcome.created is None:
        reason = outcome.note or (
            "no collection declares POST, GET and DELETE with a request schema "
            "(the scan writes only on an object it created and can delete)"
        )
        return Result.skipped(reason)
    cleanup = (
        f"; clean-up {outcome.cleanup.summary}"
        if outcome.cleanup is not None
        else "; the object was deleted by the attack itself"
    )
    if not outcome.writes:
        return Result.skipped(f"no PATCH, PUT or DELETE declared on {outcome.created}{cleanup}")
    bad = [w for w in outcome.writes if _ok(w.attempt) or w.changed]
    evidence = join_evidence(
        *(
            w.attempt.describe(()) + (f"\n{w.after.summary}" if w.after else "")
            for w in (bad or outcome.writes)[:MAX_SHOWN]
        )
    )
    if bad:
        described = [
            f"{w.who} {w.attempt.method} -> {w.attempt.status}"
            + (" (A saw the object change)" if w.changed else "")
            for w in bad
        ]
        return Result.failed(evidence, "; ".join(described[:MAX_SHOWN]) + cleanup)
    return Result.passed(
        evidence, f"{len(outcome.writes)} writes by B and anonymous refused{cleanup}"
    )
