"""pyautoattack's AutoAttack, APGD and Square, run as they are.

pyautoattack draws from torch's global RNG and re-seeds it with its own `seed` before every attack batch
(None: the evaluation's seed); every adapter runs inside `runtime.forked_rng`, so the caller's global RNG
state is left as it was, and none draws from the evaluation's generator. pyautoattack is imported on first use.

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
from typing import Any, ClassVar, Iterator, Literal, Optional

import torch
from torch import nn

from ..config import require
from ..errors import UserError
from ..runtime import forked_rng
from .base import Attack, Family, Skip, canonical_norm, check_eps, check_steps, no_draws, register_attack

AA_NORM = {"linf": "Linf", "l2": "L2", "l1": "L1"}
AA_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
AALiteral = Literal["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]


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

    def skip_draws(self) -> Skip | None:
        """pyautoattack re-seeds from `seed` per batch and never draws from the evaluation's generator."""
        return no_draws


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
    family: ClassVar[Family] = Family.WHITE_BOX
    title: ClassVar[str] = "AutoAttack"
    own_column: ClassVar[bool] = True
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

    def skip_draws(self) -> Skip | None:
        """It batches itself (all points in one call), so there is no batch for a rank to skip."""
        return None

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
    """One APGD run of pyautoattack (APGD-CE or APGD-DLR), as AutoAttack configures it (rho 0.75, no EOT).

    `use_largereps` is pyautoattack's ℓ1 schedule: 30% of the steps at 3·eps, 30% at 2·eps, the last 40% at
    eps, each stage starting from the previous one projected into the smaller ball (APGDAttack.decr_eps_pgd;
    only defined for ℓ1). None (the default) does what AutoAttack does: on for l1, off for linf and l2.
    AutoAttack's standard ℓ1 evaluation also takes 100 steps and 5 restarts (`steps: 100, restarts: 5`);
    with one restart the schedule was not stronger on the digits MLPs. This is the ℓ1 attack to report: our
    ℓ1 `pgd` is cheaper and weaker (see attacks.iterative.PGD). Both losses work for l1 (APGD-DLR-L1 runs,
    as in pyautoattack's `plus` version).
    """

    name: ClassVar[str] = "apgd"
    family: ClassVar[Family] = Family.WHITE_BOX
    title: ClassVar[str] = "APGD"
    table_order: ClassVar[int] = 2
    revision: ClassVar[int] = 2       # 2: l1 takes AutoAttack's larger-eps schedule unless use_largereps: false
    eps: float
    norm: str = "linf"
    loss: Literal["ce", "dlr"] = "ce"
    steps: int = 100
    restarts: int = 1
    seed: Optional[int] = None
    use_largereps: Optional[bool] = None

    def validate(self, where: str) -> None:
        canonical_norm(self, where)
        check_eps(self.eps, self.norm, where)
        check_steps(self.steps, where)
        require(1 <= self.restarts <= 1000, f"{where}.restarts", f"must be between 1 and 1000, got {self.restarts}")
        _check_seed(self.seed, where)
        require(not self.use_largereps or self.norm == "l1", f"{where}.use_largereps",
                f"pyautoattack's larger-eps schedule exists for norm l1 only, not {self.norm}; drop it or use norm l1")
        require(not self.largereps or self.steps >= 2, f"{where}.steps",
                f"l1 with use_largereps splits the steps over 3 stages (pyautoattack fails on 1): needs at least 2, "
                f"got {self.steps}")

    @property
    def largereps(self) -> bool:
        """What runs: `use_largereps`, or AutoAttack's choice when it is None (on for l1 only)."""
        return self.norm == "l1" if self.use_largereps is None else self.use_largereps

    def describe(self) -> dict[str, Any]:
        """`use_largereps` is named only when set, so specs written before the field existed stay the same."""
        spec = super().describe()
        if self.use_largereps is None:
            del spec["use_largereps"]
        return spec

    def run_with_flags(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                       batch_size: int = 256) -> tuple[torch.Tensor, list[str]]:
        from pyautoattack.autopgd_base import APGDAttack

        flags: list[str] = []
        with forked_rng(x.device), pyautoattack_checks(flags):
            atk = APGDAttack(model, n_iter=self.steps, norm=AA_NORM[self.norm], n_restarts=self.restarts,
                             eps=self.eps, seed=self.aa_seed(generator), loss=self.loss, eot_iter=1, rho=0.75,
                             verbose=False, device=x.device, use_largereps=self.largereps,
                             logger=logging.getLogger("auto-attack"))
            x_adv = atk.perturb(x, y)
        return x_adv.detach(), flags


@register_attack
@dataclass(frozen=True)
class Square(_PyAutoAttack):
    """pyautoattack's Square Attack (score-based, no gradients), with AutoAttack's schedule (no rescaling)."""

    name: ClassVar[str] = "square"
    family: ClassVar[Family] = Family.BLACK_BOX
    title: ClassVar[str] = "Square"
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
