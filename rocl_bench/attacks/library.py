"""Wrappers of the reference attack libraries: torchattacks (FGSM, CW) and pyautoattack (AutoAttack, APGD, Square).

Both libraries draw from torch's global RNG (pyautoattack re-seeds it with its own `seed` before every
attack batch). Every wrapper runs inside `torch.random.fork_rng`, so the caller's global RNG state is left as
it was; torchattacks is seeded from the evaluation's generator, pyautoattack from `seed` (None: the
evaluation's seed). Both libraries are imported on first use (torchattacks alone takes ~3 s to import).

pyautoattack reports its sanity checks (randomized / dynamic defence, probabilities instead of logits, zero
gradients, too many target classes, Square beating the white-box attacks) through the 'auto-attack' logger at
WARNING level, or `warnings.warn` where no logger is given. We capture both, de-duplicated with a count, as
flags for the record, and silence everything else it would print or log.
"""
from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from dataclasses import dataclass
from typing import ClassVar, Iterator, Literal, Optional

import torch
from torch import nn

from ..config import require
from ..errors import UserError
from .registry import Attack, canonical_norm, check_eps, check_steps, register_attack

AA_NORM = {"linf": "Linf", "l2": "L2", "l1": "L1"}
AA_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
AALiteral = Literal["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]


@contextlib.contextmanager
def forked_rng(device: torch.device, seed: int | None = None) -> Iterator[None]:
    """Run with torch's global RNG forked (restored afterwards), optionally seeded."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def draw_seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


# ---------------------------------------------------------------- torchattacks
@register_attack
@dataclass(frozen=True)
class FGSM(Attack):
    """torchattacks.FGSM: one signed-gradient step of size eps (ℓ∞)."""

    name: ClassVar[str] = "fgsm"
    norm: ClassVar[str] = "linf"
    eps: float

    def validate(self, where: str) -> None:
        check_eps(self.eps, "linf", where)

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        import torchattacks

        with forked_rng(x.device, draw_seed(generator)):
            return torchattacks.FGSM(model, eps=self.eps)(x, y).detach()


@register_attack
@dataclass(frozen=True)
class CW(Attack):
    """torchattacks.CW (Carlini–Wagner ℓ2, fixed c), judged against an ℓ2 budget.

    CW minimises the perturbation rather than staying inside a ball, so a point counts as fooled only if its
    CW example lies within ℓ2 distance `eps`; points whose CW example is farther fall back to the clean input
    (they are robust at this budget as far as CW can tell).
    """

    name: ClassVar[str] = "cw"
    norm: ClassVar[str] = "l2"
    eps: float
    c: float = 1.0
    kappa: float = 0.0
    steps: int = 100
    lr: float = 0.01

    def validate(self, where: str) -> None:
        check_eps(self.eps, "l2", where)
        require(self.c > 0, f"{where}.c", f"must be positive, got {self.c:g}")
        require(self.kappa >= 0, f"{where}.kappa", f"must be >= 0, got {self.kappa:g}")
        check_steps(self.steps, where)
        require(self.lr > 0, f"{where}.lr", f"must be positive, got {self.lr:g}")

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        import torchattacks

        with forked_rng(x.device, draw_seed(generator)):
            x_adv = torchattacks.CW(model, c=self.c, kappa=self.kappa, steps=self.steps, lr=self.lr)(x, y).detach()
        far = (x_adv - x).flatten(1).norm(dim=1) > self.eps
        return torch.where(far.view(-1, *([1] * (x.dim() - 1))), x, x_adv)


# ---------------------------------------------------------------- pyautoattack
class _Collect(logging.Handler):
    def __init__(self, out: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        self.out.append(record.getMessage())


@contextlib.contextmanager
def pyautoattack_checks(flags: list[str]) -> Iterator[None]:
    """Collect pyautoattack's warnings (logger and warnings.warn) into `flags`; silence its other output.

    Also guards two side effects of its `checks.check_dynamic`: the call counter it keeps is module-global and
    never reset (one dynamic model would flag every later one), and it ends with sys.settrace(None), which
    would switch off a coverage tracer or debugger; we reset the counter and restore the tracer.
    """
    from pyautoattack import checks

    for k in checks.funcs:
        checks.funcs[k] = 0
    tracer = sys.gettrace()
    logger = logging.getLogger("auto-attack")
    raw: list[str] = []
    handler = _Collect(raw)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("always")
            yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        sys.settrace(tracer)
    for w in caught:
        if "pyautoattack" in str(w.filename):
            raw.append(str(w.message))
        else:                                # not theirs: pass it on untouched
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    counts: dict[str, int] = {}
    for msg in raw:
        counts[msg] = counts.get(msg, 0) + 1
    flags.extend(f"pyautoattack: {m}" + (f" (x{n})" if n > 1 else "") for m, n in counts.items())


class _PyAutoAttack(Attack):
    seed: Optional[int]

    def aa_seed(self, generator: torch.Generator) -> int:
        """`seed`, or else the evaluation's seed (evaluate() seeds its generator with it)."""
        return self.seed if self.seed is not None else int(generator.initial_seed())

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.run_with_flags(model, x, y, generator)[0]


def _check_seed(seed: Optional[int], where: str) -> None:
    require(seed is None or seed >= 0, f"{where}.seed", f"must be >= 0, got {seed}")


@register_attack
@dataclass(frozen=True)
class AutoAttackSpec(_PyAutoAttack):
    """pyautoattack.AutoAttack.run_standard_evaluation, unchanged: same batches, same seed, its own outputs.

    evaluate() hands it all clean-correct points at once with the evaluation's batch size, so its batches
    are exactly those of a direct call on the whole set (AutoAttack itself only attacks the clean-correct
    points, in order, batch_size at a time) and the robust points agree to the last example.
    """

    name: ClassVar[str] = "autoattack"
    batches_itself: ClassVar[bool] = True
    eps: float
    norm: str = "linf"
    version: Literal["standard", "plus", "rand", "custom"] = "standard"
    attacks: Optional[list[AALiteral]] = None
    seed: Optional[int] = None

    def validate(self, where: str) -> None:
        canonical_norm(self, where)
        check_eps(self.eps, self.norm, where)
        _check_seed(self.seed, where)
        if self.version == "custom":
            if not self.attacks:
                raise UserError(f"{where}.attacks: version 'custom' needs a list of attacks, from: "
                                f"{', '.join(AA_ATTACKS)}")
        elif self.attacks is not None:
            raise UserError(f"{where}.attacks: only allowed with version: custom (version '{self.version}' "
                            "fixes its own attacks); drop it or set version: custom")

    def run_with_flags(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                       batch_size: int = 256) -> tuple[torch.Tensor, list[str]]:
        from pyautoattack import AutoAttack

        flags: list[str] = []
        with forked_rng(x.device), pyautoattack_checks(flags):
            aa = AutoAttack(model, norm=AA_NORM[self.norm], eps=self.eps, version=self.version,
                            attacks=list(self.attacks) if self.attacks else None, seed=self.aa_seed(generator),
                            device=x.device)
            aa.verbose = False
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=batch_size)
        return x_adv.detach(), flags


