"""Our PGD-10 ℓ∞ against torchattacks' PGD-10 on the same model, inputs and budget, in the same run.

Run:  pytest benchmarks/bench_pgd.py --benchmark-only -q
Cases: (a) the digits test set (360 images) on a Madry-trained digits MLP; (b) a random-init `cnn-small` on
random 3×32×32 inputs (batch 128) labelled with its own predictions. `ours` is the registered `pgd` attack
(it stops attacking a point once fooled); `ours-all-steps` is the engine with early stopping off, i.e. the
same work as torchattacks, for the per-step overhead. The three run in interleaved rounds in one process
(benchmarks/interleave.py, ROUNDS rounds); the figure is the median per-round ratio of images/s, ours /
torchattacks, printed in the summary at the end. Threads: $ROCL_BENCH_THREADS (default 1, see conftest.py).
"""
from __future__ import annotations

import os
import statistics
import tempfile
from typing import Callable

import pytest
import torch
import torch.nn.functional as F

from rocl_bench.attacks import pgd
from rocl_bench.attacks import build_attack
from rocl_bench.data import load_dataset
from rocl_bench.models.loading import classifier_from_checkpoint
from rocl_bench.models.nets import ModelSpec, build_model
from rocl_bench.train import make_train_config, train

from interleave import interleaved_rounds, median_ratio, summary

STEPS = 10
ROUNDS = int(os.environ.get("ROCL_BENCH_ROUNDS", 5))


def _digits_case():
    with tempfile.TemporaryDirectory() as out:
        cfg = make_train_config({"method": "madry", "dataset": "digits", "model": "mlp", "epochs": 15,
                                 "seed": 0, "batch_size": 64}, "bench")
        model = classifier_from_checkpoint(train(cfg, out, progress=False, log=lambda s: None), out)
    x, y = load_dataset("digits", False).batch()
    return model, x, y, 0.1


def _cnn_case():
    torch.manual_seed(0)
    spec = ModelSpec("cnn-small", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    model = build_model(spec).eval()
    x = torch.rand(128, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y, 8 / 255


CASES = {"digits-mlp-madry": _digits_case, "cnn-small-random-3x32x32": _cnn_case}
_BUILT: dict[str, tuple] = {}


def _impls(model, x, y, eps) -> dict[str, Callable[[], torch.Tensor]]:
    """The three implementations, same budget (ε, 10 steps of 2.5·ε/10, random start)."""
    import torchattacks

    ta = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / STEPS, steps=STEPS, random_start=True)
    attack = build_attack({"type": "pgd", "norm": "linf", "eps": eps, "steps": STEPS}, "bench")
    g = torch.Generator().manual_seed(0)

    def loss_fn(xa, idx):
        return F.cross_entropy(model(xa), y[idx], reduction="none"), None

    return {
        "torchattacks": lambda: ta(x, y),
        "ours": lambda: attack.run(model, x, y, g),
        "ours-all-steps": lambda: pgd(loss_fn, x, norm="linf", eps=eps, step=attack.step, steps=STEPS,
                                      rand_init=True, generator=g),
    }


@pytest.mark.parametrize("name", list(CASES))
def test_pgd10_linf(benchmark, name: str, speeds) -> None:
    model, x, y, eps = CASES[name]()
    impls = _impls(model, x, y, eps)
    torch.manual_seed(0)
    times: dict[str, list[float]] = {}
    benchmark.group = name
    benchmark.pedantic(lambda: times.update(interleaved_rounds(impls, ROUNDS)), rounds=1, iterations=1)
    benchmark.extra_info.update(n=len(x), **summary(times, "torchattacks"))
    speeds[name] = {impl: (len(x) / statistics.median(t), median_ratio(times, "torchattacks", impl))
                    for impl, t in times.items()}
