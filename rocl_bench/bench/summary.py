"""The Markdown summary printed at the end of `rocl-bench run` (the reports module makes the paper tables).

It renders through `rocl_bench.render`, the one renderer family (which imports nothing of the package)."""
from __future__ import annotations

from ..distances import is_min_norm, median_distance
from ..record import Record
from ..render import markdown


def summary_markdown(records: list[Record]) -> str:
    """Models × attacks, robust accuracy in percent (transfer cells averaged over sources; a minimum-norm cell
    shows its median distance, "med 0.171"), no final newline."""
    if not records:
        return "(no cells)"
    models: dict[str, str] = {}
    attacks: list[str] = []
    cells: dict[tuple[str, str], list[float]] = {}
    clean: dict[str, float] = {}
    for r in records:
        models.setdefault(r.model, r.name)
        if r.attack not in attacks:
            attacks.append(r.attack)
        cells.setdefault((r.model, r.attack), []).append(
            ("med", median_distance(r.min_distances())) if is_min_norm(r) else r.robust_accuracy)
        if r.attack_type != "transfer" and r.clean_accuracy is not None:
            clean[r.model] = r.clean_accuracy
    rows = []
    for m, label in models.items():
        row = [label, f"{100 * clean[m]:.1f}" if m in clean else ""]
        for a in attacks:
            v = cells.get((m, a))
            if v and isinstance(v[0], tuple):
                row.append(f"med {v[0][1]:.3g}")
            else:
                row.append(f"{100 * sum(v) / len(v):.1f}" if v else "")
        rows.append(row)
    return markdown(["model", "clean acc."] + attacks, rows).rstrip("\n")
