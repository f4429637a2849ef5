"""Attacks: the shared PGD engine and its norms; the harness registers named attacks on top (attacks.registry)."""
from .pgd import pgd
from .projections import distance, project, project_l1_box

__all__ = ["pgd", "distance", "project", "project_l1_box"]
from .registry import ATTACKS, Attack, attack_names, build_attack
from . import library  # noqa: F401,E402  (registers the torchattacks / pyautoattack wrappers; after registry)
from .evaluate import AttackBoundsError, EvalResult, check_bounds, evaluate

__all__ += ["ATTACKS", "Attack", "attack_names", "build_attack", "AttackBoundsError", "EvalResult", "check_bounds",
            "evaluate"]
