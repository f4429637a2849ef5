"""Minimum-norm cells: per-point minimal distances, what they say at a budget, and the best known distance.

A minimum-norm cell (an attack of the `min-norm` family: FMN, FAB) has no ε. Its record stores, per test point,
the smallest distance at which the attack found an adversarial example: 0 for a point the model already gets
wrong, +inf where the attack found none. At any ε the cell's robust points are the clean-correct points whose
distance is above ε (a point at distance exactly ε is fooled at ε).

Reports read a minimum-norm cell at the budgets of the suite: `with_budget_cells` adds, for every (norm, ε) at
which the same model has a fixed-ε cell, a derived record `<attack>@<ε>` whose robust mask is `distance > ε`.
Every table, baseline check and alarm then treats it as one more attack at that budget, so the headline (the
per-point worst case over every attack at a budget) counts it. Derived records are never written to
records.jsonl; `derived_from` names the stored cell they come from.

`best_known` is the per-point smallest ε at which ANY cell of the model fooled a point: a fixed-ε cell that fools
a point at ε says its distance is at most ε (balls are nested, so it is fooled at every larger ε too). Its curve
is the per-point worst case over both families and is monotone by construction.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable

import numpy as np

from .masks import decode_distances, encode_distances, encode_mask, same_eps  # noqa: F401 (encoders re-exported)

# "Record" below is rocl_bench.record.Record, not imported: record.py reads its cells through this module.

REL_TOL, ABS_TOL = 1e-5, 1e-6   # = attacks.evaluate's ε-ball slack: an example a fixed-ε cell would accept fools


def robust_at(distances: np.ndarray, eps: float) -> np.ndarray:
    """Robust at ε: the point's minimal distance is above ε, with the slack a fixed-ε cell grants its examples
    (float32 round-off: 0.1000000015 is at ε = 0.1). Clean-wrong points are at 0, so never robust."""
    return distances > eps * (1 + REL_TOL) + ABS_TOL


def median_distance(distances: np.ndarray) -> float:
    """The median over ALL test points (clean-wrong at 0, not found at +inf): the ε at which the cell's robust
    accuracy falls to 50 % (+inf when more than half the points were never fooled)."""
    return float(np.median(distances)) if distances.size else math.nan


def is_min_norm(rec: "Record") -> bool:
    """A stored minimum-norm cell (it has distances and no ε of its own)."""
    return rec.distances is not None and rec.threat[2] is None


def budgets_of(records: Iterable["Record"], model: str, norm: str) -> list[tuple[float, bool]]:
    """The (ε, seen) budgets at which `model` has fixed-ε cells of `norm`, in increasing ε (seen if any cell at
    that budget is)."""
    out: list[list] = []
    for r in records:
        if r.model != model or is_min_norm(r) or r.extra.get("derived_from"):
            continue
        kind, n, eps = r.threat
        if n != norm or eps is None or kind == "clean":
            continue
        hit = next((b for b in out if same_eps(b[0], eps)), None)
        if hit is None:
            out.append([eps, bool(r.seen)])
        else:
            hit[1] = hit[1] or bool(r.seen)
    return sorted((float(e), bool(s)) for e, s in out)


def budget_tag(norm: str, eps: float) -> str:
    """How a minimum-norm cell's warnings name one budget ('[linf ε=0.1] ...'), so that a derived cell carries
    the warnings of its own budget only."""
    return f"[{norm} ε={eps:g}]"


def at_budget(rec: "Record", eps: float, seen: bool) -> "Record":
    """The derived fixed-ε record of minimum-norm cell `rec` at ε (see the module docstring)."""
    dist = rec.min_distances()
    clean = rec.clean_correct() if rec.clean_mask else dist > 0
    robust = clean & robust_at(dist, eps)
    tag = budget_tag(str(rec.threat[1]), eps)
    warnings = tuple(w[len(tag):].lstrip() if w.startswith(tag) else w for w in rec.warnings
                     if w.startswith(tag) or not w.startswith("["))
    return dataclasses.replace(
        rec, attack=f"{rec.attack}@{eps:g}", attack_spec={**rec.attack_spec, "eps": eps},
        robust_accuracy=float(robust.mean()) if robust.size else 0.0, robust_mask=encode_mask(robust),
        distances=None, seen=seen, warnings=warnings, extra={**rec.extra, "derived_from": rec.attack})


def with_budget_cells(latest: list["Record"]) -> list["Record"]:
    """`latest` plus, after each minimum-norm cell, its derived records at its model's fixed-ε budgets of its
    norm (records already derived are left as they are, so calling this twice adds nothing)."""
    if any(r.extra.get("derived_from") for r in latest):
        return list(latest)
    out: list["Record"] = []
    for rec in latest:
        out.append(rec)
        if is_min_norm(rec) and rec.n:
            out.extend(at_budget(rec, eps, seen) for eps, seen in budgets_of(latest, rec.model, str(rec.threat[1])))
    return out


def best_known(records: Iterable["Record"], model: str, norm: str) -> np.ndarray | None:
    """Per point of `model`, the smallest ε of `norm` at which any of its cells fooled it: the minimum-norm
    distances, and ε for every fixed-ε cell that fooled the point (clean-correct there, not robust). Clean-wrong
    points are at 0; a point no cell fooled is at +inf. None when the model has no cell of that norm with masks."""
    from .attacks import Family, family_of

    cells = [r for r in records if r.model == model and not r.extra.get("derived_from") and r.n
             and r.threat[1] == norm and family_of(r.threat[0]) not in (None, Family.CLEAN)]
    # one test set: that of the model's minimum-norm cell (else its first cell); cells on other points are left out
    ref = next((r for r in cells if is_min_norm(r)), cells[0] if cells else None)
    best: np.ndarray | None = None
    for r in cells:
        if (r.n, r.test_indices_hash) != (ref.n, ref.test_indices_hash):
            continue
        eps = r.threat[2]
        if is_min_norm(r):
            d = r.min_distances()
        elif eps is not None and r.robust_mask and r.clean_mask:
            fooled = r.clean_correct() & ~r.robust()
            d = np.where(fooled, float(eps), math.inf)   # ε itself: robust_at's slack keeps it fooled at ε
            d = np.where(r.clean_correct(), d, 0.0)
        else:
            continue
        best = d if best is None else np.minimum(best, d)
    return best
