"""Gradient-masking and consistency alarms: what makes a robust-accuracy number untrustworthy, written into the
records so every table can mark the cell.

`suite_warnings(records)` gives each cell its alarms computed over ALL the finished cells of its model, so the
order in which a suite lists its attacks does not matter (the runner re-writes a record whose alarms changed
when a later cell revealed something); `cell_warnings(rec, earlier)` is the same for one cell. Alarms:

- clean accuracy at chance level (an untrained or broken model);
- clean accuracy differs between cells (the model is randomized, or not in eval mode);
- robust accuracy rises with ε for one attack type and norm (aggregate; gradient masking, or too weak an attack);
- a black-box (e.g. `square`) or transfer attack beats a white-box attack at the same norm and ε by more
  than `slack` (gradient masking: the gradients mislead, yet the model is not robust);
- weak attack: a white-box (or min-norm) cell, unless its attack declares itself `cheap` (FGSM), is weaker than the strongest other white-box, min-norm or
  black-box attack at the same norm and ε on the model by more than `margin`, or by more than FLOOR while
  missing more than SHARE of the points that attack fools beyond clean errors (PGD-CE on saturated logits:
  its gradients vanish while a margin loss still finds the examples; on a robust model the absolute gap is
  small but the attack does nothing). Only the weaker cell is marked, since it is the one that overstates
  robustness. A black-box or transfer attack weaker than a white-box one is expected (it knows less) and is
  no alarm; transfer cells are not compared at all;
- per point: points fooled at a smaller ε (by ANY attack at that budget, transfer included: its examples lie in
  the smaller ball, hence in the larger one) that a white-box cell at a larger ε of the same norm leaves robust;
  more than FLOOR of the test set of them mark the larger cell. This is the per-point form of "rises with ε",
  which stays: it compares one attack type's aggregate, this compares every cell with the worst case below it;
- pyautoattack's own checks flagged the model (randomized or dynamic defence, zero gradients, ...).

The family of each attack type is what its class declares (attacks.base.Family); nothing here names attacks.

The constants were chosen from the committed records and a saturated-logit model
(`python baselines/measure_gaps.py --saturated`; gaps in points of the test set):

    largest gap, weaker white-box cell vs the strongest at its budget     absolute   share of (clean - strongest)
    normal models (standard, Madry, linear / robust-linear / finetune)    18.2 [1]   0.38 [2]
    TRADES                                                                24.6 [3]   0.29
    digits MLP (CI standard), logits x 1e4: PGD-CE 97.0 vs APGD-DLR 60.5  36.5       0.99
    digits MLP (CI Madry), logits x 1e4: PGD-CE 97.0 vs APGD-DLR 84.5     12.5       1.00
    [1] results/mnist rocl_trades (finetune, TRADES objective), PGD-20 vs APGD-DLR-100 at linf 0.3; next
        madry_8ep 9.0. [2] results/cifar10_jpeg_small madry, 5.5 points (n=200). [3] results/mnist trades.

The absolute gap alone cannot tell the x1e4 Madry MLP (12.5) from a normal model (18.2); the share can
(<= 0.38 normal, >= 0.99 saturated). So DEFAULT_MARGIN = 0.20 (above every normal model; TRADES on MNIST, whose
PGD-20 really is 24.6 points weaker than APGD-DLR, is marked) and, above a FLOOR of 5 points, a SHARE of 0.5.
Per point, the most points fooled at a smaller ε yet robust at a larger one on a normal model is 6 of 200
(results/cifar10_jpeg_small madry, PGD-20 at 16/255 vs APGD-DLR at 8/255), 3 %; 1 of 500 on MNIST, 0 on the CI
folders: the FLOOR of 5 % of the test set is silent on them and fires on the zero-gradient models of
tests/test_trust_alarms.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from ..attacks import Family, attack_class, family_of
from ..errors import UserError
from ..distances import budget_tag, budgets_of, is_min_norm, robust_at, with_budget_cells
from ..record import Record, latest_per_cell, same_eps

BEATS_WHITE_BOX = (Family.BLACK_BOX, Family.TRANSFER)     # families that must not beat a white-box attack
ONE_BUDGET = (Family.CLEAN, Family.TRANSFER)                # no "rises with eps" check across their cells
GRADIENT = (Family.WHITE_BOX, Family.MIN_NORM)              # families whose weaker cell is an alarm
COMPARED = (Family.WHITE_BOX, Family.MIN_NORM, Family.BLACK_BOX)   # what a weak attack is measured against
DEFAULT_MARGIN = 0.20     # weak attack: a gap above this fraction of the test set (20 points); see the docstring
FLOOR = 0.05              # gaps and per-point counts under 5 % of the test set are the noise of random starts
SHARE = 0.5               # weak attack: above FLOOR, missing more than half of what the stronger attack fools
DEFAULT_SLACK = 0.01      # black-box beats white-box / rises with eps: more than one point
DISAGREE = FLOOR          # minimum-norm vs fixed-ε cells: more points disagreeing than the per-point alarm allows
FIXED = (Family.WHITE_BOX, Family.BLACK_BOX, Family.TRANSFER)   # the fixed-ε families a minimum-norm cell meets


def _kind(rec: Record) -> str | None:
    return rec.attack_spec.get("type")


def _budget(rec: Record) -> tuple[str | None, float | None]:
    _, norm, eps = rec.threat
    return norm, eps


def _same(a: float, b: float) -> bool:
    return same_eps(a, b)


def check_margin(margin: Any, where: str = "margin") -> float:
    """A weak-attack margin as a fraction in [0, 1]; anything else is a one-line UserError naming `where`."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) \
            or not 0.0 <= margin <= 1.0:
        raise UserError(f"{where}: {margin!r} is not a fraction of the test set in [0, 1]; use e.g. "
                        f"{DEFAULT_MARGIN:g} (= {DEFAULT_MARGIN:.0%} points)")
    return float(margin)


