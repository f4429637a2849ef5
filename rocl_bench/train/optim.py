"""LARS (as torchlars, which the official RoCL code uses) and the learning-rate schedule (warm-up, then decay)."""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling around SGD, with torchlars' semantics.

    Per parameter: g ← (g + wd·w) · trust·‖w‖ / (‖g‖ + wd·‖w‖ + eps) when both norms are positive (else the
    factor is 1); then plain SGD with momentum and no further weight decay.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coef: float = 0.001, eps: float = 1e-8) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coef=trust_coef, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        for group in self.param_groups:
            wd, trust, eps, mom = group["weight_decay"], group["trust_coef"], group["eps"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                scale = torch.where((w_norm > 0) & (g_norm > 0), trust * w_norm / (g_norm + w_norm * wd + eps),
                                    torch.ones_like(w_norm))
                d = (g + wd * p) * scale
                if mom:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d.clone()
                    else:
                        buf.mul_(mom).add_(d)
                    d = buf
                p.add_(d, alpha=-group["lr"])
        return None


def learning_rate(base: float, t: float, *, total: int, schedule: str, warmup_epochs: float,
                  warmup_multiplier: float, milestones: list[int], gamma: float, schedule_epochs: int | None) -> float:
    """Learning rate at fractional epoch t.

    Warm-up follows GradualWarmupScheduler: with multiplier m > 1 the rate climbs linearly from base to m·base
    over the warm-up epochs (the official RoCL code: ×15 over 10 epochs), with m = 1 from 0 to base. After it,
    cosine decays the peak to 0 at `schedule_epochs` (default: the run's epochs), or step decay multiplies by
    gamma at each milestone.
    """
    peak = base * warmup_multiplier
    if warmup_epochs > 0 and t < warmup_epochs:
        frac = t / warmup_epochs
        return base * (1 + (warmup_multiplier - 1) * frac) if warmup_multiplier > 1 else base * frac
    if schedule == "cosine":
        horizon = (schedule_epochs or total) - warmup_epochs
        done = min(max(t - warmup_epochs, 0.0), horizon)
        return peak * 0.5 * (1 + math.cos(math.pi * done / horizon)) if horizon > 0 else peak
    if schedule == "step":
        return peak * gamma ** sum(1 for m in milestones if t >= m)
    return peak


def make_optimizer(cfg: Any, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The configured optimizer over exactly the parameters the method trains (LARS or SGD with momentum)."""
    if cfg.optimizer == "lars":
        return LARS(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, trust_coef=cfg.lars_trust)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
