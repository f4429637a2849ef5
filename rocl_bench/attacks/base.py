"""What an attack is: the `Attack` base class, the families it declares, and the one registry of attack types.

An attack is a frozen dataclass that is at the same time its own spec (what a record stores, `describe()`)
and the object that runs (`run(model, x, y, generator) -> x_adv`). Besides its fields it declares, as class
attributes, what the rest of the package needs to know about it, so that nothing keeps a list of names:

- `family`: clean, white-box, min-norm, black-box (score-based) or transfer. The consistency alarms
  (bench.sanity) compare black-box and transfer cells with white-box ones; the Worst column counts every
  family but clean.
- `title`, `table_order`, `own_column`, `reference`: how tables show it (see `Attack`).
- `skip_draws()`: whether its random draws can be replayed per batch, which is what sharded evaluation needs.

Register a class with `@register_attack` next to its definition; `build_attack` turns a suite's YAML mapping
into one, and `attack_class` tells a report reader what the `type` of a record's `attack_spec` is.
"""
from __future__ import annotations

import enum
import math
from typing import Any, Callable, ClassVar, Mapping, Optional

import torch
from torch import nn

from ..config import from_mapping, require, to_dict
from ..errors import UserError, suggest
from ..registry import Registry

# skip(x_batch, generator): move the generator past one batch exactly as attacking it would
Skip = Callable[[torch.Tensor, torch.Generator], None]


class Family(str, enum.Enum):
    """What an attack knows of the model. The order here is the order of the families in tables."""

    CLEAN = "clean"              # no attack: the reference row
    WHITE_BOX = "white-box"      # gradients (or the whole model) within a fixed budget
    MIN_NORM = "min-norm"        # white-box, smallest perturbation that fools (judged against a budget)
    BLACK_BOX = "black-box"      # score-based: queries the outputs only
    TRANSFER = "transfer"        # crafted on another model, judged on this one

    @property
    def rank(self) -> int:
        return list(Family).index(self)


class Attack:
    """Base class of the registered attack dataclasses.

    Subclasses are frozen dataclasses with a `name` (the YAML `type`), a `norm` and an `eps`, and implement
    `run`. They declare:

    family       Family of the attack (required).
    title        Display name in tables ("PGD", "AutoAttack"); default: the name in capitals.
    table_order  Order among the columns of one family (lower first).
    own_column   Shown in a column group of its own ("AutoAttack ℓ∞") instead of among the Seen/Unseen budget
                 columns of the white-box attacks. Black-box and transfer attacks always get their own group.
    reference    The budget columns' default attack: its columns carry no suffix (only PGD).
    batches_itself  evaluate() hands it all points at once (AutoAttack, so its batches are pyautoattack's).
    in_suites    Can be named in a suite's `attacks` (False for `transfer`, which the `transfer` section makes).
    cheap        A deliberately weak, single-step attack (FGSM): a stronger attack at its budget is expected to
                 beat it, so the weak-attack alarm does not mark its cell (it still counts as a rival of the
                 others, and in the per-point worst case).
    revision     Revision of the implementation: bump it when the attack's behaviour changes (what it computes
                 for the same spec), so that the runner re-runs that attack's cells, and only those (a cell's
                 key includes it, bench.runner.Runner.cell_hash).

    Attacks that report diagnostics (pyautoattack's checks) override `run_with_flags`; randomized-model
    attacks (EOT) override `predict`. Override `skip_draws` when the draws of a batch can be replayed, and
    `for_transfer` when the attack can stop early on the model it attacks.
    """

    name: ClassVar[str] = ""
    family: ClassVar[Family]
    title: ClassVar[str] = ""
    table_order: ClassVar[int] = 100
    own_column: ClassVar[bool] = False
    reference: ClassVar[bool] = False
    batches_itself: ClassVar[bool] = False
    in_suites: ClassVar[bool] = True
    cheap: ClassVar[bool] = False
    revision: ClassVar[int] = 1
    norm: Optional[str]
    eps: float

    @classmethod
    def display_name(cls) -> str:
        return cls.title or cls.name.upper()

    @classmethod
    def budget_column(cls) -> bool:
        """Shown among the Seen/Unseen columns of its norm (else in a group of its own)."""
        return cls.family in (Family.WHITE_BOX, Family.MIN_NORM) and not cls.own_column

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def run_with_flags(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                       batch_size: int = 256) -> tuple[torch.Tensor, list[str]]:
        """x_adv plus warnings worth keeping in the record (empty for attacks that have none)."""
        return self.run(model, x, y, generator), []

    def predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Labels the success test uses (EOT attacks average logits over several calls)."""
        return model(x).argmax(1)

    def skip_draws(self) -> Skip | None:
        """How to move an evaluation's generator past a batch that another rank attacks, with exactly the draws
        attacking that batch would make; None when the draws depend on the model or the outcome (restarts on
        the points still robust), or are not known. Cells whose attack returns None run whole on rank 0 under
        torchrun, so None is always safe. A subclass that draws differently must override this too."""
        return None

    def for_transfer(self) -> "Attack":
        """The variant that crafts transfer examples: full strength on the source, every step taken.

        An attack that stops a point at the first iterate fooling the source (our PGD) hands the target a
        barely-adversarial example and overstates transfer robustness; such attacks return a copy that runs
        to the end. The default is the attack itself (it has no early stop)."""
        return self

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


def no_draws(x: torch.Tensor, generator: torch.Generator) -> None:
    """The skip of an attack that draws nothing from the evaluation's generator."""


ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(cls: type[Attack]) -> type[Attack]:
    """Class decorator: add `cls` under its `name`, after checking it declares a family."""
    if not isinstance(getattr(cls, "family", None), Family):
        raise TypeError(f"attack {cls.__name__} must declare `family: ClassVar[Family] = Family.…`")
    ATTACKS.register(cls.name)(cls)
    return cls


