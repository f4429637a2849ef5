"""Gradient-masking and consistency alarms, checked as each cell finishes so the record itself is marked."""
from __future__ import annotations

from typing import Any, Iterable

WHITE_BOX = ("pgd", "autoattack", "apgd", "fgsm", "cw", "eot-pgd")
BLACK_BOX = ("square", "transfer")


def _budget(rec: dict[str, Any]) -> tuple[str | None, float | None]:
    spec = rec.get("attack_spec", {})
    inner = spec.get("crafted_with", spec)
    norm = inner.get("norm")
    return (norm.lower() if isinstance(norm, str) else None), inner.get("eps")


def cell_warnings(rec: dict[str, Any], earlier: Iterable[dict[str, Any]], slack: float = 0.01) -> list[str]:
    """Alarms for `rec` given the finished cells of the same model (the runner keeps suite order)."""
    out: list[str] = []
    kind = rec.get("attack_spec", {}).get("type")
    norm, eps = _budget(rec)
    for prev in earlier:
        if prev.get("model") != rec.get("model"):
            continue
        p_kind = prev.get("attack_spec", {}).get("type")
        p_norm, p_eps = _budget(prev)
        if abs(prev["clean_accuracy"] - rec["clean_accuracy"]) > 1e-9 and kind != "transfer" and p_kind != "transfer":
            out.append(f"clean accuracy differs between cells of one model ({prev['attack']}: "
                       f"{prev['clean_accuracy']:.4f}, {rec['attack']}: {rec['clean_accuracy']:.4f}); "
                       "the model may be randomized")
        if kind == "pgd" and p_kind == "pgd" and norm == p_norm and eps is not None and p_eps is not None:
            if eps > p_eps and rec["robust_accuracy"] > prev["robust_accuracy"] + slack:
                out.append(f"robust accuracy rises with eps for {norm} ({prev['attack']} eps={p_eps:g}: "
                           f"{prev['robust_accuracy']:.1%} < {rec['attack']} eps={eps:g}: "
                           f"{rec['robust_accuracy']:.1%}); possible gradient masking")
        if kind in BLACK_BOX and p_kind in WHITE_BOX and norm == p_norm and eps is not None and p_eps is not None \
                and abs(eps - p_eps) <= 1e-9 and rec["robust_accuracy"] < prev["robust_accuracy"] - slack:
            out.append(f"black-box {rec['attack']} beats white-box {prev['attack']} at {norm} eps={eps:g} "
                       f"({rec['robust_accuracy']:.1%} < {prev['robust_accuracy']:.1%}); possible gradient masking")
    if rec.get("flags"):
        out.append("pyautoattack flagged this model: " + "; ".join(rec["flags"]))
    return out
