"""The clean pass: no attack, so robust accuracy equals clean accuracy (the battery's reference row)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
from torch import nn

from .base import Attack, Family, Skip, no_draws, register_attack


@register_attack
@dataclass(frozen=True)
class Clean(Attack):
    """No attack: robust accuracy equals clean accuracy (the battery's reference row)."""

    name: ClassVar[str] = "clean"
    family: ClassVar[Family] = Family.CLEAN
    title: ClassVar[str] = "Clean"
    norm: ClassVar[Optional[str]] = None
    eps: ClassVar[float] = 0.0

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return x.detach().clone()

    def skip_draws(self) -> Skip | None:
        return no_draws
