"""Supervised baselines: standard cross-entropy, Madry PGD adversarial training, TRADES."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import pgd
from ..losses import trades_kl
from ..runtime import eval_mode
from .base import LinfBudget, Method, StepOutput, clean_correct, register_method

MADRY_STEP_RATIO = 0.25                 # 2/255 per step at 8/255 (Madry et al.)
TRADES_STEP_RATIO = 0.007 / (8 / 255)   # 0.007 at 8/255 (Zhang et al.)


@dataclass(frozen=True)
class NoParams:
    pass


@register_method
class Standard(Method):
    name = "standard"
    Params = NoParams

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> StepOutput:
        logits = model(x)
        return StepOutput(F.cross_entropy(logits, y), int((logits.argmax(1) == y).sum()))


def ce_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, budget: LinfBudget, eps: float,
              step: float, g: torch.Generator) -> torch.Tensor:
    """PGD on cross-entropy with the model in eval mode (BatchNorm statistics untouched), mode restored."""
    with eval_mode(model):
        return pgd(lambda xa, idx: (F.cross_entropy(model(xa), y[idx], reduction="none"), None), x,
                   norm="linf", eps=eps, step=step, steps=budget.steps, rand_init=budget.random_start, generator=g)


@register_method
class Madry(Method):
    name = "madry"
    Params = LinfBudget

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> StepOutput:
        eps, step = self.params.resolve(self.info, MADRY_STEP_RATIO)
        x_adv = ce_attack(model, x, y, self.params, eps, step, g)
        correct = clean_correct(model, x, y)
        return StepOutput(F.cross_entropy(model(x_adv), y), correct)


@dataclass(frozen=True)
class TradesParams(LinfBudget):
    beta: float = 6.0

    def validate(self, where: str) -> None:
        super().validate(where)
        from ..config import require
        require(self.beta >= 0, f"{where}.beta", f"must be >= 0, got {self.beta}")


@register_method
class Trades(Method):
    name = "trades"
    Params = TradesParams

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> StepOutput:
        eps, step = self.params.resolve(self.info, TRADES_STEP_RATIO)
        with eval_mode(model):
            with torch.no_grad():
                target = model(x)
            init = 0.001 * torch.randn(x.shape, generator=g) if self.params.random_start else None
            x_adv = pgd(lambda xa, idx: (trades_kl(model(xa), target[idx]), None), x, norm="linf", eps=eps,
                        step=step, steps=self.params.steps, rand_init=False, generator=g, init=init)
        logits = model(x)
        robust = trades_kl(model(x_adv), logits).mean()
        loss = F.cross_entropy(logits, y) + self.params.beta * robust
        return StepOutput(loss, int((logits.argmax(1) == y).sum()), {"kl": float(robust.detach())})
