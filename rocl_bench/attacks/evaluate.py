"""Run one attack on a labelled set: clean predictions, the attack on clean-correct points, checked budgets."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from ..errors import UserError
from ..runtime import eval_mode, forked_rng
from .base import Attack
from .projections import distance

REL_TOL = 1e-5       # ε-ball tolerance, relative to ε (float round-off of x + δ − x)
ABS_TOL = 1e-6       # absolute slack for the ball and for the [0, 1] box


class AttackBoundsError(AssertionError):
    """A bug: an attack returned a point outside its ε-ball or outside [0, 1] (never a user mistake)."""


@dataclass
class EvalResult:
    """Per-example outcome. `robust` implies `clean_correct`; flags are the attack library's warnings."""

    clean_correct: torch.Tensor          # bool, N
    robust: torch.Tensor                 # bool, N: clean-correct and not fooled
    flags: list[str] = field(default_factory=list)
    x_adv: Optional[torch.Tensor] = None   # only with evaluate(..., return_adv=True); clean inputs where not attacked

    @property
    def n(self) -> int:
        return int(self.robust.numel())

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean_correct.float().mean()) if self.n else float("nan")

    @property
    def robust_accuracy(self) -> float:
        return float(self.robust.float().mean()) if self.n else float("nan")


def check_bounds(attack: Attack, x: torch.Tensor, x_adv: torch.Tensor) -> None:
    """Raise AttackBoundsError unless every x_adv is finite, in [0, 1] and inside the ε-ball of x."""
    label = f"attack '{attack.name}'"
    if x_adv.shape != x.shape:
        raise AttackBoundsError(f"{label} returned shape {tuple(x_adv.shape)} for inputs of shape {tuple(x.shape)}")
    if x_adv.numel() == 0:
        return
    flat = x_adv.detach().flatten(1)
    finite = torch.isfinite(flat).all(1)
    if not bool(finite.all()):
        i = int((~finite).nonzero()[0])
        raise AttackBoundsError(f"{label} returned non-finite values (first at batch index {i})")
    inside = ((flat >= -ABS_TOL) & (flat <= 1 + ABS_TOL)).all(1)
    if not bool(inside.all()):
        i = int((~inside).nonzero()[0])
        raise AttackBoundsError(
            f"{label} returned {int((~inside).sum())} point(s) outside the [0, 1] box (first at batch index {i}: "
            f"min {float(flat[i].min()):.6g}, max {float(flat[i].max()):.6g})")
    delta = (x_adv.detach() - x.detach()).to(torch.float64)
    if attack.norm is None:
        dist, limit, what = delta.flatten(1).abs().amax(1), ABS_TOL, "clean inputs (no perturbation allowed)"
    else:
        dist = distance(delta, attack.norm)
        limit = attack.eps * (1 + REL_TOL) + ABS_TOL
        what = f"{attack.norm} ball of radius {attack.eps:g}"
    bad = ~(dist <= limit)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise AttackBoundsError(
            f"{label} returned {int(bad.sum())} point(s) outside the {what} (first at batch index {i}: "
            f"distance {float(dist[i]):.8g}, allowed {limit:.8g})")


