"""Faithfulness to the official RoCL code (Kim-Minseon/RoCL @ b6d5185), one test per departure fixed, and the
model keys of committed suites, which must not move when a default does."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rocl_bench.data import dataset_info
from rocl_bench.data.augment import AugmentSpec, augment
from rocl_bench.methods import contrastive
from rocl_bench.methods.contrastive import RoCL, RoCLParams
from rocl_bench.methods.linear import Finetune, FinetuneParams
from rocl_bench.models import ModelSpec, build_model
from rocl_bench.train import make_train_config
from rocl_bench.train.folder import keyed_params
from rocl_bench.train.loop import schedule_time
from rocl_bench.train.optim import learning_rate

ROOT = Path(__file__).resolve().parents[1]


def _lr(cfg, epoch: int, frac: float = 0.0) -> float:
    return learning_rate(cfg.lr, schedule_time(cfg, epoch, frac), total=cfg.epochs, schedule=cfg.schedule,
                         warmup_epochs=cfg.warmup_epochs, warmup_multiplier=cfg.warmup_multiplier,
                         milestones=list(cfg.milestones), gamma=cfg.gamma, schedule_epochs=cfg.schedule_epochs)


# ---------------------------------------------------------------- 1, 2: linear evaluation and fine-tuning
def _official_adjust_lr(base: float, epoch: int) -> float:
    """linear_eval.py: adjust_lr(epoch) runs after epoch `epoch`; the rate of epoch e is set by adjust_lr(e-1)."""
    if epoch == 0:
        return base
    done = epoch - 1
    return base * 0.1 ** sum(done >= m for m in (30, 50, 100))


@pytest.mark.parametrize("method", ["linear", "robust-linear", "finetune"])
def test_protocol_defaults_are_the_official_linear_eval(method):
    cfg = make_train_config({"method": method, "dataset": "cifar10", "model": "resnet18", "encoder": "e.pt"}, "t")
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.epochs) == ("sgd", 0.1, 0.9, 5e-4, 150)
    assert cfg.batch_size == (128 if method == "finetune" else 1024)     # total_process.sh: 1024; argparse: 128
    for epoch in range(150):
        for frac in (0.0, 0.5):
            assert _lr(cfg, epoch, frac) == pytest.approx(_official_adjust_lr(0.1, epoch)), (epoch, frac)


def test_finetune_attack_step_and_batchnorm_are_official():
    info = dataset_info("cifar10")
    for objective in ("madry", "trades"):
        ft = Finetune(FinetuneParams(objective=objective), info)
        assert ft.inner.params.step_size == pytest.approx(0.007 * info.eps / (8 / 255))   # 0.007 at 8/255
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    Finetune(FinetuneParams(), info).set_train_mode(net)
    assert not any(m.training for m in net.modules())          # the official loop never sets train mode back
    Finetune(FinetuneParams(batchnorm="train"), info).set_train_mode(net)
    assert all(m.training for m in net.modules())


# ---------------------------------------------------------------- 3, 4, 7: RoCL's attack and regulariser
def _rocl(monkeypatch, **params):
    info = dataset_info("digits")
    method = RoCL(RoCLParams(**params), info)
    spec = ModelSpec("mlp", 10, info.channels, info.image_size, tuple(info.mean), tuple(info.std), (32, 16))
    model = build_model(spec)
    seen: dict = {"gathers": []}

    def fake_attack(model, view, target, **kw):
        seen["attack_dtype"] = model.project(view).dtype
        seen["attack_temperature"] = kw["temperature"]
        return view.detach()

    monkeypatch.setattr(contrastive, "instance_attack", fake_attack)
    x = torch.rand(8, info.channels, info.image_size, info.image_size)
    return method, model, x, seen


@pytest.mark.parametrize("batch, gathered", [("local", [3]), ("global", [3, 2])])
def test_regulariser_uses_the_local_batch_under_torchrun(monkeypatch, batch, gathered):
    method, model, x, seen = _rocl(monkeypatch, regularizer_batch=batch)
    monkeypatch.setattr(contrastive.dist, "active", lambda: True)
    monkeypatch.setattr(contrastive.dist, "gather_views", lambda z, views: seen["gathers"].append(views) or z)
    monkeypatch.setattr(contrastive.dist, "gather", lambda t: t)
    method.loss(model, x, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(0))
    assert seen["gathers"] == gathered                         # main loss (3 views) always; regulariser only if global


@pytest.mark.parametrize("attack_amp, dtype", [(False, torch.float32), (True, torch.bfloat16)])
def test_attack_runs_in_fp32_under_the_loops_autocast(monkeypatch, attack_amp, dtype):
    method, model, x, seen = _rocl(monkeypatch, attack_amp=attack_amp)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=True):     # the loop's bf16 region
        out = method.loss(model, x, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(0))
    assert seen["attack_dtype"] == dtype and torch.isfinite(out.loss)


def test_attack_and_regulariser_temperature_are_the_official_half(monkeypatch):
    method, model, x, seen = _rocl(monkeypatch, temperature=0.2)
    taus = []
    real = method.contrast
    monkeypatch.setattr(method, "contrast", lambda z, v, y, t=None, gather=True: taus.append(t) or real(z, v, y, t, gather))
    method.loss(model, x, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(0))
    assert seen["attack_temperature"] == 0.5 and taus == [None, 0.5]     # the main loss keeps τ = 0.2


# ---------------------------------------------------------------- 5: the official ResNet18
class _KuangliuBlock(nn.Module):                # the official models/resnet.py BasicBlock, verbatim in structure
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class _KuangliuResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1, self.layer2 = self._make(64, 1), self._make(128, 2)
        self.layer3, self.layer4 = self._make(256, 2), self._make(512, 2)

    def _make(self, planes, stride):
        layers = []
        for s in (stride, 1):
            layers.append(_KuangliuBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return F.avg_pool2d(out, 4).view(out.size(0), -1)


def test_resnet18_official_is_kuangliu_without_normalisation():
    info = dataset_info("cifar10")
    model = build_model(ModelSpec("resnet18-official", 10, 3, 32, tuple(info.mean), tuple(info.std)))
    ref = _KuangliuResNet18()
    ours = {k: v.shape for k, v in model.encoder.state_dict().items()}
    assert ours == {k: v.shape for k, v in ref.state_dict().items()}         # official keys load as they are
    assert sum(p.numel() for p in model.encoder.parameters()) == sum(p.numel() for p in ref.parameters()) == 11_168_832
    model.encoder.load_state_dict(ref.state_dict())
    model.eval(), ref.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert model.features(x).shape == (2, 512) and model(x).shape == (2, 10)
        assert torch.allclose(model.features(x), ref(x), atol=1e-6)          # the [0, 1] image, not normalised
    assert isinstance(model.normalize, nn.Identity)


# ---------------------------------------------------------------- 6: the rate set once per epoch
class _GradualWarmupScheduler(torch.optim.lr_scheduler.LRScheduler):
    """The official src/warmup_scheduler/scheduler.py (ildoonet's), its code for a non-plateau after-scheduler."""

    def __init__(self, optimizer, multiplier, total_epoch, after_scheduler=None):
        self.multiplier, self.total_epoch, self.after_scheduler, self.finished = multiplier, total_epoch, after_scheduler, False
        super().__init__(optimizer)

    def get_lr(self):
        if self.last_epoch > self.total_epoch:
            if self.after_scheduler:
                if not self.finished:
                    self.after_scheduler.base_lrs = [base_lr * self.multiplier for base_lr in self.base_lrs]
                    self.finished = True
                return self.after_scheduler.get_lr()
            return [base_lr * self.multiplier for base_lr in self.base_lrs]
        return [base_lr * ((self.multiplier - 1.) * self.last_epoch / self.total_epoch + 1.) for base_lr in self.base_lrs]

    def step(self, epoch=None, metrics=None):
        if self.finished and self.after_scheduler:
            self.after_scheduler.step(None)
        else:
            return super().step(epoch)


def _official_schedule(epochs: int) -> list[float]:
    """rocl_train.py: SGD lr 0.1 (under LARS), GradualWarmupScheduler(multiplier 15, total_epoch 10, after
    CosineAnnealingLR(T_max=epochs)), scheduler_warmup.step() at the start of each epoch."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    warm = _GradualWarmupScheduler(opt, 15.0, 10, torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs))
    rates = []
    for _ in range(epochs):
        warm.step()
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
    return rates


def test_epoch_lr_update_follows_the_official_scheduler():
    import warnings
    fields = {"method": "rocl", "dataset": "cifar10", "model": "resnet18", "epochs": 1000, "lr_update": "epoch",
              "schedule_epochs": 1010}
    cfg = make_train_config(fields, "t")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        official = _official_schedule(1000)
    assert official[0] == pytest.approx(0.24)
    for epoch in range(1000):
        assert _lr(cfg, epoch, 0.0) == _lr(cfg, epoch, 0.9)               # constant within the epoch
        assert _lr(cfg, epoch) == pytest.approx(official[epoch], abs=1e-5), epoch
    step = make_train_config({**fields, "lr_update": "step"}, "t")
    mean0 = sum(_lr(step, 0, i / 100) for i in range(100)) / 100
    assert 0.16 < mean0 < 0.18                                             # our default moves within the epoch


# ---------------------------------------------------------------- 8: augmentation order
def test_official_augment_order_differs_on_colour_and_not_on_gray():
    colour = torch.rand(16, 3, 32, 32)
    gray = torch.rand(16, 1, 32, 32)
    batched, official = AugmentSpec(), AugmentSpec(order="official")
    g = lambda: torch.Generator().manual_seed(3)        # noqa: E731
    assert not torch.allclose(augment(colour, batched, g()), augment(colour, official, g()), atol=1e-3)
    assert torch.equal(augment(gray, batched, g()), augment(gray, official, g()))
    digit = AugmentSpec.for_kind("digit")
    assert torch.equal(augment(colour, digit, g()), augment(colour, AugmentSpec(**{**digit.__dict__,
                                                                                     "order": "official"}), g()))
    out = augment(colour, official, g())
    assert out.shape == colour.shape and 0 <= out.min() and out.max() <= 1


def test_rocl_passes_its_augment_order():
    method = RoCL(RoCLParams(augment_order="official"), dataset_info("cifar10"))
    assert method.augment.order == "official"


# ---------------------------------------------------------------- model keys
def test_keys_read_params_relative_to_their_old_meaning():
    base = {"method": "finetune", "dataset": "cifar10", "model": "resnet18", "encoder": "e.pt"}
    pinned = make_train_config({**base, "params": {"objective": "madry", "step_ratio": 0.25, "batchnorm": "train"}}, "t")
    assert keyed_params(pinned) == {"objective": "madry"}              # as the key was before these existed
    fresh = keyed_params(make_train_config({**base, "params": {"objective": "madry"}}, "t"))
    assert fresh["batchnorm"] == "official" and fresh["step_ratio"] == pytest.approx(0.007 / (8 / 255))
    assert "step_ratio" not in keyed_params(make_train_config({**base, "params": {"objective": "trades"}}, "t"))
    rocl = {"method": "rocl", "dataset": "cifar10", "model": "resnet18"}
    assert keyed_params(make_train_config(rocl, "t")) == {}              # τ = 0.5: attack and regulariser as before
    assert keyed_params(make_train_config({**rocl, "params": {"temperature": 0.2}}, "t")) == {
        "temperature": 0.2, "attack_temperature": 0.5, "regularizer_temperature": 0.5}


COMMITTED = {   # model keys of committed results before the faithfulness defaults changed (must never move)
    ("ci_train.yaml", "simclr_le"): "82280e0e9e1a098f", ("ci_train.yaml", "rocl_rle"): "199e0297a2745d9c",
    ("ci_train.yaml", "rocl"): "a1f95488a6286325",
    ("cifar10_jpeg_small.yaml", "rocl_le"): "9d96d3b2582c2cb4",
    ("cifar10_jpeg_small.yaml", "rocl_at"): "d5754671fb03a762",
    ("cifar10_jpeg_small.yaml", "rocl_trades"): "169787fcc53985dd",
    ("mnist.yaml", "rocl_15ep_at"): "d28f808c993de9ef", ("mnist.yaml", "rocl_fn_rle"): "0629a7be7d331a2b",
    ("quickstart.yaml", "rocl_at"): "62e36d67e0fc5912", ("quickstart.yaml", "rocl_rle"): "0cc14d2bc8841b67",
}


def test_committed_model_keys_do_not_move():
    from rocl_bench.bench.suite import load_suite
    suites: dict = {}
    for (name, model), key in COMMITTED.items():
        suite = suites.setdefault(name, load_suite(ROOT / "suites" / name))
        assert suite.model_identity(model)["train"] == key, (name, model)


def test_lr_update_at_its_default_leaves_the_key_alone():
    from rocl_bench.train.folder import identity_hash
    cfg = make_train_config({"method": "standard"}, "t")
    assert identity_hash(cfg) == identity_hash(make_train_config({"method": "standard", "lr_update": "step"}, "t"))
    assert identity_hash(cfg) != identity_hash(make_train_config({"method": "standard", "lr_update": "epoch"}, "t"))
    assert not math.isnan(cfg.lr)
