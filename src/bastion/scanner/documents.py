"""Documents the target serves (OpenAPI, JWKS, OpenID configuration), read without trusting them.

A hostile document is an attack on the scanner: JSON nested a hundred thousand levels deep makes
``json.loads`` raise ``RecursionError`` (and any recursive walk over a document nested a few
hundred levels does the same), and a ``$ref`` chain that loops (``A -> B -> A``) or fans out
sends a naive resolver into an endless loop or an exponential expansion ("billion laughs" for
JSON references). Here:

* :func:`load_json` parses a body and refuses nesting deeper than :data:`MAX_DEPTH` with a
  :class:`DocumentError` that says so; the depth is measured iteratively;
* :func:`resolve` follows local ``$ref`` pointers (RFC 6901) one hop at a time, refusing loops,
  external references and chains longer than :data:`MAX_REF_HOPS`;
* :func:`walk` visits a document's nodes without recursion, following each ``$ref`` target at
  most once and stopping after :data:`MAX_NODES` nodes.

Every refusal is a :class:`DocumentError` whose message a control puts in its finding: a
malformed or hostile document is a finding about the target, never a crash of the scanner.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

MAX_DEPTH = 64  # real OpenAPI documents nest about 15-25 levels
MAX_REF_HOPS = 32
MAX_NODES = 200_000


class DocumentError(ValueError):
    """The document cannot be used as it is; the message says why (for the finding)."""


def load_json(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON, refusing what is not JSON and what nests deeper than ``max_depth``."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise DocumentError(f"JSON nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DocumentError(f"not JSON ({exc})") from None
    if depth(value, limit=max_depth) > max_depth:
        raise DocumentError(f"JSON nested deeper than {max_depth} levels")
    return value


def depth(value: Any, *, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), counted without recursion; stops
    counting once past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        level += 1
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        stack.extend((child, level) for child in children)
    return deepest


def _pointer_tokens(ref: str) -> list[str]:
    if not ref.startswith("#"):
        raise DocumentError(f"external $ref {ref!r} is not followed")
    pointer = ref[1:]
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise DocumentError(f"$ref {ref!r} is not a JSON pointer")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def pointer_get(document: Any, ref: str) -> Any:
    """The node a local ``#/a/b`` pointer names (RFC 6901), or :class:`DocumentError`."""
    node = document
    for token in _pointer_tokens(ref):
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise DocumentError(f"$ref {ref!r} points at nothing")
    return node


def _ref_of(node: Any) -> str | None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            return ref
        if ref is not None:
            raise DocumentError("a $ref that is not a string")
    return None


def resolve(document: Any, node: Any) -> Any:
    """``node`` itself, or what its ``$ref`` chain ends at. A chain that comes back to a
    pointer already seen (``A -> B -> A``), leaves the document or is longer than
    :data:`MAX_REF_HOPS` raises :class:`DocumentError` naming the chain."""
    seen: list[str] = []
    while (ref := _ref_of(node)) is not None:
        if ref in seen:
            chain = " -> ".join([*seen, ref])
            raise DocumentError(f"$ref loop: {chain}")
        if len(seen) >= MAX_REF_HOPS:
            raise DocumentError(f"$ref chain longer than {MAX_REF_HOPS} hops from {seen[0]}")
        seen.append(ref)
        node = pointer_get(document, ref)
    return node


def walk(document: Any, *, max_nodes: int = MAX_NODES) -> Iterator[tuple[str, Any]]:
    """Every node as ``(pointer, node)``, depth first, without recursion. A ``$ref`` is
    resolved (loops raise) and every object or array is visited once, however many places
    reference it, so a self-referencing schema (legitimate) or a fan-out of references
    (hostile) costs one visit per node. More than ``max_nodes`` nodes raise
    :class:`DocumentError`."""
    visited: set[int] = set()  # containers already walked (JSON parsing never shares them)
    stack: list[tuple[str, Any]] = [("#", document)]
    count = 0
    while stack:
        pointer, node = stack.pop()
        ref = _ref_of(node)
        if ref is not None:
            node = resolve(document, node)
            pointer = ref
        if isinstance(node, dict | list):
            if id(node) in visited:
                continue
            visited.add(id(node))
        count += 1
        if count > max_nodes:
            raise DocumentError(f"more than {max_nodes} nodes")
        yield pointer, node
        if isinstance(node, dict):
            items: list[tuple[str, Any]] = [
                (f"{pointer}/{_escape_token(str(k))}", v) for k, v in node.items()
            ]
        elif isinstance(node, list):
            items = [(f"{pointer}/{i}", v) for i, v in enumerate(node)]
        else:
            continue
        stack.extend(reversed(items))


def _escape_token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def openapi_operations(document: Any) -> list[tuple[str, str]]:
    """``(METHOD, path)`` of every operation an OpenAPI (or Swagger 2) document declares.
    Path items may be ``$ref`` s (OpenAPI 3.1); loops and dangling references raise
    :class:`DocumentError`."""
    if not isinstance(document, dict):
        raise DocumentError("an OpenAPI document is a JSON object")
    paths = document.get("paths")
    if paths is None:
        return []
    if not isinstance(paths, dict):
        raise DocumentError("`paths` is not an object")
    operations: list[tuple[str, str]] = []
    for path, item in paths.items():
        item = resolve(document, item)
        if not isinstance(item, dict):
            raise DocumentError(f"path item {path!r} is not an object")
        for method in HTTP_METHODS:
            if isinstance(item.get(method), dict):
                operations.append((method.upper(), str(path)))
        if len(operations) > MAX_NODES:
            raise DocumentError(f"more than {MAX_NODES} operations")
    return operations
