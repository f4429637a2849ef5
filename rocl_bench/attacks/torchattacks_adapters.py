"""torchattacks' FGSM and CW, run as they are; torch's global RNG is forked and seeded from the evaluation's
generator (one seed drawn per batch), so the caller's global RNG state is left as it was. torchattacks is
imported on first use (it alone takes ~3 s to import).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..config import require
from ..runtime import forked_rng
from .base import Attack, Family, Skip, check_eps, check_steps, register_attack


def draw_seed(generator: torch.Generator) -> int:
    """The one draw a torchattacks batch takes from the evaluation's generator (its seed for torch's RNG)."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def _skip_seed(xb: torch.Tensor, g: torch.Generator) -> None:
    draw_seed(g)


@register_attack
@dataclass(frozen=True)
class FGSM(Attack):
    """torchattacks.FGSM: one signed-gradient step of size eps (ℓ∞)."""

    name: ClassVar[str] = "fgsm"
    family: ClassVar[Family] = Family.WHITE_BOX
    title: ClassVar[str] = "FGSM"
    table_order: ClassVar[int] = 3
    cheap: ClassVar[bool] = True         # one step: being beaten by PGD at its budget is no alarm
    norm: ClassVar[str] = "linf"
    eps: float

    def validate(self, where: str) -> None:
        check_eps(self.eps, "linf", where)

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        import torchattacks

        with forked_rng(x.device, draw_seed(generator)):
            return torchattacks.FGSM(model, eps=self.eps)(x, y).detach()

    def skip_draws(self) -> Skip | None:
        return _skip_seed


@register_attack
@dataclass(frozen=True)
class CW(Attack):
    """torchattacks.CW (Carlini–Wagner ℓ2, fixed c), judged against an ℓ2 budget.

    CW minimises the perturbation rather than staying inside a ball, so a point counts as fooled only if its
    CW example lies within ℓ2 distance `eps`; points whose CW example is farther fall back to the clean input
    (they are robust at this budget as far as CW can tell).
    """

    name: ClassVar[str] = "cw"
    family: ClassVar[Family] = Family.WHITE_BOX
    title: ClassVar[str] = "CW"
    table_order: ClassVar[int] = 4
    norm: ClassVar[str] = "l2"
    eps: float
    c: float = 1.0
    kappa: float = 0.0
    steps: int = 100
    lr: float = 0.01

    def validate(self, where: str) -> None:
        check_eps(self.eps, "l2", where)
        require(self.c > 0, f"{where}.c", f"must be positive, got {self.c:g}")
        require(self.kappa >= 0, f"{where}.kappa", f"must be >= 0, got {self.kappa:g}")
        check_steps(self.steps, where)
        require(self.lr > 0, f"{where}.lr", f"must be positive, got {self.lr:g}")

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        import torchattacks

        with forked_rng(x.device, draw_seed(generator)):
            x_adv = torchattacks.CW(model, c=self.c, kappa=self.kappa, steps=self.steps, lr=self.lr)(x, y).detach()
        far = (x_adv - x).flatten(1).norm(dim=1) > self.eps
        return torch.where(far.view(-1, *([1] * (x.dim() - 1))), x, x_adv)

    def skip_draws(self) -> Skip | None:
        return _skip_seed
