"""False-negative removal (Gupta et al.): which same-class pairs to drop from contrastive denominators.

Detectors are registered by name so new rules plug in. `oracle` uses the labels (an upper bound);
`similarity` is label-free: per anchor it drops the k most similar non-positive rows and/or those whose cosine
similarity exceeds a threshold. The exact rule of Gupta et al. could not be confirmed, so these are our named
variants, not a claim to reproduce theirs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from ..config import require
from ..registry import Registry


@dataclass(frozen=True)
class FalseNegatives:
    mode: Literal["none", "oracle", "similarity"] = "none"
    top_k: int = 0
    threshold: float | None = None

    def validate(self, where: str) -> None:
        require(self.top_k >= 0, f"{where}.top_k", f"must be >= 0, got {self.top_k}")
        require(self.threshold is None or -1 <= self.threshold <= 1, f"{where}.threshold",
                f"is a cosine similarity, must be in [-1, 1], got {self.threshold}")
        require(self.mode != "similarity" or self.top_k > 0 or self.threshold is not None, f"{where}",
                "mode 'similarity' needs top_k > 0 or a threshold")


Detector = Callable[[FalseNegatives, torch.Tensor, torch.Tensor | None, int], torch.Tensor]
DETECTORS: Registry[Detector] = Registry("false-negative detector")


def _same_instance(vn: int, views: int, device: torch.device) -> torch.Tensor:
    inst = torch.arange(vn, device=device) % (vn // views)
    return inst[:, None] == inst[None, :]


@DETECTORS.register("oracle")
def _oracle(cfg: FalseNegatives, z: torch.Tensor, labels: torch.Tensor | None, views: int) -> torch.Tensor:
    if labels is None:
        raise ValueError("oracle false-negative removal needs labels")
    lab = labels.to(z.device).repeat(views)
    return ~(lab[:, None] == lab[None, :]) | _same_instance(z.shape[0], views, z.device)


@DETECTORS.register("similarity")
def _similarity(cfg: FalseNegatives, z: torch.Tensor, labels: torch.Tensor | None, views: int) -> torch.Tensor:
    zn = F.normalize(z.detach().float(), dim=1)
    sim = zn @ zn.T
    own = _same_instance(z.shape[0], views, z.device)
    sim = sim.masked_fill(own, float("-inf"))
    drop = torch.zeros_like(own)
    if cfg.threshold is not None:
        drop |= sim > cfg.threshold
    if cfg.top_k > 0:
        k = min(cfg.top_k, z.shape[0] - views)
        top = sim.topk(k, dim=1).indices
        drop.scatter_(1, top, True)
    return ~drop | own


def keep_mask(cfg: FalseNegatives, z: torch.Tensor, labels: torch.Tensor | None, views: int) -> torch.Tensor | None:
    """Boolean (views·N)² mask of the entries kept in the denominators, or None when nothing is removed."""
    if cfg.mode == "none":
        return None
    return DETECTORS.get(cfg.mode, "false_negatives.mode")(cfg, z, labels, views)
