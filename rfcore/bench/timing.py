"""Timing helpers of the benchmarks: medians over repeats, and several functions timed in turns."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int, rounds: int = 10) -> dict[str, float]:
    """Median seconds of each function, measured in alternating rounds.

    Each round runs every function ``repeats / rounds`` times (after a
    warm-up, :func:`median_seconds`), starting one function later each
    round, so that neither a slow spell of a shared machine nor the order
    of the functions favours any of them; the result is the median over
    rounds.
    """
    per_round = max(1, repeats // rounds)
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(median_seconds(fns[name], per_round))
    return {name: statistics.median(times[name]) for name in names}

