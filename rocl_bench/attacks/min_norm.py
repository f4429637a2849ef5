"""Minimum-norm attacks: FMN (adv-lib) and FAB (pyautoattack), run as the libraries ship them.

A minimum-norm attack has no budget: for each point it looks for the adversarial example closest to it, and
`evaluate_min_norm` records that distance (the whole curve of robust accuracy against ε comes from one run; see
rocl_bench/distances.py for what reports make of it). `run` returns, per point, the closest adversarial example
the attack found, or the clean input where it found none.

`targets: k` (k >= 1) attacks each of the k classes the model finds most likely on the clean input after the true
one, and keeps per point the closest example over the k runs (AutoAttack's targeted FAB-T / APGD-T convention);
0 (the default) is the untargeted attack.

FMN comes from adv-lib (Rony's adversarial-library, the `minnorm` extra; its visdom dependency is an sdist that
needs setuptools < 81 to build: `PIP_CONSTRAINT=.ci/build-constraints.txt`, see the README). FAB is pyautoattack's FABAttack_PT (attack_single_run, so that
the closest example is kept whatever its distance). Both are deterministic: neither draws from the
evaluation's generator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Optional

import torch
from torch import nn

from ..config import require
from ..errors import UserError
from .projections import distance
from .base import NORMS, Attack, Family, Skip, canonical_norm, check_steps, no_draws, register_attack

LIB_NORM = {"linf": math.inf, "l2": 2.0, "l1": 1.0}


def adv_lib_fmn() -> Callable[..., torch.Tensor]:
    """adv-lib's fmn, or a one-line error saying how to install it."""
    try:
        from adv_lib.attacks.fast_minimum_norm import fmn
    except ImportError as e:
        raise UserError(f"attack 'fmn' needs adv-lib ({e}); install it with: PIP_CONSTRAINT=.ci/build-constraints.txt "
                        "pip install 'rocl-bench[minnorm]' (the constraint lets its visdom dependency build)") from None
    return fmn


def target_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th most likely class other than y on the clean input, per point (k = 1: the runner-up)."""
    with torch.no_grad():
        logits = model(x).float()
    logits = logits.scatter(1, y[:, None], float("-inf"))
    return logits.argsort(1, descending=True)[:, k - 1]


class MinNormAttack(Attack):
    """Base of the minimum-norm attacks: no `eps`, a norm, a number of target classes; closest example kept."""

    family: ClassVar[Family] = Family.MIN_NORM
    eps: ClassVar[None] = None            # it finds ε itself (build_attack refuses an `eps` key)
    norm: str
    targets: int

    def validate_common(self, where: str) -> None:
        canonical_norm(self, where, NORMS)
        require(0 <= self.targets <= 1000, f"{where}.targets",
                f"must be between 0 (untargeted) and 1000, got {self.targets}")

    def check_input(self, x: torch.Tensor) -> None:
        """There is no budget to check against the image size."""

    def skip_draws(self) -> Skip | None:
        return no_draws

    def one_run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, rank: int) -> torch.Tensor:
        """The library's closest example for each point: untargeted (rank 0), else towards the rank-th most
        likely class after the true one."""
        raise NotImplementedError

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.targets == 0:
            return self.one_run(model, x, y, 0).detach()
        with torch.no_grad():
            n_classes = model(x[:1]).shape[1]
        best, best_d = x.clone(), torch.full((len(x),), math.inf, dtype=torch.float64, device=x.device)
        for rank in range(1, min(self.targets, n_classes - 1) + 1):
            adv = self.one_run(model, x, y, rank).detach()
            with torch.no_grad():
                fooled = model(adv).argmax(1) != y
            d = torch.where(fooled, distance((adv - x).double(), self.norm), torch.full_like(best_d, math.inf))
            better = d < best_d
            best[better], best_d[better] = adv[better], d[better]
        return best


@register_attack
@dataclass(frozen=True)
class FMN(MinNormAttack):
    """Fast Minimum-Norm (Pintor et al., NeurIPS 2021), adv-lib's `fmn` with its defaults but `steps`.

    The default is 100 steps (adv-lib: 10): on the digits CI models 300 and 1,000 steps left FMN's distance to
    the fixed-ε battery unchanged (within half a point at ε 0.1 and 0.2; README, speed table), so more steps
    only cost time. `alpha_init` (the first step of its normalised-gradient descent) defaults to 10 for linf
    and to adv-lib's 1.0 for l2 and l1: on the MNIST cnn-small models 1.0 left FMN ℓ∞ far weaker than PGD-CW
    (Madry AT (8 ep) at ε 0.4: 23.2 % robust against 0.0 %; TRADES at 0.3: 32.0 % against 20.0 %), 10 brought
    it to 1.6 % and 11.2 % (125 test points; 300 steps at 1.0 only to 13.6 % and 28.0 %)."""

    name: ClassVar[str] = "fmn"
    title: ClassVar[str] = "FMN"
    table_order: ClassVar[int] = 10
    norm: str = "linf"
    steps: int = 100
    targets: int = 0
    alpha_init: Optional[float] = None      # None: 10 for linf, 1.0 (adv-lib's default) for l2 and l1
    gamma_init: float = 0.05

    def validate(self, where: str) -> None:
        self.validate_common(where)
        check_steps(self.steps, where)
        require(self.alpha_init is None or self.alpha_init > 0, f"{where}.alpha_init",
                f"must be positive, got {self.alpha_init}")
        require(0 < self.gamma_init < 1, f"{where}.gamma_init", f"must be in (0, 1), got {self.gamma_init:g}")

    def one_run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, rank: int) -> torch.Tensor:
        fmn = adv_lib_fmn()
        labels = target_labels(model, x, y, rank) if rank else y
        alpha = self.alpha_init if self.alpha_init is not None else (10.0 if self.norm == "linf" else 1.0)
        return fmn(model, x, labels, norm=LIB_NORM[self.norm], targeted=rank > 0, steps=self.steps,
                   α_init=alpha, γ_init=self.gamma_init)


@register_attack
@dataclass(frozen=True)
class FAB(MinNormAttack):
    """FAB (Croce and Hein, ICML 2020), pyautoattack's FABAttack_PT with AutoAttack's settings (alpha_max 0.1,
    eta 1.05, beta 0.9), one run from the clean input (its restarts start at random inside an ε-ball, and a
    minimum-norm cell has no ε)."""

    name: ClassVar[str] = "fab"
    title: ClassVar[str] = "FAB"
    table_order: ClassVar[int] = 11
    norm: str = "linf"
    steps: int = 100
    targets: int = 0

    def validate(self, where: str) -> None:
        self.validate_common(where)
        check_steps(self.steps, where)

    def one_run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, rank: int) -> torch.Tensor:
        from pyautoattack.fab_pt import FABAttack_PT
        from .pyautoattack_adapters import AA_NORM

        d = x[0].numel()
        far = {"linf": 1.0, "l2": math.sqrt(d), "l1": float(d)}[self.norm]    # no budget: any distance is kept
        atk = FABAttack_PT(model, norm=AA_NORM[self.norm], n_restarts=1, n_iter=self.steps, eps=far,
                           alpha_max=0.1, eta=1.05, beta=0.9, verbose=False, seed=0, targeted=rank > 0,
                           device=x.device)
        # pyautoattack's target_class k is the k-th most likely class on the input; the true one is first
        atk.target_class = rank + 1
        return atk.attack_single_run(x, y, use_rand_start=False, is_targeted=rank > 0)

