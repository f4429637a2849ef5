"""One RoCL training step and one instance-wise attack (ResNet18, batch 128, 32×32): ours vs the official way.

The reference reproduces the official code's work with our loss functions: each attack step forwards
cat(x_adv, target) and takes the full 2N×2N loss; the regulariser makes its own forward pass. Run with
`pytest benchmarks/bench_rocl.py --benchmark-only` (minutes on a 2-core CPU; seconds on a GPU).
"""
import os

import pytest
import torch

from rocl_bench.attacks.instance import instance_attack
from rocl_bench.attacks.pgd import pgd
from rocl_bench.data import dataset_info
from rocl_bench.losses import nt_xent
from rocl_bench.methods.contrastive import RoCL, RoCLParams
from rocl_bench.models import ModelSpec, build_model

BATCH = int(os.environ.get("ROCL_BENCH_BATCH", 128))
ARCH = os.environ.get("ROCL_BENCH_ARCH", "resnet18")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
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


@pytest.mark.parametrize("variant", ["official", "ours", "ours-reuse"])
def test_rocl_step(benchmark, variant):
    model = _model().train()
    info = dataset_info("cifar10")
    method = RoCL(RoCLParams(reuse_projections=variant == "ours-reuse"), info)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = _batch()
    fn = official_step if variant == "official" else our_step

    def run():
        with _autocast():
            fn(model, method, x, torch.Generator().manual_seed(0), opt)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()

    run()   # warm-up
    benchmark.pedantic(run, rounds=int(os.environ.get("ROCL_BENCH_ROUNDS", 2)), iterations=1)
    benchmark.extra_info.update(batch=BATCH, arch=ARCH, device=str(DEVICE))


@pytest.mark.parametrize("variant", ["official", "ours"])
def test_instance_attack(benchmark, variant):
    model = _model().train()
    x = _batch()
    t2 = x.flip(3)

    def run():
        g = torch.Generator().manual_seed(0)
        with _autocast():
            if variant == "official":
                official_attack(model, x, t2, g)
            else:
                instance_attack(model, x, t2, eps=EPS, step=STEP, steps=STEPS, rand_init=True, generator=g)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()

    run()
    benchmark.pedantic(run, rounds=int(os.environ.get("ROCL_BENCH_ROUNDS", 2)), iterations=1)
    benchmark.extra_info.update(batch=BATCH, arch=ARCH, device=str(DEVICE))
