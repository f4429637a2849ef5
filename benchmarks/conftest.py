"""Benchmark fixtures (not part of the test suite): models, inputs, and a summary of our/torchattacks ratios."""
from __future__ import annotations

import os
from typing import Iterator

import pytest
import torch

# case -> implementation -> (images/s of the median round, median per-round ratio to torchattacks), from bench_pgd.py
SPEEDS: dict[str, dict[str, tuple[float, float]]] = {}
THREADS: list[int] = []


@pytest.fixture(scope="session", autouse=True)
def bench_threads() -> Iterator[int]:
    """Intra-op threads for every benchmark: $ROCL_BENCH_THREADS, default 1 (stable on a shared 2-core box)."""
    n = int(os.environ.get("ROCL_BENCH_THREADS", "1"))
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    THREADS.append(n)
    yield n
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def speeds() -> dict[str, dict[str, tuple[float, float]]]:
    return SPEEDS


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    if not SPEEDS:
        return
    tr = terminalreporter
    tr.section("PGD-10 linf: images per second (median round) and median per-round ratio ours / torchattacks")
    for case, row in SPEEDS.items():
        tr.write_line(f"{case}:")
        for impl, (speed, ratio) in row.items():
            tr.write_line(f"  {impl:15s} {speed:10,.0f} img/s   ratio {ratio:.2f}")
    tr.write_line(f"intra-op threads: {THREADS[0] if THREADS else torch.get_num_threads()} "
                  "(set ROCL_BENCH_THREADS to change)")
