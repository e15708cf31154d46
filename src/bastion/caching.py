"""Bounded memories for the per-request hot path: a dict and a set that forget when full.

The layers remember answers keyed by what a client sends (paths, hosts, token headers), so a
client sending distinct values must not grow memory without end. An LRU would keep the hot
entries but costs a ``move_to_end`` per hit; these cost nothing on a hit (they *are* a
``dict`` and a ``set``: lookups run in C) and, on the insert that finds them full, drop
everything. The working set is small and is relearned at once, while a flood only ever
empties the memory: it never slows a lookup.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


def _checked(limit: int) -> int:
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return limit


class BoundedDict(dict[K, V]):
    """A ``dict`` of at most *limit* entries: :meth:`put` on a full one empties it first."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = _checked(limit)

    def put(self, key: K, value: V) -> V:
        """Remember *value* under *key* and return it (emptying the memory first when full)."""
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value


class BoundedSet(set[T]):
    """A ``set`` of at most *limit* items: :meth:`put` on a full one empties it first."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = _checked(limit)

    def put(self, item: T) -> None:
        """Remember *item* (emptying the memory first when full)."""
        if len(self) >= self.limit:
            self.clear()
        self.add(item)


__all__ = ["BoundedDict", "BoundedSet"]
