"""AdvCL (Fan et al., NeurIPS 2021): adversarial contrastive learning with a high-frequency view and a pseudo-label
term from clustering a standard contrastive encoder's features.

Read from the official code (LijieFan/AdvCL @ 24cb7a6, pretraining_advCL.py, fr_util.py, losses.py):
- views: two SimCLR augmentations t1, t2 (crop scale from 0.2) and an 'org' view (random 4-pixel crop, flip);
  from org an adversarial contrastive view x_cl ('pgd' BatchNorm), an adversarial pseudo-label view x_ce
  ('pgd_ce' BatchNorm) and a clean high-frequency view (ideal high-pass: FFT, frequencies within radius 8 of
  the centre at 32 px removed, real part, no clamping);
- contrastive loss: SupCon without labels over the four views [x_cl, t1, t2, HFC] at τ = 0.5, each anchor's
  positives its three other views, scaled by τ / 0.07 (the official base temperature stays 0.07);
- pseudo-label loss: the mean over k ∈ {2, 10, 50, 100, 500} of the cross-entropy of a linear head on x_ce's
  features against k-means labels, weighted 0.2; the official labels come from ImageNet-pretrained SimCLR
  features (ClusterFit) shipped as a file; here they come from k-means of the teacher encoder (--encoder);
- attack: 5 steps of 2/255 at 8/255 from a uniform start, x_cl and x_ce together on contrastive + 0.2 × the
  pseudo-label CE (summed over points), in train mode as the official loop leaves it.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.pgd import pgd
from ..config import require
from ..runtime import eval_mode, full_precision
from .acl import ACL_STEP_RATIO
from .base import StepOutput, check_budget, register_method, resolve_budget
from .contrastive import SimCLR, SimCLRParams
from .dual_bn import batchnorm_branch, branch, using_branch
from .pseudo_labels import assign, fit_centroids

ADVCL_DEFAULTS = {"optimizer": "sgd", "lr": 0.5, "momentum": 0.9, "weight_decay": 1e-4, "warmup_epochs": 10,
                  "warmup_multiplier": 1.0, "schedule": "cosine", "schedule_epochs": None, "batch_size": 512,
                  "epochs": 1000}


@dataclass(frozen=True)
class AdvCLParams(SimCLRParams):
    detach_keys: bool = False            # SupCon detaches nothing
    projector_hidden: int = 512          # the official head_proj: 512 → 512 (BatchNorm, ReLU) → 128
    base_temperature: float = 0.07       # the official SupConLoss scales by τ / base_temperature
    eps: float | None = None
    step_size: float | None = None       # 2/255 at 8/255
    steps: int = 5
    random_start: bool = True
    ce_weight: float = 0.2
    clusters: list[int] = field(default_factory=lambda: [2, 10, 50, 100, 500])
    hfc_radius: float = 0.25             # of the image size: 8 at 32 px
    dual_bn: bool = True
    attack_bn: Literal["train", "eval"] = "train"   # official: the attack runs with BatchNorm in train mode

    def validate(self, where: str) -> None:
        super().validate(where)
        check_budget(self, where)
        require(len(self.clusters) >= 1 and all(k >= 2 for k in self.clusters), f"{where}.clusters",
                f"must list cluster counts >= 2, got {self.clusters}")
        require(0 < self.hfc_radius < 1, f"{where}.hfc_radius", "is a fraction of the image size, in (0, 1)")
        require(self.base_temperature > 0 and self.ce_weight >= 0, f"{where}.ce_weight",
                "ce_weight must be >= 0 and base_temperature > 0")


def high_frequency(x: torch.Tensor, radius: float) -> torch.Tensor:
    """AdvCL's HFC view: per channel, the 2-D spectrum (centred) without the frequencies closer than `radius`
    pixels to its centre, transformed back; the real part, unclamped (it can be negative)."""
    h, w = x.shape[-2:]
    spec = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    i = torch.arange(h, device=x.device).view(-1, 1) - h / 2
    j = torch.arange(w, device=x.device).view(1, -1) - w / 2
    low = (i ** 2 + j ** 2).sqrt() < radius
    spec = spec * (~low).to(spec.real.dtype)
    return torch.fft.ifftn(torch.fft.ifftshift(spec, dim=(-2, -1)), dim=(-2, -1)).real


def shifted(x: torch.Tensor, pad: int, flip: bool, g: torch.Generator) -> torch.Tensor:
    """RandomCrop(size, padding=pad) (+ horizontal flip): each image moved by whole pixels, zeros brought in."""
    n, _, h, w = x.shape
    dx = torch.randint(-pad, pad + 1, (n,), generator=g).float() * 2 / w
    dy = torch.randint(-pad, pad + 1, (n,), generator=g).float() * 2 / h
    sx = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    zero = torch.zeros(n)
    theta = torch.stack([torch.stack([sx, zero, dx], 1), torch.stack([zero, torch.ones(n), dy], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


@register_method
class AdvCL(SimCLR):
    """Yields the adversarial ('pgd') stream's encoder; --encoder is the teacher whose features are clustered."""

    name = "advcl"
    Params = AdvCLParams
    train_defaults = ADVCL_DEFAULTS
    needs_encoder = True
    encoder_role = "teacher"

    def __init__(self, params: AdvCLParams, info) -> None:
        super().__init__(params, info)
        if info.augment == "natural":
            self.augment = dataclasses.replace(self.augment, crop_scale=(0.2, 1.0))
        self.centroids: list[torch.Tensor] = []

    def setup(self, model: nn.Module) -> None:
        self.model = model
        assert self.teacher is not None, "AdvCL is built with its teacher (encoder_role 'teacher')"
        self.modules["teacher"] = nn.Sequential(self.teacher.normalize, self.teacher.encoder)
        self.modules["pl_heads"] = nn.ModuleList(nn.Linear(model.feature_dim, k) for k in self.params.clusters)
        if self.params.dual_bn:
            self.modules["normal"] = batchnorm_branch(model)
            self.modules["pgd_ce"] = batchnorm_branch(model)

    def prepare(self, model: nn.Module, data: Any) -> None:
        self.centroids = fit_centroids(self.modules["teacher"], data, list(self.params.clusters))

    def state(self) -> dict[str, Any]:
        return {"centroids": [c.cpu() for c in self.centroids]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.centroids = list(state.get("centroids", []))

    def set_train_mode(self, net: nn.Module) -> None:
        super().set_train_mode(net)
        self.modules["teacher"].eval()

    def budget(self) -> tuple[float, float]:
        return resolve_budget(self.params, self.info, ACL_STEP_RATIO)      # 2/255 at 8/255, as ACL

    def supcon(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """SupCon without labels over 4 views: the mean −log p over each anchor's 3 positives, averaged over
        anchors, × τ / base τ; our NT-Xent sums over the positives, hence the / 3."""
        p = self.params
        return self.contrast(z, 4, y) / 3 * (p.temperature / p.base_temperature)

    def pseudo_ce(self, net: nn.Module, x_ce: torch.Tensor, labels: list[torch.Tensor],
                  reduction: str) -> torch.Tensor:
        with using_branch(self.model, branch(self.modules, "pgd_ce")):
            f = net.features(x_ce)
        heads = self.modules["pl_heads"]
        return sum(F.cross_entropy(h(f), pl, reduction=reduction) for h, pl in zip(heads, labels)) / len(labels)

    def loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> StepOutput:
        p, n = self.params, len(x)
        t1, t2 = self.views(x, g)
        size = x.shape[-1]
        org = shifted(x, max(1, round(size / 8)), self.augment.flip, g)
        hfc = high_frequency(org, p.hfc_radius * size)
        with torch.no_grad():
            feats = self.modules["teacher"](x)
            labels = [assign(feats, c) for c in self.centroids]
        with using_branch(self.model, branch(self.modules, "normal")):
            z_clean = net.project(torch.cat([t1, t2, hfc]))
        eps, step = self.budget()
        fixed = z_clean.detach()

        def attack_loss(xa: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, None]:
            contrast = self.supcon(torch.cat([net.project(xa[:n]), fixed]), y)
            return (contrast + p.ce_weight * self.pseudo_ce(net, xa[n:], labels, "sum")).unsqueeze(0), None

        mode = eval_mode(self.model, self.modules) if p.attack_bn == "eval" else contextlib.nullcontext()
        with mode, full_precision(x):
            adv = pgd(attack_loss, torch.cat([org, org]), norm="linf", eps=eps, step=step, steps=p.steps,
                      rand_init=p.random_start, generator=g)
        contrast = self.supcon(torch.cat([net.project(adv[:n]), z_clean]), y)
        ce = self.pseudo_ce(net, adv[n:], labels, "mean")
        return StepOutput(contrast + p.ce_weight * ce, extras={"contrast": float(contrast.detach()),
                                                               "pseudo_ce": float(ce.detach())})

