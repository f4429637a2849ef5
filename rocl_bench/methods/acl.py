"""ACL (Jiang et al., NeurIPS 2020): contrastive learning on adversarial views of both augmentations.

Read from the official code (VITA-Group/Adversarial-Contrastive-Learning @ 399eabd, train_simCLR.py): the DS
variant (the one its CLI trains and the RobustSSL benchmark evaluates) averages two NT-Xent losses, the clean
pair through the 'normal' BatchNorm and the adversarial pair through the 'pgd' one; the attack perturbs both
views to maximise the adversarial pair's NT-Xent (eval mode, 'pgd' BatchNorm, 5 steps of 2/255 at 8/255,
uniform start); nothing is detached; τ = 0.5. A2A (adversarial pair only) and A2S (one adversarial view against
one standard view) are the paper's other variants, which the official CLI does not expose.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..attacks.pgd import pgd
from ..data.augment import AugmentSpec
from ..losses import nt_xent
from ..runtime import eval_mode, full_precision
from .base import StepOutput, check_budget, register_method, resolve_budget
from .contrastive import SimCLR, SimCLRParams
from .dual_bn import batchnorm_branch, branch, using_branch

ACL_STEP_RATIO = 0.25                   # 2/255 per step at ε = 8/255
ACL_DEFAULTS = {"optimizer": "lars", "lr": 5.0, "weight_decay": 1e-6, "warmup_epochs": 10,
                "warmup_multiplier": 1.0, "schedule": "cosine", "schedule_epochs": None, "batch_size": 512,
                "epochs": 1000}


@dataclass(frozen=True)
class ACLParams(SimCLRParams):
    detach_keys: bool = False            # ACL's nt_xent detaches nothing (RoCL's does)
    projector_hidden: int = 512          # the official proj_head is 512-d throughout (512 → 512 → 512 → 512,
    projector_out: int = 512             # with BatchNorm); ours keeps two linear layers, no BatchNorm
    variant: Literal["ds", "a2a", "a2s"] = "ds"
    dual_bn: bool = True                 # DS / A2S: clean images through their own BatchNorm
    eps: float | None = None             # dataset default (8/255 on CIFAR)
    step_size: float | None = None       # 2/255 at 8/255
    steps: int = 5
    random_start: bool = True

    def validate(self, where: str) -> None:
        super().validate(where)
        check_budget(self, where)


def acl_augment(kind: str) -> AugmentSpec:
    """ACL's views: SimCLR's, with RandomResizedCrop's scale from 0.1 (torchvision's default 0.08)."""
    spec = AugmentSpec.for_kind(kind)
    return dataclasses.replace(spec, crop_scale=(0.1, 1.0)) if kind == "natural" else spec


@register_method
class ACL(SimCLR):
    """Adversarial contrastive learning with dual BatchNorm; yields the adversarial ('pgd') stream's encoder."""

    name = "acl"
    Params = ACLParams
    train_defaults = ACL_DEFAULTS

    def __init__(self, params: ACLParams, info) -> None:
        super().__init__(params, info)
        self.augment = dataclasses.replace(acl_augment(info.augment), order=params.augment_order)

    def setup(self, model: nn.Module) -> None:
        self.model = model
        if self.params.dual_bn and self.params.variant != "a2a":
            self.modules["normal"] = batchnorm_branch(model)

    def budget(self) -> tuple[float, float]:
        return resolve_budget(self.params, self.info, ACL_STEP_RATIO)

    def normal_branch(self) -> nn.ModuleDict | None:
        return branch(self.modules, "normal")

    def pair_loss(self, z: torch.Tensor) -> torch.Tensor:
        """NT-Xent of this process's two-view batch, what the attack maximises (the training loss, `contrast`,
        sees the global batch under torchrun). View-major rows; the official interleaved rows give the same."""
        return nt_xent(z, 2, self.params.temperature, self.params.detach_keys)

    def attack_pair(self, net: nn.Module, x: torch.Tensor, g: torch.Generator, first_only: bool = False,
                    project=None) -> torch.Tensor:
        """Both views (rows of x, view-major) perturbed at once to maximise the pair's NT-Xent, in eval mode on
        the adversarial BatchNorm; with first_only the second view stays clean (A2S)."""
        eps, step = self.budget()
        project = project or net.project
        n = x.shape[0] // 2
        with eval_mode(self.model, self.modules), full_precision(x):
            if first_only:
                with torch.no_grad():
                    z2 = project(x[n:])
                loss = lambda xa, idx: (self.pair_loss(torch.cat([project(xa), z2])).unsqueeze(0), None)  # noqa: E731
                return torch.cat([pgd(loss, x[:n], norm="linf", eps=eps, step=step, steps=self.params.steps,
                                      rand_init=self.params.random_start, generator=g), x[n:]])
            loss = lambda xa, idx: (self.pair_loss(project(xa)).unsqueeze(0), None)  # noqa: E731
            return pgd(loss, x, norm="linf", eps=eps, step=step, steps=self.params.steps,
                       rand_init=self.params.random_start, generator=g)

    def loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> StepOutput:
        t1, t2 = self.views(x, g)
        pair = torch.cat([t1, t2])
        variant, n = self.params.variant, len(x)
        if variant == "a2s":
            adv = self.attack_pair(net, pair, g, first_only=True)
            with using_branch(self.model, self.normal_branch()):
                z_std = net.project(t2)
            return StepOutput(self.contrast(torch.cat([net.project(adv[:n]), z_std]), 2, y))
        adv = self.attack_pair(net, pair, g)
        adv_loss = self.contrast(net.project(adv), 2, y)
        if variant == "a2a":
            return StepOutput(adv_loss)
        with using_branch(self.model, self.normal_branch()):
            clean_loss = self.contrast(net.project(pair), 2, y)
        return StepOutput((clean_loss + adv_loss) / 2, extras={"clean_loss": float(clean_loss.detach()),
                                                               "adv_loss": float(adv_loss.detach())})
