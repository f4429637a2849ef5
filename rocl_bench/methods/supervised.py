"""Supervised baselines: standard cross-entropy, Madry PGD adversarial training, TRADES."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import pgd
from ..losses import trades_kl
from ..runtime import eval_mode, full_precision
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
        return trades_loss(model, (model,), x, y, self.params, eps, step, g)


def trades_loss(logits_of: Callable[[torch.Tensor], torch.Tensor], attacked: tuple[nn.Module, ...],
                x: torch.Tensor, y: torch.Tensor, p: TradesParams, eps: float, step: float, g: torch.Generator,
                fp32_attack: bool = False) -> StepOutput:
    """TRADES (Zhang et al.): CE(f(x), y) + β·KL(f(x) ‖ f(x_adv)), x_adv maximising the KL with the `attacked`
    modules in eval mode, from 0.001·N(0, 1) (random_start) or the clean image; `logits_of` is f (a model, or
    DynACL++'s pseudo-label head on the encoder's features), `fp32_attack` runs the attack with autocast off."""
    with eval_mode(*attacked), full_precision(x) if fp32_attack else contextlib.nullcontext():
        with torch.no_grad():
            target = logits_of(x)
        init = 0.001 * torch.randn(x.shape, generator=g) if p.random_start else None
        x_adv = pgd(lambda xa, idx: (trades_kl(logits_of(xa), target[idx]), None), x, norm="linf", eps=eps,
                    step=step, steps=p.steps, rand_init=False, generator=g, init=init)
    logits = logits_of(x)
    robust = trades_kl(logits_of(x_adv), logits).mean()
    loss = F.cross_entropy(logits, y) + p.beta * robust
    return StepOutput(loss, int((logits.argmax(1) == y).sum()), {"kl": float(robust.detach())})
