"""Protocols on a pretrained encoder: linear evaluation (LE), robust linear evaluation (rLE), fine-tuning."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .base import LinfBudget, Method, StepOutput, register_method
from .supervised import MADRY_STEP_RATIO, TRADES_STEP_RATIO, Madry, NoParams, Trades, TradesParams, ce_attack

# the official linear_eval.py as total_process.sh runs it: SGD lr 0.1, momentum 0.9, wd 5e-4, batch 1024, 150
# epochs; adjust_lr(e) runs after epoch e with lr_list [30, 50, 100], so the rate drops from epochs 31, 51, 101
LINEAR_DEFAULTS = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "step",
                   "milestones": [31, 51, 101], "epochs": 150, "batch_size": 1024}
# fine-tuning is linear_eval.py with --finetune: the same loop at its argparse batch size (128)
FINETUNE_DEFAULTS = {**LINEAR_DEFAULTS, "batch_size": 128}
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
    step_ratio: ClassVar[float] = RLE_STEP_RATIO     # step = ratio·ε when step_size is unset

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> StepOutput:
        eps, step = self.params.resolve(self.info, self.step_ratio)
        x_adv = ce_attack(model, x, y, self.params, eps, step, g)
        out = self.head_loss(model, x_adv, y)
        with torch.no_grad():
            out.correct = int((model(x).argmax(1) == y).sum())
        return out


@dataclass(frozen=True)
class FinetuneParams(TradesParams):
    objective: Literal["madry", "trades"] = "madry"
    step_ratio: float = RLE_STEP_RATIO   # step = ratio·ε when step_size is unset (official: 0.007 at 8/255)
    # "official": the whole network in eval mode while it trains, BatchNorm normalising with the encoder's
    # pre-trained statistics and never updating them (the official attack calls model.eval() and nothing sets
    # train mode back before the step); "train": BatchNorm in train mode for the step, as usual
    batchnorm: Literal["official", "train"] = "official"

    def validate(self, where: str) -> None:
        super().validate(where)
        from ..config import require
        require(self.step_ratio > 0, f"{where}.step_ratio", f"must be positive, got {self.step_ratio}")


@register_method
class Finetune(Method):
    """RoCL+AT / RoCL+TRADES: the whole network trained adversarially from a pretrained encoder."""

    name = "finetune"
    Params = FinetuneParams
    needs_encoder = True
    train_defaults = FINETUNE_DEFAULTS
    # before these existed the step was the objective's own ratio (Madry 1/4, TRADES 0.007/(8/255)) and
    # BatchNorm trained in train mode
    keyed_before = {"step_ratio": lambda p: MADRY_STEP_RATIO if p.objective == "madry" else TRADES_STEP_RATIO,
                    "batchnorm": "train"}

    def __init__(self, params: FinetuneParams, info) -> None:
        super().__init__(params, info)
        eps = params.eps if params.eps is not None else info.eps
        step = params.step_size if params.step_size is not None else eps * params.step_ratio
        if params.objective == "madry":
            self.inner: Method = Madry(LinfBudget(eps, step, params.steps, params.random_start), info)
        else:
            self.inner = Trades(TradesParams(eps, step, params.steps, params.random_start, params.beta), info)

    def set_train_mode(self, net: nn.Module) -> None:
        if self.params.batchnorm == "official":
            net.eval()
        else:
            super().set_train_mode(net)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> StepOutput:
        return self.inner.loss(model, x, y, g)