@register_attack
@dataclass(frozen=True)
class APGD(_PyAutoAttack):
    """One APGD run of pyautoattack (APGD-CE or APGD-DLR), as AutoAttack configures it (rho 0.75, no EOT)."""

    name: ClassVar[str] = "apgd"
    eps: float
    norm: str = "linf"
    loss: Literal["ce", "dlr"] = "ce"
    steps: int = 100
    restarts: int = 1
    seed: Optional[int] = None

    def validate(self, where: str) -> None:
        canonical_norm(self, where)
        check_eps(self.eps, self.norm, where)
        check_steps(self.steps, where)
        require(1 <= self.restarts <= 1000, f"{where}.restarts", f"must be between 1 and 1000, got {self.restarts}")
        _check_seed(self.seed, where)

    def run_with_flags(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                       batch_size: int = 256) -> tuple[torch.Tensor, list[str]]:
        from pyautoattack.autopgd_base import APGDAttack

        flags: list[str] = []
        with forked_rng(x.device), pyautoattack_checks(flags):
            atk = APGDAttack(model, n_iter=self.steps, norm=AA_NORM[self.norm], n_restarts=self.restarts,
                             eps=self.eps, seed=self.aa_seed(generator), loss=self.loss, eot_iter=1, rho=0.75,
                             verbose=False, device=x.device, logger=logging.getLogger("auto-attack"))
            x_adv = atk.perturb(x, y)
        return x_adv.detach(), flags


@register_attack
@dataclass(frozen=True)
class Square(_PyAutoAttack):
    """pyautoattack's Square Attack (score-based, no gradients), with AutoAttack's schedule (no rescaling)."""

    name: ClassVar[str] = "square"
    eps: float
    norm: str = "linf"
    queries: int = 5000
    p_init: float = 0.8
    seed: Optional[int] = None

    def validate(self, where: str) -> None:
        canonical_norm(self, where, ("linf", "l2"))
        check_eps(self.eps, self.norm, where)
        check_steps(self.queries, where, "queries")
        require(0 < self.p_init <= 1, f"{where}.p_init", f"must be in (0, 1], got {self.p_init:g}")
        _check_seed(self.seed, where)

    def run_with_flags(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                       batch_size: int = 256) -> tuple[torch.Tensor, list[str]]:
        from pyautoattack.square import SquareAttack

        flags: list[str] = []
        with forked_rng(x.device), pyautoattack_checks(flags), torch.no_grad():
            atk = SquareAttack(model, norm=AA_NORM[self.norm], n_queries=self.queries, eps=self.eps,
                               p_init=self.p_init, n_restarts=1, seed=self.aa_seed(generator), verbose=False,
                               device=x.device, resc_schedule=False)
            x_adv = atk.perturb(x, y)
        return x_adv.detach(), flags
