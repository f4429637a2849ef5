"""SimCLR (two views) and RoCL (two views + the instance-wise adversarial view), one loss each."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import nn

from .. import distributed as dist
from ..attacks.instance import instance_attack
from ..config import require
from ..data.augment import AugmentSpec, augment
from ..losses import nt_xent
from ..runtime import eval_mode, full_precision
from .base import Method, StepOutput, check_budget, register_method, resolve_budget
from .false_negatives import FalseNegatives, keep_mask

ROCL_STEP_RATIO = 0.007 / (8 / 255)    # the official 0.007 per step at ε = 8/255

CONTRASTIVE_DEFAULTS = {"optimizer": "lars", "lr": 0.1, "weight_decay": 1e-6, "warmup_epochs": 10,
                        "warmup_multiplier": 15.0, "schedule": "cosine", "schedule_epochs": 1000,
                        "batch_size": 256}


@dataclass(frozen=True)
class SimCLRParams:
    temperature: float = 0.5
    detach_keys: bool = True             # official RoCL: mm(z, z.T.detach())
    projector_hidden: int = 2048
    projector_out: int = 128
    false_negatives: FalseNegatives = field(default_factory=FalseNegatives)
    # "batched": crop (+ flip) first, then colour; "official": colour, grayscale, then flip and crop, as the
    # official torchvision pipeline (the same on 1-channel images, which get no colour operations)
    augment_order: Literal["batched", "official"] = "batched"

    def validate(self, where: str) -> None:
        require(self.temperature > 0, f"{where}.temperature", f"must be > 0, got {self.temperature}")
        require(self.projector_hidden > 0 and self.projector_out > 0, f"{where}.projector_hidden",
                "projector sizes must be positive")


@register_method
class SimCLR(Method):
    """Plain contrastive learning: the CSL baseline (RoCL's loop with the attack off)."""

    name = "simclr"
    Params = SimCLRParams
    train_defaults = CONTRASTIVE_DEFAULTS
    yields = "encoder"                   # its head never trains: protocols (LE, rLE, fine-tuning) build on it
    trains = ("encoder", "projector")
    sync_batchnorm = True                # NT-Xent's batch is the global batch, so are BatchNorm's statistics

    def __init__(self, params: SimCLRParams, info) -> None:
        super().__init__(params, info)
        self.augment = replace(AugmentSpec.for_kind(info.augment), order=params.augment_order)

    def projector(self) -> tuple[int, int]:
        return self.params.projector_hidden, self.params.projector_out

    def views(self, x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return augment(x, self.augment, g), augment(x, self.augment, g)

    def contrast(self, z: torch.Tensor, views: int, y: torch.Tensor, temperature: float | None = None,
                 gather: bool = True) -> torch.Tensor:
        """NT-Xent of the global batch: under torchrun, every rank's projections (gradients flow back to each
        rank's own) and labels (for oracle false-negative removal) are gathered view by view, so N processes
        with n instances each compute the loss of one process with N·n; single-process, z is the batch.
        `gather=False` keeps the rank's own batch; `temperature` defaults to the params' τ."""
        if gather and dist.active():
            z, y = dist.gather_views(z, views), dist.gather(y)
        keep = keep_mask(self.params.false_negatives, z, y, views)
        tau = self.params.temperature if temperature is None else temperature
        return nt_xent(z, views, tau, self.params.detach_keys, keep)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> StepOutput:
        t1, t2 = self.views(x, g)
        return StepOutput(self.contrast(model.project(torch.cat([t1, t2])), 2, y))


@dataclass(frozen=True)
class RoCLParams(SimCLRParams):
    eps: float | None = None             # dataset default (8/255 on CIFAR)
    step_size: float | None = None       # 0.007 at 8/255
    steps: int = 7
    random_start: bool = True
    regularizer_weight: float = 1 / 256  # λ (the official --lamda 256 divides the loss)
    attack_to: Literal["other", "original"] = "other"
    regularize_to: Literal["other", "original"] = "other"
    reuse_projections: bool = False      # regulariser from the 3-view pass (BN sees 3N, not 2N): faster
    attack_false_negatives: bool = False  # apply false-negative removal inside the attack loss too
    attack_temperature: float = 0.5      # the official code hard-codes τ = 0.5 in the attack and the regulariser;
    regularizer_temperature: float = 0.5  # `temperature` is the main loss's
    # "local": the regulariser's NT-Xent over the rank's own batch under torchrun (official: multi_gpu=False);
    # "global": over the gathered batch, as the main loss
    regularizer_batch: Literal["local", "global"] = "local"
    attack_amp: bool = False             # the attack under the loop's bf16 autocast (CUDA); official: fp32

    def validate(self, where: str) -> None:
        super().validate(where)
        require(self.attack_temperature > 0 and self.regularizer_temperature > 0, f"{where}.attack_temperature",
                "temperatures must be > 0")
        check_budget(self, where)
        require(self.regularizer_weight >= 0, f"{where}.regularizer_weight", "must be >= 0")


@register_method
class RoCL(SimCLR):
    """Adversarial contrastive learning: t(x), t'(x) and t(x)^adv pulled together (Kim et al. 2020)."""

    name = "rocl"
    Params = RoCLParams
    keyed_before = {"attack_temperature": lambda p: p.temperature,       # both followed τ before
                    "regularizer_temperature": lambda p: p.temperature}

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> StepOutput:
        p = self.params
        eps, step = resolve_budget(p, self.info, ROCL_STEP_RATIO)
        t1, t2 = self.views(x, g)
        target = t2 if p.attack_to == "other" else t1
        attack_keep = None
        if p.attack_false_negatives and p.false_negatives.mode != "none":
            with torch.no_grad(), eval_mode(model):
                attack_keep = keep_mask(p.false_negatives, model.project(torch.cat([t1, target])), y, 2)
        with full_precision(t1) if not p.attack_amp else nullcontext():
            x_adv = instance_attack(model, t1.float(), target.float(), eps=eps, step=step, steps=p.steps,
                                    rand_init=p.random_start, generator=g, temperature=p.attack_temperature,
                                    detach_keys=p.detach_keys, keep=attack_keep)
        n = len(x)
        z = model.project(torch.cat([t1, t2, x_adv]))
        main = self.contrast(z, 3, y)
        if p.reuse_projections:
            z_reg = torch.cat([z[2 * n:], z[n:2 * n] if p.regularize_to == "other" else z[:n]])
        else:
            z_reg = model.project(torch.cat([x_adv, t2 if p.regularize_to == "other" else t1]))
        reg = self.contrast(z_reg, 2, y, p.regularizer_temperature, gather=p.regularizer_batch == "global")
        return StepOutput(main + p.regularizer_weight * reg, extras={"reg": float(reg.detach())})
