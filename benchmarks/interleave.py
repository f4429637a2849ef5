"""Interleaved timing: every implementation runs once per round, in an order that rotates each round, so load
drift on a shared machine reaches all of them alike; ratios are taken per round and reported as the median."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def interleaved_rounds(impls: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per round for each implementation (after one untimed warm-up call of each)."""
    for fn in impls.values():
        fn()
    names = list(impls)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            impls[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def median_ratio(times: dict[str, list[float]], reference: str, impl: str) -> float:
    """Median over rounds of reference time / impl time (> 1: impl is faster)."""
    return statistics.median(r / i for r, i in zip(times[reference], times[impl]))


def summary(times: dict[str, list[float]], reference: str) -> dict[str, object]:
    """What a benchmark stores in extra_info: median seconds per implementation and median ratios."""
    out: dict[str, object] = {f"{n}_median_s": round(statistics.median(t), 4) for n, t in times.items()}
    out["rounds"] = len(times[reference])
    for n in times:
        if n != reference:
            out[f"speedup_{n}_vs_{reference}"] = round(median_ratio(times, reference, n), 3)
    return out
