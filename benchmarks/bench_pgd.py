"""Our PGD-10 ℓ∞ against torchattacks' PGD-10 on the same model, inputs and budget, in the same run.

Run:  pytest benchmarks/bench_pgd.py --benchmark-only -q
Cases: (a) the digits test set (360 images) on a Madry-trained digits MLP; (b) a random-init `cnn-small` on
random 3×32×32 inputs (batch 128) labelled with its own predictions. `ours` is the registered `pgd` attack
(it stops attacking a point once fooled); `ours-all-steps` is the engine with early stopping off, i.e. the
same work as torchattacks, for the per-step overhead. Images per second = batch / mean round time.
"""
from __future__ import annotations

import tempfile

import pytest
import torch
import torch.nn.functional as F

from rocl_bench.attacks import pgd
from rocl_bench.attacks.registry import build_attack
from rocl_bench.data import load_dataset
from rocl_bench.models.loading import classifier_from_checkpoint
from rocl_bench.models.nets import ModelSpec, build_model
from rocl_bench.train import make_train_config, train

STEPS = 10
ROUNDS = 5


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


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    name = request.param
    if name not in _BUILT:
        _BUILT[name] = CASES[name]()
    return (name, *_BUILT[name])


def _record(benchmark, speeds, name: str, impl: str, n: int) -> None:
    ips = n / benchmark.stats.stats.mean
    benchmark.extra_info["images_per_s"] = round(ips, 1)
    speeds.setdefault(name, {})[impl] = ips


def test_torchattacks_pgd(benchmark, case, speeds) -> None:
    import torchattacks

    name, model, x, y, eps = case
    benchmark.group = name
    atk = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / STEPS, steps=STEPS, random_start=True)
    torch.manual_seed(0)
    benchmark.pedantic(lambda: atk(x, y), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    _record(benchmark, speeds, name, "torchattacks", len(x))


def test_ours_pgd(benchmark, case, speeds) -> None:
    name, model, x, y, eps = case
    benchmark.group = name
    attack = build_attack({"type": "pgd", "norm": "linf", "eps": eps, "steps": STEPS}, "bench")
    g = torch.Generator().manual_seed(0)
    benchmark.pedantic(lambda: attack.run(model, x, y, g), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    _record(benchmark, speeds, name, "ours", len(x))
    if "torchattacks" in speeds[name]:
        benchmark.extra_info["ratio_vs_torchattacks"] = round(speeds[name]["ours"] / speeds[name]["torchattacks"], 3)


def test_ours_pgd_all_steps(benchmark, case, speeds) -> None:
    name, model, x, y, eps = case
    benchmark.group = name
    g = torch.Generator().manual_seed(0)

    def loss_fn(xa, idx):
        return F.cross_entropy(model(xa), y[idx], reduction="none"), None

    benchmark.pedantic(lambda: pgd(loss_fn, x, norm="linf", eps=eps, step=2.5 * eps / STEPS, steps=STEPS,
                                   rand_init=True, generator=g),
                       rounds=ROUNDS, iterations=1, warmup_rounds=1)
    _record(benchmark, speeds, name, "ours-all-steps", len(x))
