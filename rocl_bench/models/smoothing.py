"""Transformation-smoothed inference (RoCL paper, not in its code): average logits over K random views."""
from __future__ import annotations

import torch
from torch import nn

from ..data.augment import AugmentSpec, augment


class SmoothedClassifier(nn.Module):
    """A randomized classifier: each call averages the logits of `samples` random augmentations of x.

    Because each call draws new transformations, a plain gradient attack sees a noisy gradient and can
    overstate robustness; evaluate it with `eot-pgd`, which averages the gradient over the same randomness.
    The wrapper owns its generator, so a seeded evaluation repeats exactly.
    """

    def __init__(self, model: nn.Module, samples: int = 8, spec: AugmentSpec | None = None, seed: int = 0) -> None:
        super().__init__()
        self.model = model
        self.samples = samples
        self.spec = spec or AugmentSpec.for_kind("natural")
        self.generator = torch.Generator().manual_seed(seed)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = torch.cat([augment(x, self.spec, self.generator) for _ in range(self.samples)])
        return self.model(views).view(self.samples, x.shape[0], -1).mean(0)
