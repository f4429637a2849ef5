"""Benchmark fixtures (not part of the test suite): models, inputs, and a summary of our/torchattacks ratios."""
from __future__ import annotations

import os
from typing import Iterator

import pytest
import torch

# case -> implementation -> images per second (mean over rounds), filled by bench_pgd.py
SPEEDS: dict[str, dict[str, float]] = {}


@pytest.fixture(scope="session", autouse=True)
def bench_threads() -> Iterator[int]:
    """Intra-op threads for every benchmark: $ROCL_BENCH_THREADS, default 1 (stable on a shared 2-core box)."""
    n = int(os.environ.get("ROCL_BENCH_THREADS", "1"))
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    yield n
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def speeds() -> dict[str, dict[str, float]]:
    return SPEEDS


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    if not SPEEDS:
        return
    tr = terminalreporter
    tr.section("PGD-10 linf: images per second (ours / torchattacks)")
    for case, row in SPEEDS.items():
        parts = [f"{k} {v:,.0f} img/s" for k, v in row.items()]
        ratio = ""
        if "ours" in row and "torchattacks" in row:
            ratio = f"  ratio ours/torchattacks = {row['ours'] / row['torchattacks']:.2f}x"
        if "ours-all-steps" in row and "torchattacks" in row:
            ratio += f" (all steps: {row['ours-all-steps'] / row['torchattacks']:.2f}x)"
        tr.write_line(f"{case}: " + ", ".join(parts) + ratio)
    tr.write_line(f"threads: {torch.get_num_threads()} (set ROCL_BENCH_THREADS to change)")
