"""DynACL (Luo et al., ICLR 2023): ACL with augmentations annealed from strong to weak and the adversarial term's
weight raised as they weaken; DynACL++ adds LP-AFT on pseudo labels.

Read from the official code (PKU-ML/DYNACL @ 7d143db, train_DynACL.py, LPAFT.py, assign_label.py):
- every K epochs (K = reload_frequency, 50 of 1000) the augmentation strength steps down,
  s = 1 − ⌊e/K⌋·K/E (e 0-based): crop scale (1 − 0.9s, 1), colour jitter (0.4s, 0.4s, 0.4s, 0.1s) with p 0.8s,
  grayscale p 0.2s, the flip kept;
- the loss is ((2 − w)·L_clean + w·L_adv) / 2 with w = min(1 + ⌊(e + 1)/K⌋·(K/E)·λ, 2), λ = 2/3 (the weight
  moves one epoch before the augmentation, as in the official code);
- the second view of every pair goes through a momentum (EMA, m = 0.99) copy of the network, which is also what
  the run yields (the official `model_encoder_k.pt`);
- DynACL++: k-means (10 clusters) of the DynACL encoder's features on the un-augmented training set, a linear
  probe on those pseudo labels (10 epochs, clean CE, encoder frozen, lr 0.01), then TRADES on them for the whole
  network (25 epochs, β 6, 10 steps, start at the clean image, lr 0.1 ÷10 at 10 and 20 of them).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import require
from ..data.augment import AugmentSpec
from .acl import ACL, ACL_STEP_RATIO, ACLParams
from .base import Method, StepOutput, register_method
from .dual_bn import branch, using_branch
from .pseudo_labels import assign, fit_centroids
from .supervised import TradesParams, trades_loss


def annealed(spec: AugmentSpec, strength: float) -> AugmentSpec:
    """The augmentation at strength s ∈ [0, 1]: every random operation moved towards the identity (s = 0) by
    the same factor (DynACL's rule for crop, jitter and grayscale; digits' rotation and aspect ratio alike)."""
    s = strength
    if s == 1:
        return spec
    lo, hi = spec.crop_scale
    r0, r1 = spec.crop_ratio
    return dataclasses.replace(
        spec, crop_scale=(1 - (1 - lo) * s, hi),
        crop_ratio=(math.exp(math.log(r0) * s), math.exp(math.log(r1) * s)),
        jitter=tuple(j * s for j in spec.jitter), jitter_p=spec.jitter_p * s, gray_p=spec.gray_p * s,
        rotate_deg=spec.rotate_deg * s)


@dataclass(frozen=True)
class DynACLParams(ACLParams):
    reload_frequency: int | None = None  # K; default E/20 (the official 50 of 1000), so short runs anneal too
    swap_param: float = 2 / 3            # λ
    momentum: float = 0.99               # EMA of the key network; 0 turns the momentum network off
    variant: str = "ds"

    def validate(self, where: str) -> None:
        super().validate(where)
        require(self.variant == "ds", f"{where}.variant", "DynACL builds on ACL's DS variant only; drop variant")
        require(self.reload_frequency is None or self.reload_frequency >= 1, f"{where}.reload_frequency",
                f"must be at least 1 epoch, got {self.reload_frequency}")
        require(0 <= self.momentum < 1, f"{where}.momentum", f"must be in [0, 1), got {self.momentum}")
        require(self.swap_param >= 0, f"{where}.swap_param", "must be >= 0")


def dynacl_schedule(epoch: int, epochs: int, k: int, swap: float) -> tuple[float, float]:
    """(augmentation strength s, adversarial weight w) of 0-based epoch `epoch` of `epochs`."""
    strength = 1 - (epoch // k) * k / epochs
    weight = min(1 + ((epoch + 1) // k) * (k / epochs) * swap, 2.0)
    return strength, weight


@register_method
class DynACL(ACL):
    name = "dynacl"
    Params = DynACLParams

    def __init__(self, params: DynACLParams, info) -> None:
        super().__init__(params, info)
        self.base_augment = self.augment
        self.weight = 1.0

    def setup(self, model: nn.Module) -> None:
        super().setup(model)
        if self.params.momentum > 0:
            key = copy.deepcopy(model)
            for p in key.parameters():
                p.requires_grad_(False)
            self.modules["key"] = key
            if "normal" in self.modules:
                self.modules["key_normal"] = copy.deepcopy(self.modules["normal"]).requires_grad_(False)

    def on_epoch_start(self, epoch: int) -> None:
        k = self.params.reload_frequency or max(1, round(self.epochs / 20))
        strength, self.weight = dynacl_schedule(epoch, self.epochs, k, self.params.swap_param)
        self.augment = annealed(self.base_augment, strength)

    def projections(self, net: nn.Module, x: torch.Tensor, normal: bool = False) -> torch.Tensor:
        """Projections of a view-major pair: the first view through the trained network, the second through
        the momentum network (no gradient to its weights); `normal`: both on the clean BatchNorm."""
        n = x.shape[0] // 2
        if "key" not in self.modules:
            with using_branch(self.model, self.normal_branch() if normal else None):
                return net.project(x)
        key = self.modules["key"]
        with using_branch(self.model, self.normal_branch() if normal else None):
            zq = net.project(x[:n])
        with using_branch(key, branch(self.modules, "key_normal") if normal else None):
            zk = key.project(x[n:])
        return torch.cat([zq, zk])

    @torch.no_grad()
    def momentum_update(self) -> None:
        m = self.params.momentum
        for pk, pq in zip(self.modules["key"].parameters(), self.model.parameters()):
            pk.mul_(m).add_(pq.detach(), alpha=1 - m)
        if "key_normal" in self.modules:
            for pk, pq in zip(self.modules["key_normal"].parameters(), self.modules["normal"].parameters()):
                pk.mul_(m).add_(pq.detach(), alpha=1 - m)

    def loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> StepOutput:
        t1, t2 = self.views(x, g)
        pair = torch.cat([t1, t2])
        adv = self.attack_pair(net, pair, g, project=lambda xa: self.projections(net, xa))
        adv_loss = self.contrast(self.projections(net, adv), 2, y)
        clean_loss = self.contrast(self.projections(net, pair, normal=True), 2, y)
        w = self.weight
        if "key" in self.modules:       # the official update: after the forward, before the optimizer's step
            self.momentum_update()
        return StepOutput(((2 - w) * clean_loss + w * adv_loss) / 2,
                          extras={"clean_loss": float(clean_loss.detach()), "adv_loss": float(adv_loss.detach())})

    def finish(self, model: nn.Module) -> None:
        """The run yields the momentum network, as the official code hands encoder_k to the protocols."""
        if "key" in self.modules:
            model.load_state_dict(self.modules["key"].state_dict())


# ---------------------------------------------------------------- DynACL++: LP-AFT on pseudo labels
@dataclass(frozen=True)
class PseudoAFTParams(TradesParams):
    clusters: int = 10
    probe_epochs: int = 10               # linear probe on the pseudo labels first (encoder frozen, lr ×0.1)
    random_start: bool = False           # DynACL's trades_loss starts at the clean image

    def validate(self, where: str) -> None:
        super().validate(where)
        require(self.clusters >= 2, f"{where}.clusters", f"must be at least 2, got {self.clusters}")
        require(self.probe_epochs >= 0, f"{where}.probe_epochs", "must be >= 0")


@register_method
class DynACLPlusPlus(Method):
    """DynACL++'s post-processing on a DynACL encoder: pseudo labels from k-means of its features, a linear
    probe on them, then TRADES on them. Yields the encoder, for the protocols (SLF, ALF, AFF) to take."""

    name = "dynacl++"
    Params = PseudoAFTParams
    needs_encoder = True
    yields = "encoder"
    trains = ("encoder",)
    train_defaults = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "step",
                      "milestones": [20, 30], "epochs": 35, "batch_size": 512}

    def setup(self, model: nn.Module) -> None:
        self.model = model
        assigner = copy.deepcopy(model.encoder).requires_grad_(False)
        self.modules["assigner"] = nn.Sequential(copy.deepcopy(model.normalize), assigner)
        self.modules["pseudo_head"] = nn.Linear(model.feature_dim, self.params.clusters)
        nn.init.zeros_(self.modules["pseudo_head"].weight)      # the official fc is zero-initialised
        nn.init.zeros_(self.modules["pseudo_head"].bias)
        self.centroids: list[torch.Tensor] = []
        self.probing = True

    def prepare(self, model: nn.Module, data: Any) -> None:
        self.centroids = fit_centroids(self.modules["assigner"], data, [self.params.clusters])

    def state(self) -> dict[str, Any]:
        return {"centroids": [c.cpu() for c in self.centroids]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.centroids = list(state.get("centroids", []))

    def on_epoch_start(self, epoch: int) -> None:
        self.probing = epoch < self.params.probe_epochs

    def lr_scale(self, epoch: int) -> float:
        return 0.1 if epoch < self.params.probe_epochs else 1.0

    def set_train_mode(self, net: nn.Module) -> None:
        net.eval() if self.probing else net.train()
        self.modules.train()
        self.modules["assigner"].eval()

    def loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> StepOutput:
        head = self.modules["pseudo_head"]
        with torch.no_grad():
            pseudo = assign(self.modules["assigner"](x), self.centroids[0])
        if self.probing:
            with torch.no_grad():
                feats = net.features(x)
            logits = head(feats)
            return StepOutput(F.cross_entropy(logits, pseudo), int((logits.argmax(1) == pseudo).sum()))
        eps, step = self.params.resolve(self.info, ACL_STEP_RATIO)
        return trades_loss(lambda xa: head(net.features(xa)), (self.model, head), x, pseudo, self.params, eps,
                           step, g, fp32_attack=True)
