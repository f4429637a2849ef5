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
    # Work on the points still attacked (`cur`, their clean images `x0`, their batch positions `idx`); a point
    # that fools the model is written into x_adv once and dropped. No per-step gather/scatter while nobody is
    # fooled, and no extra forward after the last step (a point fooled by the last iterate returns that
    # iterate either way).
    idx = torch.arange(x.shape[0], device=x.device)
    cur, x0 = x_adv, x
    for _ in range(steps):
        xa = cur.detach().requires_grad_(True)
        with torch.enable_grad():
            loss, fooled = loss_fn(xa, idx)
        grad, = torch.autograd.grad(loss.sum(), xa)
        xd = xa.detach()
        if track_success and fooled is not None and bool(fooled.any()):
            x_adv[idx[fooled]] = xd[fooled]
            keep = ~fooled
            idx, xd, x0, grad = idx[keep], xd[keep], x0[keep], grad[keep]
            if idx.numel() == 0:
                return x_adv.detach()
        moved = xd + steepest_step(grad, xd, norm, step, l1_sparsity)
        cur = x0 + project(moved - x0, x0, norm, eps)
    x_adv[idx] = cur
    return x_adv.detach()