def at_chance(clean: float, chance: float, n: int) -> bool:
    """Clean accuracy within two standard errors of always guessing the most common class: an untrained or
    broken model (garbage weights, a wrong checkpoint), whose robust accuracy means nothing."""
    return clean <= chance + 2 * math.sqrt(chance * (1 - chance) / max(n, 1))


# ------------------------------------------------------------------------------------- weak attacks
@dataclass(frozen=True)
class Gap:
    """A white-box cell and the strongest other attack at its budget on the same model."""

    weaker: Record
    stronger: Record

    @property
    def gap(self) -> float:
        """How much higher the weaker cell's robust accuracy is (a fraction; > 0 when it is weaker)."""
        return self.weaker.robust_accuracy - self.stronger.robust_accuracy


def attack_gaps(records: Iterable[Record]) -> list[Gap]:
    """For every white-box / min-norm cell, the strongest other white-box, min-norm or black-box cell of the same
    model at the same norm and ε (one Gap per such cell that has a rival; its gap may be <= 0)."""
    cells = [r for r in latest_per_cell(records) if family_of(_kind(r)) in COMPARED and None not in _budget(r)]
    out = []
    for rec in cells:
        cls = attack_class(_kind(rec))
        if family_of(_kind(rec)) not in GRADIENT or (cls is not None and cls.cheap):
            continue
        norm, eps = _budget(rec)
        rivals = [r for r in cells if r.model == rec.model and r.cell != rec.cell and _budget(r)[0] == norm
                  and same_eps(_budget(r)[1], eps)]
        if rivals:
            out.append(Gap(rec, min(rivals, key=lambda r: (r.robust_accuracy, r.attack))))
    return out


def weak(g: Gap, margin: float = DEFAULT_MARGIN) -> bool:
    """The weak-attack rule: a gap above `margin`, or above FLOOR and over SHARE of what the stronger attack
    fools among the clean-correct points (see the module docstring)."""
    clean = g.weaker.clean_accuracy if g.weaker.clean_accuracy is not None else g.stronger.clean_accuracy
    reach = (clean - g.stronger.robust_accuracy) if clean is not None else math.inf
    return g.gap > margin + 1e-12 or (g.gap > FLOOR + 1e-12 and g.gap > SHARE * reach + 1e-12)


def _weak_warning(g: Gap) -> str:
    norm, eps = _budget(g.weaker)
    return (f"{g.weaker.attack} is {100 * g.gap:.1f} points weaker than {g.stronger.attack} on model "
            f"{g.weaker.model} at {norm} ε={eps:g}: a weak attack or gradient masking")


