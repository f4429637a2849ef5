"""RoCL's instance-wise attack: perturb one augmented view to break its match with another, no labels."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..losses import nt_xent, nt_xent_anchor_rows
from ..runtime import eval_mode
from .pgd import pgd


def instance_attack(model: nn.Module, view: torch.Tensor, target: torch.Tensor, *, eps: float, step: float,
                    steps: int, rand_init: bool, generator: torch.Generator, temperature: float = 0.5,
                    detach_keys: bool = True, keep: torch.Tensor | None = None,
                    embed: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Maximise NT-Xent of the pair (view + δ, target) against the batch's other images as negatives, with δ
    in the ℓ∞ ball of radius eps (RoCL's threat model).

    Encoder and projector run in eval mode during the attack and return to their previous mode after (as in
    the official code). The target's projection is a constant of the attack, so it is computed once, and each
    step forwards the perturbed view alone; with detached keys (the official default) the loss reduces to the
    perturbed view's own rows of the 2N×2N matrix (same gradient direction as the full matrix). `embed`
    replaces the projector (e.g. the encoder's features, to attack a supervised model's representation).
    """
    embed = embed or model.project

    def loss_fn(xa: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, None]:
        z = embed(xa)
        if detach_keys:
            return nt_xent_anchor_rows(z, z_target, temperature, keep), None
        return nt_xent(torch.cat([z, z_target]), 2, temperature, detach_keys=False, keep=keep).unsqueeze(0), None

    with eval_mode(model):
        with torch.no_grad():
            z_target = embed(target)
        return pgd(loss_fn, view, norm="linf", eps=eps, step=step, steps=steps, rand_init=rand_init,
                   generator=generator)
