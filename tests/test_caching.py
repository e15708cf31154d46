"""The bounded memories: lookups are plain dict/set ones; a flood empties them, never grows them."""

from __future__ import annotations

import pytest

from bastion.caching import BoundedDict, BoundedSet


def test_dict_put_returns_the_value_and_remembers_it() -> None:
    cache: BoundedDict[str, int] = BoundedDict(3)
    assert cache.put("a", 1) == 1
    assert cache.get("a") == 1
    assert cache["a"] == 1
    assert "b" not in cache


def test_dict_never_holds_more_than_its_limit() -> None:
    cache: BoundedDict[int, int] = BoundedDict(100)
    for i in range(10_000):  # a flood of distinct keys
        cache.put(i, i)
        assert len(cache) <= 100
    assert cache[9_999] == 9_999  # the latest answer is always kept


def test_dict_full_put_forgets_everything_before() -> None:
    cache: BoundedDict[str, int] = BoundedDict(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert dict(cache) == {"c": 3}


def test_dict_replacing_a_key_below_the_limit_keeps_the_rest() -> None:
    cache: BoundedDict[str, int] = BoundedDict(3)
    cache.put("a", 1)
    cache.put("a", 2)
    cache.put("b", 3)
    assert dict(cache) == {"a": 2, "b": 3}


def test_set_never_holds_more_than_its_limit() -> None:
    seen: BoundedSet[bytes] = BoundedSet(8)
    for i in range(1000):
        seen.put(b"%d" % i)
        assert len(seen) <= 8
    assert b"999" in seen
    assert b"0" not in seen


def test_set_full_put_forgets_everything_before() -> None:
    seen: BoundedSet[str] = BoundedSet(2)
    seen.put("a")
    seen.put("b")
    seen.put("c")
    assert seen == {"c"}


@pytest.mark.parametrize("kind", [BoundedDict, BoundedSet])
@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_below_one_is_refused(kind: type, limit: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        kind(limit)


def test_they_are_a_dict_and_a_set_without_an_instance_dict() -> None:
    # Slotted: no per-instance __dict__, and the C lookups of dict/set stay theirs.
    assert isinstance(BoundedDict(1), dict)
    assert isinstance(BoundedSet(1), set)
    assert not hasattr(BoundedDict(1), "__dict__")
    assert not hasattr(BoundedSet(1), "__dict__")
