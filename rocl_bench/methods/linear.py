"""Protocols on a pretrained encoder: linear evaluation (LE), robust linear evaluation (rLE), fine-tuning."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .base import LinfBudget, Method, StepOutput, register_method
from .supervised import Madry, NoParams, Trades, TradesParams, ce_attack

LINEAR_DEFAULTS = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "step",
                   "milestones": [30, 50, 100], "epochs": 150, "batch_size": 128}
RLE_STEP_RATIO = 0.007 / (8 / 255)


class _FrozenEncoder(Method):
    """Only the linear head learns; the encoder stays in eval mode (BatchNorm statistics frozen)."""

    needs_encoder = True
    train_defaults = LINEAR_DEFAULTS
    trains = ("head",)

    def set_train_mode(self, net: nn.Module) -> None:
        net.eval()

    def head_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        with torch.no_grad():
            feats = model.features(x)
        logits = model.head(feats)
        return StepOutput(F.cross_entropy(logits, y), int((logits.argmax(1) == y).sum()))


@register_method
class LinearEval(_FrozenEncoder):
    name = "linear"
    Params = NoParams

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> StepOutput:
        return self.head_loss(model, x, y)


@register_method
class RobustLinearEval(_FrozenEncoder):
    """rLE: the head is trained only on PGD examples made against encoder + head (CE, ℓ∞, 10 steps)."""

    name = "robust-linear"
    Params = LinfBudget

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> StepOutput:
        eps, step = self.params.resolve(self.info, RLE_STEP_RATIO)
        x_adv = ce_attack(model, x, y, self.params, eps, step, g)
        out = self.head_loss(model, x_adv, y)
        with torch.no_grad():
            out.correct = int((model(x).argmax(1) == y).sum())
        return out


@dataclass(frozen=True)
class FinetuneParams(TradesParams):
    objective: Literal["madry", "trades"] = "madry"


@register_method
class Finetune(Method):
    """RoCL+AT / RoCL+TRADES: the whole network trained adversarially from a pretrained encoder."""

    name = "finetune"
    Params = FinetuneParams
    needs_encoder = True

    def __init__(self, params: FinetuneParams, info) -> None:
        super().__init__(params, info)
        if params.objective == "madry":
            budget = LinfBudget(params.eps, params.step_size, params.steps, params.random_start)
            self.inner: Method = Madry(budget, info)
        else:
            self.inner = Trades(TradesParams(params.eps, params.step_size, params.steps, params.random_start,
                                             params.beta), info)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> StepOutput:
        return self.inner.loss(model, x, y, g)