def attack_class(kind: Any) -> type[Attack] | None:
    """The registered class of an attack type (a record's attack_spec['type']), or None if unknown."""
    return ATTACKS.get(kind) if isinstance(kind, str) and kind in ATTACKS else None


def family_of(kind: Any) -> Family | None:
    """The family an attack type declares, or None for a type this version does not know."""
    cls = attack_class(kind)
    return cls.family if cls else None


def suite_attack_names() -> list[str]:
    """The types a suite's `attacks` section accepts."""
    return [n for n in ATTACKS.names() if ATTACKS.get(n).in_suites]


def build_attack(mapping: Any, where: str = "attack") -> Attack:
    """Build an attack from a YAML mapping {type: NAME, ...fields}; any mistake is one UserError naming `where`."""
    names = suite_attack_names()
    if isinstance(mapping, str):            # a bare name, e.g. `- clean`
        mapping = {"type": mapping}
    if not isinstance(mapping, Mapping):
        raise UserError(f"{where}: expected a mapping with a 'type' key, got {type(mapping).__name__}")
    if "type" not in mapping:
        raise UserError(f"{where}: missing required key 'type'; choose from: {', '.join(names)}")
    kind = mapping["type"]
    if not isinstance(kind, str):
        raise UserError(f"{where}.type: expected an attack name, got {kind!r}; choose from: {', '.join(names)}")
    cls = attack_class(kind)
    if cls is not None and not cls.in_suites:
        raise UserError(f"{where}.type: '{kind}' cells are not listed under attacks; the suite's '{kind}' section "
                        f"makes them from the attacks listed here")
    if cls is None:
        raise UserError(f"{where}.type: unknown attack '{kind}'{suggest(kind, names)}; choose from: {', '.join(names)}")
    if cls.family is Family.MIN_NORM and "eps" in mapping:
        raise UserError(f"{where}.eps: '{kind}' is a minimum-norm attack: it finds the smallest ε that fools each "
                        f"point itself; drop eps (tables read its distances at the suite's fixed-ε budgets)")
    return from_mapping(cls, {k: v for k, v in mapping.items() if k != "type"}, where)


# ---------------------------------------------------------------- shared field checks
NORMS = ("linf", "l2", "l1")


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