def checked_inputs(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The labelled set an evaluation may attack (detached images in [0, 1], labels on their device), or a
    UserError saying what is wrong with it."""
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    if x.shape[0] != y.shape[0]:
        raise UserError(f"{x.shape[0]} images but {y.shape[0]} labels")
    if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
        raise UserError(f"attacks expect images in [0, 1], got values in [{float(x.min()):.4g}, "
                        f"{float(x.max()):.4g}]; pass unnormalised images (models normalise inside)")
    return x.detach(), y.to(x.device)


@torch.no_grad()
def _predict(attack: Attack, model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([attack.predict(model, xb) for xb in x.split(batch_size)]) if len(x) else \
        torch.zeros(0, dtype=torch.long, device=x.device)


def evaluate(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256,
             seed: int = 0, return_adv: bool = False) -> EvalResult:
    """Clean and robust correctness of `model` on (x, y) under `attack`, deterministic for `seed`.

    The model runs in eval mode (its mode is restored afterwards). The attack sees only clean-correct points,
    batch_size at a time (AutoAttack gets them all and batches them itself, exactly as pyautoattack would);
    after each attack batch every returned point is checked to lie in [0, 1] and in the ε-ball of the attack's
    norm (AttackBoundsError otherwise). torch's global RNG is forked and seeded with `seed` for the call (for
    the libraries' and a randomized model's draws) and restored afterwards; our PGD draws from a
    torch.Generator seeded with `seed`. Works on the device of x (the model must be there too).
    """
    if attack.eps is None and attack.norm is not None:
        raise UserError(f"attack '{attack.name}' is a minimum-norm attack (no ε-ball): evaluate it with "
                        "evaluate_min_norm(), which records each point's minimal distance")
    x, y = checked_inputs(x, y, batch_size)
    attack.check_input(x)
    with eval_mode(model), forked_rng(x.device, seed):
        g = torch.Generator().manual_seed(seed)
        clean_correct = _predict(attack, model, x, batch_size) == y
        robust = torch.zeros_like(clean_correct)
        x_adv_all = x.clone() if return_adv else None
        flags: list[str] = []
        todo = clean_correct.nonzero().flatten()
        chunks = [todo] if attack.batches_itself else list(todo.split(batch_size))
        for idx in chunks:
            if idx.numel() == 0:
                continue
            xb, yb = x[idx], y[idx]
            x_adv, new_flags = attack.run_with_flags(model, xb, yb, g, batch_size=batch_size)
            check_bounds(attack, xb, x_adv)
            robust[idx] = _predict(attack, model, x_adv, batch_size) == yb
            for f in new_flags:
                if f not in flags:
                    flags.append(f)
            if x_adv_all is not None:
                x_adv_all[idx] = x_adv.to(x_adv_all.dtype)
    return EvalResult(clean_correct, robust, flags, x_adv_all)


@dataclass
class MinNormResult(EvalResult):
    """A minimum-norm cell: per point the distance of the closest adversarial example found (0 where the model
    is wrong on the clean input, +inf where none was found); `robust` is the points never fooled."""

    distances: Optional[torch.Tensor] = None      # float64, N


def check_box(attack: Attack, x: torch.Tensor, x_adv: torch.Tensor) -> None:
    """check_bounds without a ball: a minimum-norm attack has no ε, but its examples must be images."""
    if x_adv.shape != x.shape:
        raise AttackBoundsError(f"attack '{attack.name}' returned shape {tuple(x_adv.shape)} for inputs of shape "
                                f"{tuple(x.shape)}")
    flat = x_adv.detach().flatten(1)
    bad = ~(torch.isfinite(flat) & (flat >= -ABS_TOL) & (flat <= 1 + ABS_TOL)).all(1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise AttackBoundsError(f"attack '{attack.name}' returned {int(bad.sum())} point(s) outside the [0, 1] box "
                                f"or non-finite (first at batch index {i})")


def evaluate_min_norm(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256,
                      seed: int = 0) -> MinNormResult:
    """Per-point minimal distances of `model` on (x, y) under minimum-norm `attack`, deterministic for `seed`.

    As evaluate(): eval mode, forked and seeded RNG, only clean-correct points attacked, batch_size at a time.
    The distance recorded is measured here, on the returned example, and only where the model really is fooled
    by it (its prediction differs from the label); elsewhere it is +inf. So no distance is smaller than that of
    an adversarial example that exists, whatever the attack claims. Every example is checked to be in [0, 1]."""
    x, y = checked_inputs(x, y, batch_size)
    with eval_mode(model), forked_rng(x.device, seed):
        g = torch.Generator().manual_seed(seed)
        clean_correct = _predict(attack, model, x, batch_size) == y
        dist = torch.zeros(len(x), dtype=torch.float64, device=x.device)
        flags: list[str] = []
        for idx in clean_correct.nonzero().flatten().split(batch_size):
            if idx.numel() == 0:
                continue
            xb, yb = x[idx], y[idx]
            x_adv, new_flags = attack.run_with_flags(model, xb, yb, g, batch_size=batch_size)
            check_box(attack, xb, x_adv)
            fooled = _predict(attack, model, x_adv, batch_size) != yb
            d = distance((x_adv.detach() - xb).to(torch.float64), attack.norm)
            dist[idx] = torch.where(fooled, d, torch.full_like(d, float("inf")))
            flags.extend(f for f in new_flags if f not in flags)
    robust = clean_correct & torch.isinf(dist)
    return MinNormResult(clean_correct, robust, flags, None, dist)
