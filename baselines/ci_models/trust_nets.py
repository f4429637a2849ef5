"""Suite factories over the committed CI checkpoints, including models built to trip the alarms (bench/sanity.py).

Used by tests/test_trust_alarms.py and baselines/measure_gaps.py as `factory: 'trust_nets:NAME'` with this
folder on the import path:
- `standard`, `madry`: the CI digits MLPs as they are (no alarm expected);
- `saturated`, `madry_x1e4`: their logits multiplied by 1e4, so softmax saturates and cross-entropy gradients
  vanish while a margin loss still finds the examples (the weak-attack alarm);
- `quantized`: the standard MLP behind torch.round, a zero-gradient model (the per-point ε-order alarm).
"""
from pathlib import Path

import torch
from torch import nn

from rocl_bench.models.loading import classifier_from_checkpoint
from rocl_bench.train import load_checkpoint

HERE = Path(__file__).resolve().parent


def _load(name: str) -> nn.Module:
    path = HERE / f"{name}.pt"
    return classifier_from_checkpoint(load_checkpoint(path), path)


class Scaled(nn.Module):
    """Logits x 1e4: softmax saturates, so cross-entropy gradients vanish (underflow) on confident points."""

    def __init__(self, clf: nn.Module, scale: float = 1e4) -> None:
        super().__init__()
        self.clf, self.scale = clf, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clf(x) * self.scale


class Quantized(nn.Module):
    """Inputs rounded to quarters before the classifier: the gradient with respect to the input is zero."""

    def __init__(self, clf: nn.Module) -> None:
        super().__init__()
        self.clf = clf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clf(torch.round(x * 4) / 4)


def standard() -> nn.Module:
    return _load("standard")


def madry() -> nn.Module:
    return _load("madry")


def saturated() -> nn.Module:
    return Scaled(_load("standard"))


def madry_x1e4() -> nn.Module:
    return Scaled(_load("madry"))


def quantized() -> nn.Module:
    return Quantized(_load("standard"))
