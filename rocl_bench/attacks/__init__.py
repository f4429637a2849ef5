"""Attacks: the shared PGD engine and its norms, the registered evaluation attacks, and `evaluate()`.

Modules
    base        `Attack` (spec + run + what it declares), `Family`, the `ATTACKS` registry, `build_attack`
    pgd         the one projected-gradient engine (training attacks use it too); projections: steps and norms
    clean, iterative (pgd, eot-pgd), torchattacks_adapters (fgsm, cw),
    pyautoattack_adapters (autoattack, apgd, square), min_norm (fmn, fab: no ε, per-point distances),
    transfer (the record kind of transfer cells)
    evaluate    `evaluate()`, the one place that runs a fixed-ε attack on a labelled set, and
                `evaluate_min_norm()` for the min-norm family; instance: RoCL's attack

How to add an attack (one file plus its test; nothing keeps a list of attack names, and this package imports
every module in its folder, so the new file registers itself):
1. Write `rocl_bench/attacks/<name>.py` with a frozen dataclass subclassing `base.Attack`, decorated with
   `@register_attack`. Give it `name` (the YAML `type`), `family` (a `Family`), `norm` and `eps`, its
   own fields with defaults, `validate(self, where)` (use `canonical_norm`, `check_eps`, `check_steps`), and
   `run(model, x, y, generator) -> x_adv` on [0, 1] images. Draw randomness only from `generator`, or run
   a library inside `runtime.forked_rng`. evaluate() and the runner hold the model in eval mode
   (`runtime.eval_mode`) and check every returned batch against the ε-ball and the [0, 1] box.
2. Declare how tables show it: `title`, and `table_order` (order among its family's columns); `own_column =
   True` for a column group of its own. Black-box and transfer attacks always get one.
3. If its draws from `generator` per batch depend only on the batch (not on the model or the outcome),
   override `skip_draws()` to return a function making exactly those draws, so runs under torchrun shard
   its cells; otherwise leave the default (None: the cell runs whole on rank 0).
   If it stops points early on the model it attacks, override `for_transfer()` to return the variant that takes
   every step (transfer cells craft with it). Bump its `revision` whenever what it computes for the same spec
   changes: the runner then re-runs its cells, and only those.
4. Add `tests/test_<name>.py`: budgets hold (evaluate() checks every batch), it is not weaker than a
   reference where one exists, and `skip_draws` replays its draws (see tests/test_distributed.py).
"""
import importlib
import pkgutil

from .base import ATTACKS, Attack, Family, attack_class, build_attack, family_of, suite_attack_names
from .evaluate import AttackBoundsError, EvalResult, MinNormResult, check_bounds, evaluate, evaluate_min_norm
from .pgd import pgd
from .projections import distance, project, project_l1_box

__all__ = ["ATTACKS", "Attack", "Family", "attack_class", "build_attack", "family_of", "suite_attack_names",
           "AttackBoundsError", "EvalResult", "MinNormResult", "check_bounds", "evaluate", "evaluate_min_norm", "pgd", "distance", "project",
           "project_l1_box"]

for _module in pkgutil.iter_modules(__path__):        # every attack module registers its classes on import
    importlib.import_module(f"{__name__}.{_module.name}")
