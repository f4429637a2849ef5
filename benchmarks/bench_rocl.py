"""One RoCL training step and one instance-wise attack (ResNet18, 32×32): ours vs the official way.

The reference reproduces the official code's work with our loss functions: each attack step forwards
cat(x_adv, target) and takes the full 2N×2N loss; the regulariser makes its own forward pass. Each test runs
the variants in interleaved rounds in one process (benchmarks/interleave.py) and reports the median per-round
speed-up over the official way. Run with
`pytest benchmarks/bench_rocl.py --benchmark-only -s` (batch $ROCL_BENCH_BATCH, default 32 on the CPU and 128 on
CUDA; rounds $ROCL_BENCH_ROUNDS, default 3; about 5 min on a 2-core CPU, seconds on a GPU).
"""
import os

import torch

from rocl_bench.attacks.instance import instance_attack
from rocl_bench.attacks.pgd import pgd
from rocl_bench.data import dataset_info
from rocl_bench.losses import nt_xent
from rocl_bench.methods.contrastive import RoCL, RoCLParams
from rocl_bench.models import ModelSpec, build_model

from interleave import interleaved_rounds, summary

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
BATCH = int(os.environ.get("ROCL_BENCH_BATCH", 128 if DEVICE.type == "cuda" else 32))
ARCH = os.environ.get("ROCL_BENCH_ARCH", "resnet18")
ROUNDS = int(os.environ.get("ROCL_BENCH_ROUNDS", 3))
EPS, STEP, STEPS = 8 / 255, 0.007, 7


def _model():
    torch.manual_seed(0)
    info = dataset_info("cifar10")
    m = build_model(ModelSpec(ARCH, 10, 3, 32, info.mean, info.std, (2048, 128))).to(DEVICE)
    if DEVICE.type == "cuda":
        m = m.to(memory_format=torch.channels_last)
    return m


def _batch():
    return torch.rand(BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(DEVICE)


def official_attack(model, view, target, g):
    was = model.training
    model.eval()

    def loss_fn(xa, idx):
        return nt_xent(model.project(torch.cat([xa, target])), 2).unsqueeze(0), None

    x = pgd(loss_fn, view, norm="linf", eps=EPS, step=STEP, steps=STEPS, rand_init=True, generator=g)
    model.train(was)
    return x


def official_step(model, method, x, g, opt):
    t1, t2 = method.views(x, g)
    x_adv = official_attack(model, t1, t2, g)
    loss = nt_xent(model.project(torch.cat([t1, t2, x_adv])), 3)
    loss = loss + nt_xent(model.project(torch.cat([x_adv, t2])), 2) / 256
    opt.zero_grad()
    loss.backward()
    opt.step()


def our_step(model, method, x, g, opt):
    out = method.loss(model, x, None, g)
    opt.zero_grad()
    out.loss.backward()
    opt.step()


def _autocast():
    return torch.autocast(device_type=DEVICE.type, dtype=torch.bfloat16, enabled=DEVICE.type == "cuda")


def _timed(fn):
    def run():
        with _autocast():
            fn()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
    return run


def _report(benchmark, times, what):
    benchmark.extra_info.update(batch=BATCH, arch=ARCH, device=str(DEVICE), **summary(times, "official"))
    print(f"\n{what} ({ARCH}, batch {BATCH}, {DEVICE}, {len(times['official'])} interleaved rounds, median s): "
          + ", ".join(f"{k} {v}" for k, v in benchmark.extra_info.items() if k.endswith(("_s", "_official"))))


def test_rocl_step(benchmark):
    """One training step: the official way, ours, ours with reuse_projections (each with its own model copy,
    so the optimiser steps of one do not change the work of another)."""
    info = dataset_info("cifar10")
    x = _batch()
    impls = {}
    for variant in ("official", "ours", "ours-reuse"):
        model = _model().train()
        method = RoCL(RoCLParams(reuse_projections=variant == "ours-reuse"), info)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        fn = official_step if variant == "official" else our_step
        impls[variant] = _timed(lambda fn=fn, model=model, method=method, opt=opt:
                                fn(model, method, x, torch.Generator().manual_seed(0), opt))
    times = {}
    benchmark.pedantic(lambda: times.update(interleaved_rounds(impls, ROUNDS)), rounds=1, iterations=1)
    _report(benchmark, times, "RoCL training step")


def test_instance_attack(benchmark):
    model = _model().train()
    x = _batch()
    t2 = x.flip(3)
    impls = {
        "official": _timed(lambda: official_attack(model, x, t2, torch.Generator().manual_seed(0))),
        "ours": _timed(lambda: instance_attack(model, x, t2, eps=EPS, step=STEP, steps=STEPS, rand_init=True,
                                               generator=torch.Generator().manual_seed(0))),
    }
    times = {}
    benchmark.pedantic(lambda: times.update(interleaved_rounds(impls, ROUNDS)), rounds=1, iterations=1)
    _report(benchmark, times, "instance-wise attack")
