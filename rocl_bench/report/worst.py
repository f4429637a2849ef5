"""The worst case over attacks: a test point counts as robust only if it withstood every attack of a group.

The per-point AND of the records' robust masks, so a model is not credited with the best of several attacks
(each of which it may fail on different points)."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..attacks import Family, family_of
from ..errors import UserError
from ..record import Record, decode_mask, same_eps

Group = Callable[[Record], bool] | Mapping[str, Any]


def group_predicate(group: Group) -> Callable[[Record], bool]:
    """A group as a predicate: given as one, or as {"norm", "eps"[, "types"]} (see worst_mask)."""
    if callable(group):
        return group
    norm, eps = group.get("norm"), group.get("eps")
    types = tuple(group["types"]) if group.get("types") else None
    upto = bool(group.get("upto"))

    def pred(rec: Record) -> bool:
        kind, n, e = rec.threat
        counted = kind in types if types is not None else family_of(kind) not in (None, Family.CLEAN)
        if e is None and eps is not None:          # a minimum-norm cell counts through its derived budget cells
            return False
        at = eps is None or same_eps(e, float(eps)) or (upto and e is not None and e < float(eps))
        return counted and (norm is None or n == norm) and at
    return pred


def worst_case(records: Iterable[Record], group: Group) -> float | None:
    """Fraction of points robust to EVERY cell in `group` (see worst_mask)."""
    mask = worst_mask(records, group)
    return None if mask is None else float(mask.mean())


def worst_mask(records: Iterable[Record], group: Group) -> np.ndarray | None:
    """Points robust to EVERY cell in `group` (per-point AND of the decoded robust masks).

    `records` are cells of one model (e.g. its latest records); `group` is a predicate on a record or a
    mapping {"norm": "linf", "eps": 8/255[, "types": (...)][, "upto": True]} (default: every attack type of a
    family other than clean: white-box, min-norm, black-box and transfer; with "upto", cells at a smaller ε of
    the norm count too: a point they fool lies in the larger ball as well, which makes the worst case the best
    known per-point distance of distances.best_known, read at ε). Returns None when no cell is in the group. A
    cell without a decodable `robust_mask`, cells of several models, or cells with different n raise UserError.
    """
    pred = group_predicate(group)
    cells = [r for r in records if pred(r)]
    if not cells:
        return None
    models = unique(r.model for r in cells)
    if len(models) > 1:
        raise UserError(f"worst case over several models ({', '.join(map(str, models))}); pass one model's cells")
    ns = unique(r.n for r in cells)
    if len(ns) != 1:
        raise UserError(f"worst case for {models[0]}: cells have different n ({ns}); they were not evaluated on "
                        f"the same test points, re-run the suite")
    test_sets = unique(r.test_indices_hash for r in cells)
    if len(test_sets) > 1:
        raise UserError(f"worst case for {models[0]}: cells were evaluated on different test subsets "
                        f"(test_indices_hash differs); re-run the suite so they share one")
    n = int(ns[0])
    acc = np.ones(n, dtype=bool)
    for r in cells:
        if not r.robust_mask:
            raise UserError(f"{r.where()}: no robust_mask, needed for the worst case; re-run the evaluation")
        try:
            acc &= decode_mask(r.robust_mask, n)
        except ValueError as e:
            raise UserError(f"{r.where()}: {e}") from None
    return acc


def unique(values: Iterable[Any]) -> list[Any]:
    """The distinct non-None values in first-seen order."""
    out: list[Any] = []
    for v in values:
        if v is not None and v not in out:
            out.append(v)
    return out
