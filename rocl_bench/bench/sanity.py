"""Gradient-masking and consistency alarms, checked as each cell finishes so the record itself is marked.

Each alarm compares the new cell with the finished cells of the same model in this run, in either order (the
suite may list the larger budget, or the black-box attack, first):
- clean accuracy differs between cells (the model is randomized, or not in eval mode);
- robust accuracy rises with ε for one attack type and norm (gradient masking, or too weak an attack);
- a black-box (e.g. `square`) or transfer attack beats a white-box attack at the same norm and ε by more
  than `slack` (gradient masking: the gradients mislead, yet the model is not robust); the family of each
  attack type is what its class declares (attacks.base.Family);
- pyautoattack's own checks flagged the model (randomized or dynamic defence, zero gradients, ...).
"""
from __future__ import annotations

import math
from typing import Iterable

from ..attacks import Family, family_of
from ..record import Record

BEATS_WHITE_BOX = (Family.BLACK_BOX, Family.TRANSFER)     # families that must not beat a white-box attack
ONE_BUDGET = (Family.CLEAN, Family.TRANSFER)                # no "rises with eps" check across their cells


def _kind(rec: Record) -> str | None:
    return rec.attack_spec.get("type")


def _budget(rec: Record) -> tuple[str | None, float | None]:
    _, norm, eps = rec.threat
    return norm, eps


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def at_chance(clean: float, chance: float, n: int) -> bool:
    """Clean accuracy within two standard errors of always guessing the most common class: an untrained or
    broken model (garbage weights, a wrong checkpoint), whose robust accuracy means nothing."""
    return clean <= chance + 2 * math.sqrt(chance * (1 - chance) / max(n, 1))


def cell_warnings(rec: Record, earlier: Iterable[Record], slack: float = 0.01,
                  chance: float | None = None) -> list[str]:
    """Alarms for `rec` given the finished cells of this run (only those of the same model count); `chance` is
    the share of the test set's most common class."""
    out: list[str] = []
    if chance is not None and family_of(_kind(rec)) is not Family.TRANSFER and rec.clean_accuracy is not None \
            and at_chance(rec.clean_accuracy, chance, rec.n or 1):
        out.append(f"clean accuracy {rec.clean_accuracy:.1%} is at chance level (the most common class is "
                   f"{chance:.1%} of the test set); the model may be untrained or broken")
    kind = _kind(rec)
    norm, eps = _budget(rec)
    clean_differs: list[str] = []
    for prev in earlier:
        if prev.model != rec.model or prev is rec:
            continue
        p_kind = _kind(prev)
        p_norm, p_eps = _budget(prev)
        if Family.TRANSFER not in (family_of(kind), family_of(p_kind)) \
                and prev.clean_accuracy is not None and rec.clean_accuracy is not None \
                and abs(prev.clean_accuracy - rec.clean_accuracy) > 1e-9:
            clean_differs.append(f"{prev.attack}: {prev.clean_accuracy:.4f}")
        if eps is None or p_eps is None or norm is None or norm != p_norm:
            continue
        if kind == p_kind and kind is not None and family_of(kind) not in ONE_BUDGET and not _same(eps, p_eps):
            small, large = (prev, rec) if p_eps < eps else (rec, prev)
            if large.robust_accuracy > small.robust_accuracy + slack:
                s_eps, l_eps = min(eps, p_eps), max(eps, p_eps)
                out.append(f"robust accuracy rises with eps for {norm} ({small.attack} eps={s_eps:g}: "
                           f"{small.robust_accuracy:.1%} < {large.attack} eps={l_eps:g}: "
                           f"{large.robust_accuracy:.1%}); possible gradient masking")
        if _same(eps, p_eps):
            fam, p_fam = family_of(kind), family_of(p_kind)
            pair = (rec, prev) if fam in BEATS_WHITE_BOX and p_fam is Family.WHITE_BOX else \
                (prev, rec) if p_fam in BEATS_WHITE_BOX and fam is Family.WHITE_BOX else None
            if pair and pair[0].robust_accuracy < pair[1].robust_accuracy - slack:
                black, white = pair
                out.append(f"black-box {black.attack} beats white-box {white.attack} at {norm} eps={eps:g} "
                           f"({black.robust_accuracy:.1%} < {white.robust_accuracy:.1%}); "
                           "possible gradient masking")
    if clean_differs:
        out.insert(0, f"clean accuracy differs between cells of one model ({rec.attack}: "
                      f"{rec.clean_accuracy:.4f}; {', '.join(clean_differs)}); the model may be randomized")
    if rec.flags:
        out.append("pyautoattack flagged this model: " + "; ".join(rec.flags))
    return out
