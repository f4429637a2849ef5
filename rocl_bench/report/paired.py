"""Paired comparison of two models scored on the same test points.

At n = 500 two accuracies three points apart may or may not differ. Both models saw the same points, so the
per-point masks say which points each one alone keeps, and an exact McNemar test on those two counts says
whether the difference is more than chance. Transfer cells are left out: each has one per source.
"""
from __future__ import annotations

import html as html_lib
import math
from dataclasses import dataclass
import numpy as np

from ..errors import UserError, suggest
from ..record import Record
from ..render import csv, html, markdown
from .tables import build_main_table, describe
from .worst import worst_mask


@dataclass(frozen=True)
class PairedRow:
    threat: str
    acc_a: float          # percent
    acc_b: float
    only_a: int           # points A keeps and B loses
    only_b: int
    p: float              # exact two-sided McNemar


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar test: under 'no difference' each discordant point is a fair coin."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def _mask(rec: Record, key: str) -> np.ndarray:
    try:
        return rec.robust() if key == "robust_mask" else rec.clean_correct()
    except ValueError as e:
        raise UserError(f"{rec.where()}: no usable {key} ({e}); re-run the evaluation") from None


def paired_rows(latest: list[Record], a: str, b: str) -> list[PairedRow]:
    """One row per main-table column except transfer: clean, each white-box/AutoAttack/Square cell, worst case
    (which, as in the table, also requires surviving every transfer source)."""
    names = list(dict.fromkeys(r.model for r in latest))
    for name in (a, b):
        if name not in names:
            raise UserError(f"model {name}: not in these records{suggest(name, names)}; models: {', '.join(names)}")
    if a == b:
        raise UserError(f"compare names {a} twice; name two different models")
    cells = {m: [r for r in latest if r.model == m and r.attack_type != "transfer"] for m in (a, b)}
    tests = {(r.n, r.test_indices_hash) for m in (a, b) for r in cells[m]}
    if len(tests) > 1:
        raise UserError(f"{a} and {b} were not scored on the same test points (n / test_indices_hash differ); "
                        "re-run them in one suite")
    table = build_main_table(latest, warn=lambda s: None, per_attack=True)    # a row per attack, and Worst
    rows = []
    for col in table.columns:
        if col.kind == "transfer" or col.role == "distance":     # a median ε is no share of points to pair
            continue
        masks = []
        for m in (a, b):
            if col.kind == "worst":        # as in the table: every cell at the seen budget or below, transfer included
                mask = worst_mask([r for r in latest if r.model == m],
                                  {"norm": col.norm, "eps": col.eps, "upto": True})
            elif col.kind == "clean":       # the clean cell's mask, else any cell's clean_mask
                rec = next((r for r in cells[m] if r.attack_type == "clean" and r.robust_mask), None)
                other = next((r for r in cells[m] if r.clean_mask), None)
                mask = _mask(rec, "robust_mask") if rec else _mask(other, "clean_mask") if other else None
            else:
                rec = next((r for r in cells[m] if r.attack == col.attack), None)
                mask = _mask(rec, "robust_mask") if rec else None
            masks.append(mask)
        ma, mb = masks
        if ma is None or mb is None:
            continue
        only_a, only_b = int((ma & ~mb).sum()), int((mb & ~ma).sum())
        rows.append(PairedRow(col.flat, 100.0 * ma.mean(), 100.0 * mb.mean(), only_a, only_b,
                              mcnemar_p(only_a, only_b)))
    return rows


def render_paired(latest: list[Record], a: str, b: str, fmt: str = "md") -> str:
    """The comparison as md (with a caption saying how to read it), csv, or an html table (the site's)."""
    if fmt not in ("md", "csv", "html"):
        raise UserError(f"--format {fmt}: compare writes md or csv")
    rows = paired_rows(latest, a, b)
    label = {r.model: r.name for r in latest}
    header = ["Threat", f"A: {label[a]} (%)", f"B: {label[b]} (%)", "A − B (points)", "only A", "only B", "p"]
    cells = [[r.threat, f"{r.acc_a:.1f}", f"{r.acc_b:.1f}", f"{r.acc_a - r.acc_b:+.1f}", r.only_a, r.only_b,
              _p_text(r.p)] for r in rows]
    if fmt == "csv":
        return csv(header, cells)
    caption = (f"Paired comparison on {describe(latest)[0]}: A = {label[a]}, B = {label[b]}. only A: test "
               f"points A keeps and B loses (and the reverse); p: exact two-sided McNemar test on those two "
               f"counts.")
    if fmt == "html":                    # cells are HTML there: '<0.001' escaped; the threats label the rows
        body = [[html_lib.escape(str(c)) for c in row[1:]] for row in cells]
        return html(header[1:], body, [row[0] for row in cells], caption, corner="Threat")
    return markdown(header, cells, caption, "l" + "r" * (len(header) - 1))


def _p_text(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"
