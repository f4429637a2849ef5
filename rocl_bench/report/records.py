"""How reports name what a record holds: threat-model text (ε, norms); budgets are matched by record.same_eps.

Reading records.jsonl, the latest record per cell and the masks live in `rocl_bench.record`; this module only
turns a record's fields into the words of a table.
"""
from __future__ import annotations


def eps_text(eps: float | None) -> str:
    """8/255 when eps is close to k/255 (and not a short decimal like 0.5 or 12), else a decimal."""
    if eps is None:
        return "?"
    if abs(eps - round(eps, 3)) < 1e-9:
        return f"{eps:g}"
    k = eps * 255
    if abs(k - round(k)) < 1e-3 * max(1.0, abs(k)) and round(k) != 0:
        return f"{int(round(k))}/255"
    return f"{eps:.4g}"


NORM_TEXT = {"linf": "ℓ∞", "l2": "ℓ2", "l1": "ℓ1"}
NORM_TEX = {"linf": r"$\ell_\infty$", "l2": r"$\ell_2$", "l1": r"$\ell_1$"}
NORM_ORDER = {"linf": 0, "l2": 1, "l1": 2}


def norm_text(norm: str | None) -> str:
    """ℓ∞, ℓ2, ℓ1 for the norms we know, else the name as written."""
    return NORM_TEXT.get(norm or "", str(norm))