# ---------------------------------------------------------------------------------- per-point order
@dataclass(frozen=True)
class Inconsistent:
    """Points fooled at a smaller ε (by `fooled_by`) that `cell`, at a larger ε of the same norm, leaves robust."""

    cell: Record
    eps: float                      # the smaller budget
    fooled_by: tuple[str, ...]      # the attacks at the smaller budget that fooled at least one of them
    count: int


def _masks(rec: Record) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        return rec.robust(), rec.clean_correct() if rec.clean_mask else np.ones(rec.n or 0, dtype=bool)
    except ValueError:
        return None


def inconsistent_points(records: Iterable[Record]) -> list[Inconsistent]:
    """For every white-box / min-norm cell with masks, the smaller budget of its model and norm whose per-point
    worst case (fooled by ANY attack there) holds the most points this cell leaves robust (count > 0 only).
    Cells on another number of points or another test subset than the cell are not compared."""
    cells = [r for r in latest_per_cell(records) if family_of(_kind(r)) not in (None, Family.CLEAN)
             and None not in _budget(r)]
    masks = {r.cell: m for r in cells if (m := _masks(r)) is not None}
    out = []
    for rec in cells:
        if family_of(_kind(rec)) not in GRADIENT or rec.cell not in masks:
            continue
        norm, eps = _budget(rec)
        robust = masks[rec.cell][0] & masks[rec.cell][1]
        below: list[tuple[float, list[Record]]] = []
        for r in cells:
            r_norm, r_eps = _budget(r)
            if r.model != rec.model or r_norm != norm or r.cell not in masks or r.n != rec.n \
                    or r.test_indices_hash != rec.test_indices_hash or same_eps(r_eps, eps) or r_eps > eps:
                continue
            group = next((g for e, g in below if same_eps(e, r_eps)), None)
            if group is None:
                below.append((r_eps, [r]))
            else:
                group.append(r)
        best: Inconsistent | None = None
        for small, group in below:
            fooled = {r.attack: ~(masks[r.cell][0] & masks[r.cell][1]) & robust for r in group}
            count = int(np.logical_or.reduce(list(fooled.values())).sum())
            if count and (best is None or count > best.count):
                best = Inconsistent(rec, small, tuple(a for a, m in fooled.items() if m.any()), count)
        if best is not None:
            out.append(best)
    return out


def _inconsistent_warning(i: Inconsistent) -> str:
    norm, eps = _budget(i.cell)
    return (f"{i.count} point(s) fooled at {norm} ε={i.eps:g} (by {', '.join(i.fooled_by)}) survive "
            f"{i.cell.attack} at the larger ε={eps:g}: a larger budget fools every point a smaller one does, so "
            f"{i.cell.attack} is weak here (or the model masks gradients)")


# ------------------------------------------------------------------------------------------ the cells
def cell_warnings(rec: Record, earlier: Iterable[Record], slack: float = DEFAULT_SLACK,
                  chance: float | None = None, margin: float = DEFAULT_MARGIN) -> list[str]:
    """Alarms for `rec` given the other finished cells of this run (only those of the same model count); `chance`
    is the share of the test set's most common class."""
    others = [p for p in earlier if p.model == rec.model and p is not rec and p.cell != rec.cell]
    out: list[str] = []
    if chance is not None and family_of(_kind(rec)) is not Family.TRANSFER and rec.clean_accuracy is not None \
            and at_chance(rec.clean_accuracy, chance, rec.n or 1):
        out.append(f"clean accuracy {rec.clean_accuracy:.1%} is at chance level (the most common class is "
                   f"{chance:.1%} of the test set); the model may be untrained or broken")
    kind = _kind(rec)
    norm, eps = _budget(rec)
    clean_differs: list[str] = []
    for prev in others:
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
    group = [rec, *others]
    out += [_weak_warning(g) for g in attack_gaps(group) if g.weaker.cell == rec.cell and weak(g, margin)]
    out += [_inconsistent_warning(i) for i in inconsistent_points(group)
            if i.cell.cell == rec.cell and i.count > FLOOR * (i.cell.n or 0) + 1e-9]
    if clean_differs:
        out.insert(0, f"clean accuracy differs between cells of one model ({rec.attack}: "
                      f"{rec.clean_accuracy:.4f}; {', '.join(clean_differs)}); the model may be randomized")
    if rec.flags:
        out.append("pyautoattack flagged this model: " + "; ".join(rec.flags))
    return out


