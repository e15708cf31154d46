"""Documents from the target read without trusting them: nesting bounded, $ref chains followed
with loop detection, walks without recursion: a hostile document is a finding, never a
RecursionError or an endless loop."""

from __future__ import annotations

import json

import pytest

from bastion.scanner.documents import (
    MAX_DEPTH,
    MAX_REF_HOPS,
    DocumentError,
    depth,
    load_json,
    openapi_operations,
    pointer_get,
    resolve,
    walk,
)


def _nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def test_nesting_is_bounded_without_recursion_errors() -> None:
    assert depth(load_json(_nested(MAX_DEPTH))) == MAX_DEPTH
    with pytest.raises(DocumentError, match="nested deeper than 64 levels"):
        load_json(_nested(MAX_DEPTH + 1))
    with pytest.raises(DocumentError, match="nested deeper than 64 levels"):
        load_json(_nested(100_000))  # json.loads itself would raise RecursionError
    with pytest.raises(DocumentError, match="nested deeper than 64 levels"):
        load_json(b'{"a": ' * 5000 + b"1" + b"}" * 5000)
    with pytest.raises(DocumentError, match="not JSON"):
        load_json(b"<html>")


def test_pointers_follow_rfc_6901() -> None:
    document = {"paths": {"/a/b": {"get": {}}}, "x": [10, {"~k": 1}]}
    assert pointer_get(document, "#/paths/~1a~1b") == {"get": {}}
    assert pointer_get(document, "#/x/1/~0k") == 1
    assert pointer_get(document, "#") is document
    for ref, message in (
        ("#/nope", "points at nothing"),
        ("#/x/7", "points at nothing"),
        ("other.json#/a", "external \\$ref"),
        ("https://evil.example/schema.json", "external \\$ref"),
        ("#nope", "not a JSON pointer"),
    ):
        with pytest.raises(DocumentError, match=message):
            pointer_get(document, ref)


def test_ref_loops_and_long_chains_are_named() -> None:
    document = {
        "a": {"$ref": "#/b"},
        "b": {"$ref": "#/a"},
        "self": {"$ref": "#/self"},
        "end": {"type": "string"},
        "to_end": {"$ref": "#/end"},
    }
    assert resolve(document, document["to_end"]) == {"type": "string"}
    with pytest.raises(DocumentError, match="\\$ref loop: #/b -> #/a -> #/b"):
        resolve(document, document["a"])
    with pytest.raises(DocumentError, match="\\$ref loop: #/self -> #/self"):
        resolve(document, document["self"])
    chain = {f"n{i}": {"$ref": f"#/n{i + 1}"} for i in range(MAX_REF_HOPS + 5)}
    with pytest.raises(DocumentError, match="chain longer than 32 hops"):
        resolve(chain, chain["n0"])


def test_walk_visits_each_reference_once() -> None:
    """A self-referencing schema is legitimate; a fan-out of references (each level pointing
    twice at the one below, 40 levels: 2^40 paths) is hostile. Both cost one visit per node."""
    tree = {"Node": {"properties": {"children": {"items": {"$ref": "#/Node"}}}}}
    assert [pointer for pointer, _ in walk(tree)] == [
        "#",
        "#/Node",
        "#/Node/properties",
        "#/Node/properties/children",
    ]
    laughs: dict[str, object] = {"l0": "lol"}
    for i in range(1, 41):
        laughs[f"l{i}"] = [{"$ref": f"#/l{i - 1}"}, {"$ref": f"#/l{i - 1}"}]
    nodes = list(walk(laughs))
    assert len(nodes) < 200
    with pytest.raises(DocumentError, match="more than 10 nodes"):
        list(walk(laughs, max_nodes=10))


def test_openapi_operations_through_path_item_refs() -> None:
    document = {
        "openapi": "3.1.0",
        "paths": {
            "/orders": {"get": {}, "post": {}, "parameters": []},
            "/orders/{id}": {"$ref": "#/components/pathItems/order"},
        },
        "components": {"pathItems": {"order": {"get": {}, "delete": {}}}},
    }
    assert openapi_operations(document) == [
        ("GET", "/orders"),
        ("POST", "/orders"),
        ("GET", "/orders/{id}"),
        ("DELETE", "/orders/{id}"),
    ]
    looped = json.loads('{"paths": {"/a": {"$ref": "#/paths/~1b"}, "/b": {"$ref": "#/paths/~1a"}}}')
    with pytest.raises(DocumentError, match="\\$ref loop"):
        openapi_operations(looped)
    with pytest.raises(DocumentError, match="is not an object"):
        openapi_operations({"paths": []})
