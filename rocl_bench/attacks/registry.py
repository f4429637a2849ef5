"""Evaluation attacks, named in a suite's YAML by `type` and checked once into frozen dataclasses.

Every attack is a frozen dataclass that is at the same time its own spec (what a record stores) and the
object that runs: `norm` ('linf' | 'l2' | 'l1', or None for `clean`), `eps`, and
`run(model, x, y, generator) -> x_adv`. Budgets are on [0, 1] images. Our own attacks (clean, pgd, eot-pgd)
live here; the wrappers of torchattacks and pyautoattack live in attacks/library.py and register themselves
when this module is imported. `attacks.evaluate.evaluate` is the one place that runs them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import from_mapping, require, to_dict
from ..errors import UserError, suggest
from ..registry import Registry
from .pgd import pgd

NORMS = ("linf", "l2", "l1")


class Attack:
    """Base class of the registered attack dataclasses.

    Subclasses are frozen dataclasses with a `name` (the YAML `type`), a `norm` and an `eps`, and implement
    `run`. Attacks that report diagnostics (pyautoattack's checks) override `run_with_flags`. Attacks that do
    their own batching (AutoAttack, so that its batches are exactly pyautoattack's) set `batches_itself`.
    """

    name: ClassVar[str] = ""
    batches_itself: ClassVar[bool] = False
    norm: Optional[str]
    eps: float

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def run_with_flags(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                       batch_size: int = 256) -> tuple[torch.Tensor, list[str]]:
        """x_adv plus warnings worth keeping in the record (empty for attacks that have none)."""
        return self.run(model, x, y, generator), []

    def predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Labels the success test uses (EOT attacks average logits over several calls)."""
        return model(x).argmax(1)

    def check_input(self, x: torch.Tensor) -> None:
        """Budgets that cannot mean anything for images of this size are a user mistake, said in one line."""
        if self.norm in ("l1", "l2") and x.dim() > 1:
            d = x[0].numel()
            biggest = float(d) if self.norm == "l1" else math.sqrt(d)
            if self.eps > biggest:
                raise UserError(
                    f"attack '{self.name}': {self.norm} eps={self.eps:g} is larger than the largest {self.norm} "
                    f"distance between two images of {d} values in [0, 1] ({biggest:g}); "
                    f"use eps <= {biggest:g}")

    def describe(self) -> dict[str, Any]:
        """Plain mapping for records: {'type': name, **fields}."""
        return {"type": self.name, **to_dict(self)}


ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(cls: type[Attack]) -> type[Attack]:
    ATTACKS.register(cls.name)(cls)
    return cls


def build_attack(mapping: Any, where: str = "attack") -> Attack:
    """Build an attack from a YAML mapping {type: NAME, ...fields}; any mistake is one UserError naming `where`."""
    if isinstance(mapping, str):            # a bare name, e.g. `- clean`
        mapping = {"type": mapping}
    if not isinstance(mapping, Mapping):
        raise UserError(f"{where}: expected a mapping with a 'type' key, got {type(mapping).__name__}")
    if "type" not in mapping:
        raise UserError(f"{where}: missing required key 'type'; choose from: {', '.join(ATTACKS.names())}")
    kind = mapping["type"]
    if not isinstance(kind, str):
        raise UserError(f"{where}.type: expected an attack name, got {kind!r}; "
                        f"choose from: {', '.join(ATTACKS.names())}")
    cls = ATTACKS.get(kind, f"{where}.type")
    return from_mapping(cls, {k: v for k, v in mapping.items() if k != "type"}, where)


def attack_names() -> list[str]:
    return ATTACKS.names()


# ---------------------------------------------------------------- shared field checks
def canonical_norm(obj: Any, where: str, allowed: tuple[str, ...] = NORMS) -> None:
    """Accept 'Linf' / 'linf' / 'LINF' (pyautoattack spells them capitalised); store lower case."""
    value = str(obj.norm).lower()
    if value not in allowed:
        raise UserError(f"{where}.norm: '{obj.norm}' is not allowed{suggest(value, allowed)}; "
                        f"allowed: {', '.join(allowed)} (any case)")
    object.__setattr__(obj, "norm", value)


def check_eps(eps: float, norm: str, where: str) -> None:
    require(eps > 0, f"{where}.eps", f"must be positive, got {eps:g}")
    if norm == "linf":
        require(eps <= 1, f"{where}.eps", f"an linf budget on [0, 1] images must be at most 1, got {eps:g}")


def check_steps(steps: int, where: str, key: str = "steps") -> None:
    require(1 <= steps <= 100_000, f"{where}.{key}", f"must be between 1 and 100000, got {steps}")


def check_iterative(obj: Any, where: str) -> None:
    """The budget, step and restart checks that pgd and eot-pgd share (norm already canonical)."""
    check_eps(obj.eps, obj.norm, where)
    check_steps(obj.steps, where)
    require(obj.step_size is None or obj.step_size > 0, f"{where}.step_size",
            f"must be positive, got {obj.step_size}")
    require(1 <= obj.restarts <= 1000, f"{where}.restarts", f"must be between 1 and 1000, got {obj.restarts}")
    require(obj.restarts == 1 or obj.random_start, f"{where}.restarts",
            "restarts > 1 repeat the same attack without random_start: true")


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CW margin: largest other logit minus the true one (> 0 exactly when the point is misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return other - true


def _loss(name: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none") if name == "ce" else margin_loss(logits, y)


# ---------------------------------------------------------------- our attacks
@register_attack
@dataclass(frozen=True)
class Clean(Attack):
    """No attack: robust accuracy equals clean accuracy (the battery's reference row)."""

    name: ClassVar[str] = "clean"
    norm: ClassVar[Optional[str]] = None
    eps: ClassVar[float] = 0.0

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return x.detach().clone()


L1_STEP_RATIO = 1.0      # ℓ1 default step: eps·ratio per step (see PGD.step)


@register_attack
@dataclass(frozen=True)
class PGD(Attack):
    """Projected gradient descent on our engine (attacks.pgd), with restarts on the points still robust.

    Default step sizes: linf and l2 take 2.5·eps/steps (Madry et al.: the iterate can cross the ball and
    back). l1 takes eps·L1_STEP_RATIO per step: the sparse steepest step (Tramèr & Boneh) moves only the
    top (1 − l1_sparsity) share of coordinates (on 8×8 digits: one pixel per step), and the exact ℓ1 ∩ box
    projection pulls it back, so a step of the whole budget lets each sparse move use it. On the digits MLPs
    (standard and Madry, ε = 0.5, 1, 2) it was as strong as or slightly stronger than 2.5·eps/steps, eps/4 or
    eps/2, and at least as strong as APGD-L1 (see tests/test_attacks.py).
    Each point keeps the first iterate that fools the model (track_success), so a fooled point stays fooled
    and costs nothing afterwards.
    """

    name: ClassVar[str] = "pgd"
    eps: float
    norm: str = "linf"
    steps: int = 20
    step_size: Optional[float] = None
    random_start: bool = True
    restarts: int = 1
    loss: Literal["ce", "cw"] = "ce"
    l1_sparsity: float = 0.99

    def validate(self, where: str) -> None:
        canonical_norm(self, where)
        check_iterative(self, where)
        require(0 <= self.l1_sparsity < 1, f"{where}.l1_sparsity", f"must be in [0, 1), got {self.l1_sparsity}")

    @property
    def step(self) -> float:
        if self.step_size is not None:
            return self.step_size
        if self.norm == "l1":
            return self.eps * L1_STEP_RATIO
        return 2.5 * self.eps / self.steps

    def _once(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        def loss_fn(xa: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = model(xa)
            yi = y[idx]
            return _loss(self.loss, logits, yi), logits.detach().argmax(1) != yi

        return pgd(loss_fn, x, norm=self.norm, eps=self.eps, step=self.step, steps=self.steps,
                   rand_init=self.random_start, generator=g, track_success=True, l1_sparsity=self.l1_sparsity)

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self.check_input(x)
        return _with_restarts(self, model, x, y, generator)


def _with_restarts(attack: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   g: torch.Generator) -> torch.Tensor:
    """Restart r attacks only the points that every earlier restart left robust."""
    x_adv = attack._once(model, x, y, g)
    if attack.restarts == 1:
        return x_adv
    left = torch.arange(x.shape[0], device=x.device)
    for r in range(1, attack.restarts):
        with torch.no_grad():
            still = attack.predict(model, x_adv[left]) == y[left]
        left = left[still]
        if left.numel() == 0:
            break
        x_adv[left] = attack._once(model, x[left], y[left], g)
    return x_adv


@register_attack
@dataclass(frozen=True)
class EOTPGD(Attack):
    """PGD against a randomized model: each step's gradient is the mean over `eot_samples` calls.

    The model draws its own randomness (e.g. a transformation-smoothed classifier). The success test
    (`predict`) also averages the logits of `eot_samples` calls. Unlike `pgd` every point takes every step
    and the last iterate is returned: stopping at the first noisy 'success' would overstate robustness,
    because the final test draws fresh randomness. Gradients are accumulated one call at a time, so memory
    stays that of a single forward/backward.
    """

    name: ClassVar[str] = "eot-pgd"
    eps: float
    norm: str = "linf"
    steps: int = 20
    step_size: Optional[float] = None
    random_start: bool = True
    restarts: int = 1
    loss: Literal["ce", "cw"] = "ce"
    eot_samples: int = 10

    def validate(self, where: str) -> None:
        canonical_norm(self, where, ("linf", "l2"))
        check_iterative(self, where)
        require(1 <= self.eot_samples <= 10_000, f"{where}.eot_samples",
                f"must be between 1 and 10000, got {self.eot_samples}")

    @property
    def step(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps

    def mean_logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        total = model(x)
        for _ in range(self.eot_samples - 1):
            total = total + model(x)
        return total / self.eot_samples

    def predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return self.mean_logits(model, x).argmax(1)

    def _once(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        def loss_fn(xa: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, None]:
            yi = y[idx]
            grad = torch.zeros_like(xa)
            with torch.enable_grad():
                leaf = xa.detach().requires_grad_(True)
                for _ in range(self.eot_samples):
                    loss = _loss(self.loss, model(leaf), yi).sum()
                    grad += torch.autograd.grad(loss, leaf)[0]
            # a surrogate whose gradient in xa is the mean gradient (the engine differentiates it)
            surrogate = (xa * (grad / self.eot_samples)).flatten(1).sum(1)
            return surrogate, None

        return pgd(loss_fn, x, norm=self.norm, eps=self.eps, step=self.step, steps=self.steps,
                   rand_init=self.random_start, generator=g, track_success=False)

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return _with_restarts(self, model, x, y, generator)