def suite_warnings(records: list[Record], chance: float | None = None, margin: float = DEFAULT_MARGIN,
                   slack: float = DEFAULT_SLACK) -> dict[tuple[str, str, str | None], tuple[str, ...]]:
    """Every cell's full alarm list over ALL finished records of its model (the latest record per cell counts), so
    the order the suite ran its cells in does not matter; the runner re-writes a record whose list changed.

    A minimum-norm cell is judged at each fixed-ε budget of its model through its derived cells
    (distances.with_budget_cells): their alarms come back to it tagged with the budget ("[linf ε=0.1] ..."), so
    a table marks the budget column they concern; then come its consistency alarms (distance_warnings)."""
    margin = check_margin(margin)
    latest = with_budget_cells(latest_per_cell(records))
    by_model: dict[str, list[Record]] = {}
    for r in latest:
        by_model.setdefault(r.model, []).append(r)
    out = {r.cell: tuple(cell_warnings(r, by_model[r.model], slack, chance, margin)) for r in latest}
    for r in latest:
        parent = r.extra.get("derived_from")
        if not parent:
            continue
        key, own = (r.model, parent, r.source), out.pop(r.cell)
        tag = budget_tag(str(r.threat[1]), float(r.threat[2]))
        out[key] = out.get(key, ()) + tuple(f"{tag} {w}" for w in own if w not in out.get(key, ()))
    for r in latest:
        if is_min_norm(r):
            out[r.cell] = out.get(r.cell, ()) + tuple(distance_warnings(r, by_model[r.model]))
    return out


def distance_warnings(rec: Record, others: Iterable[Record], share: float = DISAGREE) -> list[str]:
    """Where minimum-norm cell `rec` and the fixed-ε cells of its model disagree, per budget, with counts:

    - points a fixed-ε attack fooled at ε whose minimal distance is above ε: the minimum-norm attack is weak
      there, and its curve is only an upper bound;
    - points whose minimal distance is at most ε that every fixed-ε attack at ε left robust: the fixed-ε
      battery is weak (or masked) at ε.
    Either fires when it holds for more than `share` of the test set. Cells on other test points are skipped."""
    try:
        dist, clean = rec.min_distances(), rec.clean_correct()
    except ValueError:
        return []
    norm = str(rec.threat[1])
    others = [r for r in others if r.model == rec.model and r.test_indices_hash == rec.test_indices_hash
              and r.n == rec.n and not is_min_norm(r) and not r.extra.get("derived_from")
              and family_of(_kind(r)) in FIXED and r.robust_mask and r.clean_mask]
    out = []
    for eps, _ in budgets_of(others, rec.model, norm):
        cells = [r for r in others if _budget(r)[0] == norm and same_eps(_budget(r)[1], eps)]
        if not cells:
            continue
        names = ", ".join(unique_attacks(cells))
        fooled = np.zeros(len(dist), dtype=bool)
        survived = clean.copy()
        for r in cells:
            fooled |= r.clean_correct() & ~r.robust()
            survived &= r.robust()
        tag = budget_tag(norm, eps)
        beyond = robust_at(dist, eps)            # the one rule for "farther than ε" (the derived cells' too)
        weak_mn = int((fooled & beyond).sum())
        if weak_mn > share * len(dist) + 1e-9:
            out.append(f"{tag} {weak_mn} point(s) fooled at {norm} ε={eps:g} (by {names}) have a minimal distance "
                       f"above ε under {rec.attack}: the minimum-norm attack is weak there and its curve is only an "
                       f"upper bound")
        weak_fixed = int((survived & ~beyond).sum())
        if weak_fixed > share * len(dist) + 1e-9:
            out.append(f"{tag} {weak_fixed} point(s) that {rec.attack} fools within {norm} ε={eps:g} survive every "
                       f"fixed-ε attack at that ε ({names}): the fixed-ε battery is weak (or masked) there")
    return out


def unique_attacks(cells: Iterable[Record]) -> list[str]:
    """Attack ids in first-seen order (a transfer id once per source: 'transfer:pgd from madry')."""
    out: list[str] = []
    for r in cells:
        name = f"{r.attack} from {r.source}" if r.source else r.attack
        if name not in out:
            out.append(name)
    return out