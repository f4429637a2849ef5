"""Robustness tables from evaluation records: Markdown, CSV, LaTeX (booktabs) and HTML.

Main table (`--kind main`): one row per model in suite order (model_index), named by its label; values are
accuracy in percent with one decimal, the best unmarked value of each column in bold.

Headline (the default): one column per budget (norm, ε), Clean | Seen <norm> | Unseen ℓ∞ | Unseen ℓ2 | Unseen ℓ1
(each sorted by ε), whose value is the PER-POINT WORST CASE over every attack evaluated at that budget on that
model (RobustBench's "best known"): a point counts as robust only if it is clean-correct and survives every
white-box, min-norm, black-box and transfer cell at that norm and ε. Transfer cells count (each source apart)
because their adversarial examples lie in the same ε-ball, so a point they fool is not robust at that budget.
The header says how many attacks made the column ("ε=0.1 (3 attacks)") and a note lists them. Where masks are
missing or cells were scored on different points, the column falls back to the strongest single attack (never
more generous than it) and says so on stderr. Cells of attack types this version does not know, or without a
budget, go to "Other".

Per attack (`--per-attack`, and what `--compare` and baselines' reference cells use): Clean | Seen <norm> (one
column per seen white-box attack, "ε=8/255", suffixed with the attack's title (FGSM, CW, APGD, EOT-PGD) when it
is not the reference attack, PGD) | Unseen ℓ∞ | Unseen ℓ2 | Unseen ℓ1 (each sorted by ε, then by the attack's
table_order) | one group per attack with `own_column` or of the black-box or transfer family, in family order:
AutoAttack ("ℓ∞ ε=8/255") | Square (black-box) | Transfer (mean over sources) | Worst case (seen budget)

Which attack goes where is what its class declares (attacks.base.Attack: family, title, table_order,
own_column, reference).

* Transfer: one column per transfer attack id, the MEAN robust accuracy over every source model that
  attacked this target. The per-source numbers are in the transfer matrix (`--kind transfer`).
* Worst case: shown when more than one attack hits the seen budget (same norm and ε as the seen attack):
  the per-point AND of the robust masks of every such cell of the model (report/worst.py, the one
  implementation the headline columns use too).
* Two attacks that land on the same header get their attack id appended in brackets.

Warnings: a cell whose record carries an alarm (bench/sanity.py; a headline, Worst or Transfer cell: any record
that made it) gets a dagger († in md/html, $^\\dagger$ in LaTeX) and a footnote under the table naming the
warnings; a marked cell is never bold. CSV keeps its values numeric and adds a last column `warnings`: for each
marked cell of the row, "<column>: <warning>; <warning>", cells separated by " | ".

Transfer matrix (`--kind transfer`): rows are source models (where the adversarial examples were crafted),
columns the target models (attacked), grouped by transfer attack; no bold (no single "best" direction).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from ..attacks import Family, attack_class, family_of
from ..errors import UserError, suggest
from ..distances import is_min_norm, median_distance
from ..record import Record, same_eps, warn_stderr
from .columns import GROUP_ORDER, Column, column_of, eps_tex, label_columns, median_column, norm_tex
from .records import NORM_ORDER, eps_text, norm_text
from ..render import DAGGER, FORMATS, csv, html, latex, latex_grouped, markdown, tex_escape, tex_text
from .worst import group_predicate, unique, worst_case


@dataclass
class Row:
    model: str
    label: str


@dataclass
class Table:
    rows: list[Row]
    columns: list[Column]
    values: dict[tuple[str, Column], float]          # percent
    caption: str = ""
    caption_tex: str = ""
    bold: bool = True
    notes: list[str] = field(default_factory=list)
    corner: str = "Model"     # header of the row-label column
    label: str = "tab:rocl-bench-main"  # LaTeX \\label
    marks: dict[tuple[str, Column], tuple[str, ...]] = field(default_factory=dict)   # the warnings behind a cell

    def value(self, model: str, col: Column) -> float:
        return self.values.get((model, col), math.nan)

    def matrix(self) -> np.ndarray:
        return np.array([[self.value(r.model, c) for c in self.columns] for r in self.rows], dtype=float)


# ------------------------------------------------------------------------------------------ helpers
def _rows(latest: list[Record]) -> list[Row]:
    seen: dict[str, Row] = {}
    for rec in latest:  # sorted by model_index already
        if rec.model not in seen:
            seen[rec.model] = Row(rec.model, rec.name)
    rows = list(seen.values())
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.label] = counts.get(r.label, 0) + 1
    for r in rows:
        if counts[r.label] > 1:
            r.label = f"{r.label} ({r.model})"
    return rows


def describe(latest: list[Record]) -> tuple[str, str]:
    """Caption fragments (text, tex): dataset, architecture, number of test points, split, suite."""
    ds = ", ".join(map(str, unique(r.dataset for r in latest))) or "unknown dataset"
    arch = ", ".join(map(str, unique(r.arch for r in latest))) or "unknown architecture"
    ns = sorted(unique(r.n for r in latest))
    n = (f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}") if ns else "?"
    split = ", ".join(map(str, unique(r.split for r in latest))) or "test"
    suite = ", ".join(map(str, unique(r.suite for r in latest)))
    text = f"{ds} ({arch}), n={n} {split} points" + (f", suite {suite}" if suite else "")
    tex = (f"{tex_escape(ds)} ({tex_escape(arch)}), $n={n.replace('–', '$--$')}$ {tex_escape(split)} points"
           + (f", suite {tex_escape(suite)}" if suite else ""))
    return text, tex


# ------------------------------------------------------------------------------------------ building
BUDGET = "budget"      # Column.atype of a headline column: the worst case over every attack at its budget


def _warned(recs: list[Record]) -> tuple[str, ...]:
    """The distinct warnings of the records behind one cell, in order."""
    return tuple(unique(w for r in recs for w in r.warnings))


def _clean(latest: list[Record]) -> tuple[dict[str, float], dict[str, list[Record]]]:
    """Clean accuracy per model (from its 'clean' cell, else the first cell's clean_accuracy), and the record it
    came from (for the dagger)."""
    clean_cell: dict[str, float] = {}
    clean_any: dict[str, float] = {}
    source: dict[str, list[Record]] = {}
    for rec in latest:
        if family_of(rec.attack_type) is Family.CLEAN:
            v = rec.clean_accuracy
            clean_cell[rec.model] = float(v if v is not None else rec.robust_accuracy)
            source[rec.model] = [rec]
        elif rec.clean_accuracy is not None and rec.model not in clean_any:
            clean_any[rec.model] = float(rec.clean_accuracy)
            source.setdefault(rec.model, [])
    return {**clean_any, **clean_cell}, source


def _worst(model: str, recs: list[Record], group: dict, warn: Callable[[str], None]) -> float | None:
    """The per-point worst case of `recs` in `group`; without usable masks the strongest single attack."""
    pred = group_predicate(group)
    cells = [r for r in recs if pred(r)]
    if len(cells) == 1:
        return float(cells[0].robust_accuracy)
    try:
        return worst_case(recs, group)
    except UserError as e:
        if not cells:
            return None
        warn(f"worst case for {model} at {group.get('norm')} ε={eps_text(group.get('eps'))}: {e}; showing the "
             f"strongest single attack instead")
        return min(float(r.robust_accuracy) for r in cells)


def _caption(latest: list[Record], notes: list[str]) -> tuple[str, str]:
    text, tex = describe(latest)
    caption = f"Accuracy (%) on {text}. Best per column in bold" + "".join(f"; {n}" for n in notes) + "."
    caption_tex = (f"Accuracy (\\%) on {tex}. Best per column in bold"
                   + "".join(f"; {tex_text(n)}" for n in notes) + ".")
    return caption, caption_tex


def build_main_table(latest: list[Record], warn: Callable[[str], None] | None = None,
                     per_attack: bool = False) -> Table:
    """The main table from the latest record of each cell: one worst-case column per budget, or with
    `per_attack` one column per attack (see the module docstring for both layouts)."""
    warn = warn or warn_stderr
    if per_attack:
        return _per_attack_table(latest, warn)
    rows = _rows(latest)
    clean, clean_src = _clean(latest)
    clean_col = Column("clean", None, None, "clean", None, (0,))
    by_model: dict[str, list[Record]] = {}
    budgets: list[dict] = []           # {"norm", "eps", "seen", "attacks"}
    other: dict[str, Column] = {}
    for rec in latest:
        by_model.setdefault(rec.model, []).append(rec)
        family = family_of(rec.attack_type)
        if family is Family.CLEAN:
            continue
        if is_min_norm(rec):
            other.setdefault(rec.attack, median_column(rec))
            continue
        _, norm, eps = rec.threat
        if family is None or norm is None or eps is None:
            col = column_of(rec)
            other.setdefault(rec.attack, dataclasses.replace(col, kind="other", order=(GROUP_ORDER["other"],
                                                                                       *col.order[1:])))
            continue
        b = next((b for b in budgets if b["norm"] == norm and same_eps(b["eps"], eps)), None)
        if b is None:
            b = {"norm": norm, "eps": eps, "seen": False, "attacks": {}}
            budgets.append(b)
        b["seen"] = b["seen"] or bool(rec.seen)
        b["attacks"].setdefault(rec.attack, column_of(rec).order)
    values: dict[tuple[str, Column], float] = {}
    marks: dict[tuple[str, Column], tuple[str, ...]] = {}
    cols: list[Column] = []
    for b in budgets:
        kind = "seen" if b["seen"] else "unseen"
        attacks = tuple(sorted(b["attacks"], key=lambda a: b["attacks"][a]))
        smaller = tuple(a for o in budgets if o["norm"] == b["norm"] and o["eps"] < b["eps"]
                        and not same_eps(o["eps"], b["eps"]) for a in o["attacks"])
        col = Column(kind, b["norm"], b["eps"], BUDGET, None,
                     (GROUP_ORDER[kind], (), NORM_ORDER.get(b["norm"], 9), b["eps"]), attacks=attacks, smaller=smaller)
        cols.append(col)
    cols.sort(key=lambda c: c.order)
    labeled = label_columns([clean_col] + cols + sorted(other.values(), key=lambda c: c.order))
    for c in labeled:
        for r in rows:
            recs = by_model.get(r.model, [])
            if c.kind == "clean":
                v, src = clean.get(r.model), clean_src.get(r.model, [])
            elif c.atype == BUDGET:
                group = {"norm": c.norm, "eps": c.eps, "upto": True}
                v = _worst(r.model, recs, group, warn)
                src = [x for x in recs if group_predicate(group)(x)]
            elif c.kind == "median":
                src = [x for x in recs if x.attack == c.attack]
                if src:
                    values[(r.model, c)] = median_distance(src[0].min_distances())
                    if _warned(src):
                        marks[(r.model, c)] = _warned(src)
                continue
            else:
                src = [x for x in recs if x.attack == c.attack]
                v = float(np.mean([x.robust_accuracy for x in src])) if src else None
            if v is not None:
                values[(r.model, c)] = 100.0 * v
                if _warned(src):
                    marks[(r.model, c)] = _warned(src)
    notes = [f"{c.flat}: per-point worst case over {', '.join(c.attacks)}"
             + (f" and, at smaller ε, {', '.join(c.smaller)}" if c.smaller else "")
             for c in labeled if c.atype == BUDGET and len(c.attacks) + len(c.smaller) > 1]
    if any(c.atype == BUDGET and c.smaller for c in labeled):
        notes.append("a point fooled at a smaller ε of the same norm counts as fooled at every larger ε (best known)")
    if any(c.kind == "median" for c in labeled):
        notes.append("median ε: the median over all test points of the smallest perturbation the minimum-norm attack "
                     "found (0 for clean errors, ∞ where none), the ε at which its robust accuracy falls to 50 %")
    if any(family_of(r.attack_type) is Family.TRANSFER for r in latest):
        notes.append("transfer cells count once per source model")
    caption, caption_tex = _caption(latest, notes)
    return Table(rows, labeled, values, caption, caption_tex, True, notes, marks=marks)


def _per_attack_table(latest: list[Record], warn: Callable[[str], None]) -> Table:
    rows = _rows(latest)
    clean_col = Column("clean", None, None, "clean", None, (0,))
    protos: dict[tuple, Column] = {}
    cells: dict[tuple[str, tuple], list[Record]] = {}
    clean, clean_src = _clean(latest)
    by_model: dict[str, list[Record]] = {}
    for rec in latest:
        by_model.setdefault(rec.model, []).append(rec)
        if family_of(rec.attack_type) is Family.CLEAN:
            continue
        col = median_column(rec) if is_min_norm(rec) else column_of(rec)
        key = (col.kind, col.attack)
        if key not in protos or col.order < protos[key].order:
            protos[key] = col
        cells.setdefault((rec.model, key), []).append(rec)    # transfer: one per source, the table shows the mean
    values: dict[tuple[str, tuple], float] = {k: float(np.mean([r.robust_accuracy for r in v]))
                                              for k, v in cells.items() if k[1][0] != "median"}
    medians = {k: median_distance(v[0].min_distances()) for k, v in cells.items() if k[1][0] == "median"}
    sources: dict[tuple[str, tuple], list[Record]] = dict(cells)

    # worst case at the seen budget(s), when more than one attack hits one
    budgets: list[tuple[str | None, float | None]] = []
    for rec in latest:
        kind, norm, eps = rec.threat
        cls = attack_class(kind)
        if rec.seen and cls is not None and cls.budget_column() \
                and not any(n == norm and same_eps(e, eps) for n, e in budgets):
            budgets.append((norm, eps))
    worst_cols: list[Column] = []
    for norm, eps in budgets:
        group = {"norm": norm, "eps": eps, "upto": True}
        pred = group_predicate(group)
        if not any(sum(1 for r in recs if pred(r)) > 1 for recs in by_model.values()):
            continue
        col = Column("worst", norm, eps, "worst", None, (GROUP_ORDER["worst"], NORM_ORDER.get(norm or "", 9), eps))
        worst_cols.append(col)
        for model, recs in by_model.items():
            try:
                acc = worst_case(recs, group)
            except UserError as e:
                warn(f"worst case for {model} left empty: {e}")
                continue
            if acc is not None:
                values[(model, ("worst", f"{norm}:{eps}"))] = acc
                sources[(model, ("worst", f"{norm}:{eps}"))] = [r for r in recs if pred(r)]
    cols = sorted(protos.values(), key=lambda c: c.order)
    labeled = label_columns([clean_col] + cols + worst_cols)
    out: dict[tuple[str, Column], float] = {}
    marks: dict[tuple[str, Column], tuple[str, ...]] = {}
    for c in labeled:
        for r in rows:
            if c.kind == "clean":
                key = None
                v, src = clean.get(r.model), clean_src.get(r.model, [])
            else:
                key = (r.model, ("worst", f"{c.norm}:{c.eps}") if c.kind == "worst" else (c.kind, c.attack))
                v, src = values.get(key), sources.get(key, [])
            if c.kind == "median" and key in medians:
                v = medians[key] / 100.0          # shown as the distance itself, not a percentage
            if v is not None:
                out[(r.model, c)] = 100.0 * v
                if _warned(src):
                    marks[(r.model, c)] = _warned(src)
    notes = []
    for family, note in ((Family.BLACK_BOX, "black-box (score-based) attack"),
                         (Family.TRANSFER, "mean over source models")):
        for kind in unique(c.kind for c in labeled if family_of(c.kind) is family):
            notes.append(f"{attack_class(kind).display_name()}: {note}")
    if worst_cols:
        notes.append("Worst: a test point counts only if it withstands every attack at the seen budget and every "
                     "attack at a smaller ε of its norm")
    caption, caption_tex = _caption(latest, notes)
    return Table(rows, labeled, out, caption, caption_tex, True, notes, marks=marks)


def build_transfer_table(latest: list[Record]) -> Table:
    """Transfer matrix: rows = source models, columns = (transfer attack, target model)."""
    cells = [r for r in latest if family_of(r.attack_type) is Family.TRANSFER]
    if not cells:
        raise UserError("no transfer cells in these records; add transfer attacks to the suite, or use --kind main")
    targets = _rows(latest)
    label_of = {r.model: r.label for r in targets}
    index_of = {r.model: i for i, r in enumerate(targets)}
    sources = sorted(unique(r.source or "?" for r in cells),
                     key=lambda s: (index_of.get(s, math.inf), str(s)))
    attacks: dict[str, Column] = {}
    for r in cells:
        c = column_of(r)
        if r.attack not in attacks or c.order < attacks[r.attack].order:
            attacks[r.attack] = c
    cols: list[Column] = []
    many = len(attacks) > 1
    for a in sorted(attacks.values(), key=lambda c: c.order):
        g = f"Transfer {norm_text(a.norm)} ε={eps_text(a.eps)}" + (f" [{a.attack}]" if many else "")
        gt = f"Transfer {norm_tex(a.norm)} {eps_tex(a.eps)}" + (f" [{tex_escape(a.attack)}]" if many else "")
        for t in targets:
            if any(r.model == t.model and r.attack == a.attack for r in cells):
                cols.append(dataclasses.replace(a, target=t.model, group=g, group_tex=gt,
                                                sub=t.label, sub_tex=tex_escape(t.label)))
    rows = [Row(s, label_of.get(s, s)) for s in sources]
    values = {}
    marks = {}
    for r in cells:
        for c in cols:
            if c.attack == r.attack and c.target == r.model:
                values[(r.source or "?", c)] = 100.0 * float(r.robust_accuracy)
                if r.warnings:
                    marks[(r.source or "?", c)] = tuple(r.warnings)
    text, tex = describe(latest)
    caption = (f"Transfer attacks: accuracy (%) of the target model (columns) on adversarial examples crafted on "
               f"the source model (rows); {text}.")
    caption_tex = (f"Transfer attacks: accuracy (\\%) of the target model (columns) on adversarial examples "
                   f"crafted on the source model (rows); {tex}.")
    return Table(rows, cols, values, caption, caption_tex, bold=False, corner="Source \\ target",
                 label="tab:rocl-bench-transfer", marks=marks)


def build_gap_table(main: Table, base: str, reference: str, min_gap: float = 5.0) -> Table:
    """Share of a susceptibility gap closed (Gupta et al.'s measure): for every attack column,
    100 · (model − base) / (reference − base), e.g. base SimCLR + LE, reference the standard supervised model.
    The first row is the gap itself in points. A column whose gap is below `min_gap` points has no share: a
    share of a gap of a point or two is a ratio of noise (one test point is 0.2 points at n = 500)."""
    if not (math.isfinite(min_gap) and min_gap >= 0):
        raise UserError(f"--min-gap {min_gap}: expected a number of points >= 0")
    names = [r.model for r in main.rows]
    for flag, name in (("--base", base), ("--reference", reference)):
        if name not in names:
            raise UserError(f"{flag} {name}: no such model in these records{suggest(name, names)}; models: "
                            f"{', '.join(names)}")
    if base == reference:
        raise UserError("--base and --reference name the same model; the gap between them is zero")
    label = {r.model: r.label for r in main.rows}
    gap_row = Row("__gap__", f"Gap: {label[reference]} - {label[base]} (points)")
    rows = [gap_row] + [r for r in main.rows if r.model not in (base, reference)]
    values: dict[tuple[str, Column], float] = {}
    marks: dict[tuple[str, Column], tuple[str, ...]] = {}    # a share is marked when any cell it uses is
    columns = [c for c in main.columns if c.role != "distance"]      # a share of a median distance means nothing
    for c in columns:
        b, ref = main.values.get((base, c)), main.values.get((reference, c))
        if b is None or ref is None:
            continue
        values[(gap_row.model, c)] = ref - b
        both = unique([*main.marks.get((base, c), ()), *main.marks.get((reference, c), ())])
        for r in rows:
            own = unique([*main.marks.get((r.model, c), ()), *both]) if r is not gap_row else both
            if own:
                marks[(r.model, c)] = tuple(own)
        if abs(ref - b) < max(min_gap - 1e-9, 1e-9):       # and never divide by a zero gap
            continue
        for r in rows[1:]:
            v = main.values.get((r.model, c))
            if v is not None:
                values[(r.model, c)] = 100.0 * (v - b) / (ref - b)
    what = (f"share of the gap between {label[base]} and {label[reference]} closed (%), "
            f"100 (model - base) / (reference - base); the first row is the gap in points; no share where it is "
            f"under {min_gap:g} points")
    caption = main.caption.split(". Best per column")[0].replace("Accuracy (%) on", "On", 1) + f": {what}."
    caption_tex = (main.caption_tex.split(". Best per column")[0].replace("Accuracy (\\%) on", "On", 1)
                   + f": {tex_escape(what)}.")
    return Table(rows, columns, values, caption, caption_tex, bold=False, corner="Model",
                 label="tab:rocl-bench-gap", marks=marks)


def only_rows(table: Table, models: list[str]) -> Table:
    """The table restricted to `models` (in table order); a gap table keeps its gap row."""
    names = [r.model for r in table.rows]
    for m in models:
        if m not in names:
            raise UserError(f"--models {m}: no such model in these records{suggest(m, names)}; models: "
                            f"{', '.join(n for n in names if n != '__gap__')}")
    keep = set(models) | {"__gap__"}
    return dataclasses.replace(table, rows=[r for r in table.rows if r.model in keep])


def with_reference(table: Table, refs: Mapping[tuple[str, Column], float]) -> Table:
    """Insert, after every column that has reference numbers, a 'ref' column and a 'Δ' (ours − ref) column."""
    cols: list[Column] = []
    values = dict(table.values)
    marks = dict(table.marks)
    for c in table.columns:
        cols.append(c)
        mine = {m: v for (m, col), v in refs.items() if col == c}
        if not mine:
            continue
        # flat headers (md, csv) repeat the threat; LaTeX/HTML show ref and Δ under the same group header
        ref = dataclasses.replace(c, role="ref", sub=f"{c.sub} ref".strip(), sub_tex="ref")
        diff = dataclasses.replace(c, role="diff", sub=f"{c.sub} Δ".strip(), sub_tex=r"$\Delta$")
        cols += [ref, diff]
        for m, v in mine.items():
            values[(m, ref)] = v
            ours = table.values.get((m, c))
            if ours is not None:
                values[(m, diff)] = ours - v
                if table.marks.get((m, c)):
                    marks[(m, diff)] = table.marks[(m, c)]
    note = "ref: baseline value; Δ: ours − ref in points"
    return dataclasses.replace(table, columns=cols, values=values, marks=marks,
                               caption=table.caption.rstrip(".") + f"; {note}.",
                               caption_tex=table.caption_tex.rstrip(".") + r"; ref: baseline value; $\Delta$: ours "
                               r"$-$ ref in points.")


# ----------------------------------------------------------------------------------------- rendering
def _marked(table: Table) -> np.ndarray:
    return np.array([[bool(table.marks.get((r.model, c))) for c in table.columns] for r in table.rows], dtype=bool) \
        .reshape(len(table.rows), len(table.columns))


def _best(table: Table) -> np.ndarray:
    """The best value of each value column among its UNMARKED cells (a cell with a warning is never ranked)."""
    m, marked = table.matrix(), _marked(table)
    best = np.zeros_like(m, dtype=bool)
    if not table.bold:
        return best
    for j, c in enumerate(table.columns):
        shown = m[:, j] if c.role == "distance" else np.round(m[:, j], 1)
        col = np.where(marked[:, j], np.nan, shown) if m.size else m[:, j]
        if c.role in ("value", "distance") and (~np.isnan(col)).any():
            best[:, j] = col == np.nanmax(col)
    return best


def _cells(table: Table, fmt: str) -> list[list[str]]:
    m, best, marked = table.matrix(), _best(table), _marked(table)
    na = {"md": "–", "html": "–", "latex": "--", "csv": ""}[fmt]
    wrap = {"md": "**{}**", "html": "<strong>{}</strong>", "latex": r"\textbf{{{}}}", "csv": "{}"}[fmt]
    out = []
    for i in range(len(table.rows)):
        line = []
        for j, c in enumerate(table.columns):
            v = m[i, j]
            if c.role == "distance" and v == math.inf:
                s = {"md": "∞", "html": "∞", "latex": r"$\infty$", "csv": "inf"}[fmt]
                line.append(s + DAGGER[fmt] if marked[i, j] else wrap.format(s) if best[i, j] else s)
                continue
            if not math.isfinite(v):
                line.append(na)
                continue
            if c.role == "distance":
                s = f"{v:.3g}"
            elif c.role == "diff":
                s = f"{v:+.1f}"
            elif c.role == "ref" and abs(v * 10 - round(v * 10)) > 1e-6:
                s = f"{v:.2f}"  # keep a reference's second decimal (83.71), ours are one-decimal
            else:
                s = f"{v:.1f}"
            if fmt == "latex" and c.role == "diff":
                s = s.replace("-", "$-$")
            line.append(s + DAGGER[fmt] if marked[i, j] else wrap.format(s) if best[i, j] else s)
        out.append(line)
    return out


def footnotes(table: Table, fmt: str) -> list[str]:
    """One note per marked cell: the dagger, the row and column, and the warnings of the records behind it."""
    out = []
    for r in table.rows:
        for c in table.columns:
            warnings = table.marks.get((r.model, c))
            if not warnings or (r.model, c) not in table.values:
                continue
            if fmt == "latex":
                head = f"{tex_escape(r.label)}, {c.group_tex} {c.sub_tex}".strip()
                out.append(f"{DAGGER['latex']} {head}: {'; '.join(tex_text(w) for w in warnings)}")
            else:
                out.append(f"{DAGGER['md']} {r.label}, {c.flat}: {'; '.join(warnings)}")
    return out


def _row_warnings(table: Table, r: Row) -> str:
    """The CSV `warnings` column: '<column>: <warning>; <warning>' per marked cell of the row, ' | ' between."""
    return " | ".join(f"{c.flat}: {'; '.join(table.marks[(r.model, c)])}" for c in table.columns
                      if table.marks.get((r.model, c)) and (r.model, c) in table.values)


def render(table: Table, fmt: str, links: Mapping[str, str] | None = None) -> str:
    """The table as md, csv, latex (booktabs, two-level header) or html (see rocl_bench/render.py); cells whose
    records carry warnings get a dagger and a footnote (CSV: the last column, `warnings`). html only: `links`
    {model: href} makes row labels links (the site's pages)."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    cells, labels = _cells(table, fmt), [r.label for r in table.rows]
    notes = footnotes(table, fmt)
    caption, caption_tex = table.caption, table.caption_tex
    if notes:
        caption = caption.rstrip(".") + "; † marks a cell whose records carry a warning (listed below), never bold."
        caption_tex = caption_tex.rstrip(".") + r"; $^\dagger$ marks a cell whose records carry a warning (listed " \
                                                r"below), never bold."
    if fmt == "md":
        return markdown([table.corner] + [c.flat for c in table.columns],
                        [[label] + line for label, line in zip(labels, cells)], caption,
                        "l" + "r" * len(table.columns), footnotes=notes)
    if fmt == "csv":
        return csv(["model", "label"] + [c.flat for c in table.columns] + ["warnings"],
                   [[r.model, r.label] + line + [_row_warnings(table, r)] for r, line in zip(table.rows, cells)])
    if fmt == "latex":
        header = [(c.group_tex, c.sub_tex) for c in table.columns]
        body = latex(header, cells, caption_tex, table.label, index=labels,
                     column_format="l" + "r" * len(table.columns), header_tex=True)
        return latex_grouped(body, header, footnotes=notes)
    return html([(c.group, c.sub) for c in table.columns], cells, labels, caption, footnotes=notes,
                corner=table.corner, links=[(links or {}).get(r.model) for r in table.rows])
