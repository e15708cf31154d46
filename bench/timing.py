"""Timing helpers shared by the micro-benchmarks in bench/.

Each figure is the best of several rounds: the round least disturbed by other processes is the
closest to the code's own cost.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable


def best_of(fn: Callable[[], object], n: int, repeats: int = 5) -> float:
    """Microseconds per call of ``fn``: the best of ``repeats`` rounds of ``n`` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


async def best_of_async(fn: Callable[[], Awaitable[object]], n: int, repeats: int = 5) -> float:
    """Microseconds per awaited call of ``fn``: the best of ``repeats`` rounds of ``n`` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            await fn()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def print_micros(rows: list[tuple[str, float]]) -> None:
    """Print ``(operation, microseconds)`` rows as an aligned two-column table."""
    width = max(len(name) for name, _ in rows)
    print(f"{'operation':<{width}}  {'µs/op':>10}")
    for name, micros in rows:
        print(f"{name:<{width}}  {micros:>10.1f}")
