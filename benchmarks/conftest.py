"""Benchmark fixtures (not part of the test suite): models, inputs, and a summary of our/torchattacks ratios."""
from __future__ import annotations

import os
from typing import Iterator

import pytest
import torch

# case -> implementation -> (images/s from the mean round, images/s from the best round), filled by bench_pgd.py
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
    tr.section("PGD-10 linf: images per second, mean round / best round (ratio = ours / torchattacks)")
    for case, row in SPEEDS.items():
        tr.write_line(f"{case}:")
        base = row.get("torchattacks")
        for impl, (mean, best) in row.items():
            ratio = f"   ratio {mean / base[0]:.2f} / {best / base[1]:.2f}" if base and impl != "torchattacks" else ""
            tr.write_line(f"  {impl:15s} {mean:10,.0f} / {best:10,.0f} img/s{ratio}")
    tr.write_line(f"intra-op threads: {THREADS[0] if THREADS else torch.get_num_threads()} "
                  "(set ROCL_BENCH_THREADS to change)")
