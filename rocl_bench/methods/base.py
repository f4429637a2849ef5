"""What a training method is: a loss for one batch. The single training loop (train/loop.py) owns the rest."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..data import DatasetInfo
from ..registry import Registry
from ..runtime import eval_mode


@dataclass
class StepOutput:
    """Loss to minimise, plus what the epoch summary reports (correct counts of clean predictions)."""

    loss: torch.Tensor
    correct: int | None = None       # clean-correct training points in this batch (supervised heads)
    count: int = 0
    extras: dict[str, float] = field(default_factory=dict)


class Method:
    """Base class: subclasses set `Params` (a dataclass), defaults for the loop, and `loss`."""

    name: ClassVar[str] = ""
    Params: ClassVar[type] = object
    train_defaults: ClassVar[dict[str, Any]] = {}
    contrastive: ClassVar[bool] = False     # needs a projector, never sees labels (except oracle FN removal)
    needs_encoder: ClassVar[bool] = False   # linear protocols start from a pretrained encoder

    def __init__(self, params: Any, info: DatasetInfo) -> None:
        self.params = params
        self.info = info

    def trainable(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for n, p in model.named_parameters() if not n.startswith("projector.") or self.contrastive]

    def set_train_mode(self, model: nn.Module) -> None:
        model.train()

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> StepOutput:
        raise NotImplementedError


METHODS: Registry[type[Method]] = Registry("method")


def register_method(cls: type[Method]) -> type[Method]:
    METHODS.register(cls.name)(cls)
    return cls


@dataclass(frozen=True)
class LinfBudget:
    """An ℓ∞ PGD budget; unset ε takes the dataset's customary budget, unset step a fixed ratio of ε."""

    eps: float | None = None
    step_size: float | None = None
    steps: int = 10
    random_start: bool = True

    def validate(self, where: str) -> None:
        from ..config import require
        require(self.eps is None or 0 < self.eps <= 1, f"{where}.eps", f"must be in (0, 1] for [0, 1] images, "
                f"got {self.eps}")
        require(self.step_size is None or self.step_size > 0, f"{where}.step_size", "must be positive")
        require(1 <= self.steps <= 10_000, f"{where}.steps", f"must be between 1 and 10000, got {self.steps}")

    def resolve(self, info: DatasetInfo, step_ratio: float) -> tuple[float, float]:
        eps = self.eps if self.eps is not None else info.eps
        return eps, self.step_size if self.step_size is not None else eps * step_ratio


def clean_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Clean accuracy for the epoch summary, measured in eval mode without gradients."""
    with eval_mode(model), torch.no_grad():
        return int((model(x).argmax(1) == y).sum())
