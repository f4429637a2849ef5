"""Transfer cells: adversarial examples crafted with a suite attack on a source model, judged on a target.

The runner crafts and judges them (bench.runner.Runner.transfer_cell) from the suite's `transfer` section;
this class is what their records are: the spec they store and the family that reports read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .base import Attack, Family, register_attack


@register_attack
@dataclass(frozen=True)
class Transfer(Attack):
    """`source`'s adversarial examples of `crafted_with` (a suite attack's spec, whose norm and eps they keep)."""

    name: ClassVar[str] = "transfer"
    family: ClassVar[Family] = Family.TRANSFER
    title: ClassVar[str] = "Transfer"
    in_suites: ClassVar[bool] = False
    source: str
    crafted_with: dict[str, Any]

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError("transfer examples are crafted on the source model by the runner "
                                  "(bench.runner.Runner.transfer_cell), not on the model under test")
