"""The one projected-gradient engine, shared by training attacks (Madry, TRADES, RoCL, rLE) and evaluation."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .projections import project, random_start, steepest_step

# loss_fn(x_adv_subset, idx) -> (per-example loss to maximise, per-example "attack succeeded" or None)
LossFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, Optional[torch.Tensor]]]


def pgd(loss_fn: LossFn, x: torch.Tensor, *, norm: str, eps: float, step: float, steps: int,
        rand_init: bool, generator: torch.Generator, track_success: bool = False,
        l1_sparsity: float = 0.99, init: torch.Tensor | None = None) -> torch.Tensor:
    """Maximise loss_fn inside the ε-ball ∩ [0, 1] box.

    With track_success, each point keeps the first iterate that fools the model (a point fooled at any step
    stays fooled), and fooled points stop being attacked, so later steps cost less. Without it, every point
    takes every step (what training attacks need) and the last iterate is returned.
    """
    x = x.detach()
    if init is not None:                       # a caller's own start (TRADES starts 0.001·N(0, 1) away)
        x_adv = x + project(init.to(x), x, norm, eps)
    else:
        x_adv = x + random_start(x, norm, eps, generator) if rand_init else x.clone()
    n = x.shape[0]
    done = torch.zeros(n, dtype=torch.bool, device=x.device)
    best = x_adv.clone()
    all_idx = torch.arange(n, device=x.device)
    for i in range(steps + 1):
        idx = all_idx[~done] if track_success else all_idx
        if idx.numel() == 0:
            break
        last = i == steps
        if last and not track_success:
            break
        xa = x_adv[idx].requires_grad_(not last)
        with torch.set_grad_enabled(not last):
            loss, fooled = loss_fn(xa, idx)
        if track_success and fooled is not None:
            hit = idx[fooled]
            best[hit] = xa.detach()[fooled]
            done[hit] = True
        if last:
            break
        grad, = torch.autograd.grad(loss.sum(), xa)
        moved = xa.detach() + steepest_step(grad, xa.detach(), norm, step, l1_sparsity)
        x_adv[idx] = x[idx] + project(moved - x[idx], x[idx], norm, eps)
    return torch.where(done.view(-1, *([1] * (x.dim() - 1))), best, x_adv).detach()
