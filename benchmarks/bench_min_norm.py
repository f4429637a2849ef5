"""One minimum-norm cell against the five fixed-ε ℓ∞ PGD cells it replaces, on MNIST cnn-small, in the same run.

Run:  ROCL_BENCH_DATA=../shared/data pytest benchmarks/bench_min_norm.py --benchmark-only -q -s
The model: a Madry-trained cnn-small (ℓ∞ ε = 0.1, 2 epochs on 3,000 MNIST training points, seed 0), or the
classifier checkpoint in $ROCL_BENCH_MODEL (e.g. a results/mnist/models/<name>/checkpoint.pt). The points: 200
stratified MNIST test images. `pgd-5-cells` is evaluate() with the registered `pgd` (20 steps, CE) at ε = 0.05,
0.1, 0.2, 0.3, 0.4, one cell per ε, as a suite would run them; `fmn` is evaluate_min_norm() with the registered
`fmn` (ℓ∞, 100 steps), one cell. Both run in interleaved rounds (benchmarks/interleave.py, $ROCL_BENCH_ROUNDS,
default 3); the figure is the median per-round ratio of seconds, pgd-5-cells / fmn (> 1: the curve is cheaper).
It also prints how far the FMN curve lies from each PGD cell (points of the 200, FMN minus PGD: negative means
FMN finds more) and the largest gap. Skipped without MNIST. Threads: $ROCL_BENCH_THREADS (default 1).
"""
from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

import pytest
import torch

from rocl_bench.attacks import build_attack, evaluate, evaluate_min_norm
from rocl_bench.data import load_dataset, stratified_subset
from rocl_bench.distances import robust_at
from rocl_bench.models.loading import classifier_from_checkpoint
from rocl_bench.train import make_train_config, train

from interleave import interleaved_rounds, median_ratio, summary

ROUNDS = int(os.environ.get("ROCL_BENCH_ROUNDS", 3))
BUDGETS = (0.05, 0.1, 0.2, 0.3, 0.4)
N_TEST = 200


def _mnist_case():
    root = os.environ.get("ROCL_BENCH_DATA", "../shared/data")
    if not (Path(root) / "MNIST").is_dir():
        pytest.skip(f"no MNIST under {root} (set ROCL_BENCH_DATA)")
    ckpt = os.environ.get("ROCL_BENCH_MODEL")
    if ckpt:
        model = classifier_from_checkpoint(torch.load(ckpt, weights_only=True), ckpt)
    else:
        with tempfile.TemporaryDirectory() as out:
            cfg = make_train_config({"method": "madry", "dataset": "mnist", "model": "cnn-small", "epochs": 2,
                                     "seed": 0, "data_root": root, "train_limit": 3000, "params": {"eps": 0.1}},
                                    "bench")
            model = classifier_from_checkpoint(train(cfg, out, progress=False, log=lambda s: None), out)
    full = load_dataset("mnist", False, root)
    x, y = full.batch(stratified_subset(full.labels, N_TEST, 0))
    return model.eval(), x, y


def test_fmn_curve_vs_five_pgd_cells(benchmark) -> None:
    model, x, y = _mnist_case()
    pgds = [build_attack({"type": "pgd", "norm": "linf", "eps": e, "steps": 20}, "bench") for e in BUDGETS]
    fmn = build_attack({"type": "fmn", "norm": "linf", "steps": 100}, "bench")
    out: dict[str, object] = {}

    def five_cells() -> None:
        out["pgd"] = [evaluate(model, a, x, y, batch_size=256, seed=0).robust_accuracy for a in pgds]

    def one_cell() -> None:
        out["fmn"] = evaluate_min_norm(model, fmn, x, y, batch_size=256, seed=0)

    times: dict[str, list[float]] = {}
    benchmark.group = "min-norm"
    benchmark.pedantic(lambda: times.update(interleaved_rounds({"pgd-5-cells": five_cells, "fmn": one_cell},
                                                                ROUNDS)), rounds=1, iterations=1)
    result = out["fmn"]
    dist = result.distances.numpy()
    curve = [100.0 * float((result.clean_correct.numpy() & robust_at(dist, e)).mean()) for e in BUDGETS]
    gaps = [round(c - 100.0 * p, 2) for c, p in zip(curve, out["pgd"])]
    info = summary(times, "fmn")
    speedup = median_ratio(times, "pgd-5-cells", "fmn")
    benchmark.extra_info.update(n=len(x), budgets=list(BUDGETS), pgd=[round(100 * p, 2) for p in out["pgd"]],
                                fmn_curve=[round(c, 2) for c in curve], gaps_points=gaps,
                                largest_gap_points=max(abs(g) for g in gaps), fmn_speedup_vs_5_pgd_cells=speedup,
                                **info)
    print(f"\nMNIST cnn-small (n={len(x)}): pgd-5-cells {statistics.median(times['pgd-5-cells']):.2f} s, "
          f"fmn {statistics.median(times['fmn']):.2f} s per round (median of {ROUNDS}); "
          f"one FMN cell is {speedup:.2f}x faster than the five PGD cells")
    for e, p, c, g in zip(BUDGETS, out["pgd"], curve, gaps):
        print(f"  ε={e:g}: PGD-20 {100 * p:5.1f} %  FMN curve {c:5.1f} %  gap {g:+.1f} points")
    print(f"  largest gap {max(abs(g) for g in gaps):.1f} points")
