"""Robustness tables from evaluation records: Markdown, CSV, LaTeX (booktabs) and HTML.

Main table (`--kind main`): one row per model in suite order (model_index), named by its label; values are
accuracy in percent with one decimal, the best value of each column in bold. Columns, grouped by threat
model, in this order:

  Clean | Seen <norm> (one column per seen white-box attack, "ε=8/255", suffixed with the attack's title
  (FGSM, CW, APGD, EOT-PGD) when it is not the reference attack, PGD) | Unseen ℓ∞ | Unseen ℓ2 | Unseen ℓ1
  (each sorted by ε, then by the attack's table_order) | one group per attack with `own_column` or of the
  black-box or transfer family, in family order: AutoAttack ("ℓ∞ ε=8/255") | Square (black-box) | Transfer
  (mean over sources) | Worst case (seen budget)

Which attack goes where is what its class declares (attacks.base.Attack: family, title, table_order,
own_column, reference); attack types this version does not know go to "Other".

* Transfer: one column per transfer attack id, the MEAN robust accuracy over every source model that
  attacked this target. The per-source numbers are in the transfer matrix (`--kind transfer`).
* Worst case: shown when more than one attack hits the seen budget (same norm and ε as the seen attack):
  the per-point AND of the robust masks of every such cell of the model (white-box, AutoAttack, Square,
  each transfer source), i.e. a point counts as robust only if it survived all of them.
* Two attacks that land on the same header get their attack id appended in brackets.

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
from ..record import Record, warn_stderr
from .columns import GROUP_ORDER, Column, column_of, eps_tex, label_columns, norm_tex, own_column_kinds  # noqa: F401
from .records import NORM_ORDER, eps_text, norm_text, same_eps
from ..render import FORMATS, csv, html, latex, latex_grouped, markdown, tex_escape
from .worst import group_predicate, unique, worst_case, worst_mask  # noqa: F401  (worst_mask: for callers)


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
def build_main_table(latest: list[Record], warn: Callable[[str], None] | None = None) -> Table:
    """The main table from the latest record of each cell (see the module docstring for the layout)."""
    warn = warn or warn_stderr
    rows = _rows(latest)
    clean_col = Column("clean", None, None, "clean", None, (0,))
    protos: dict[tuple, Column] = {}
    values: dict[tuple[str, tuple], float] = {}
    transfer: dict[tuple[str, tuple], list[float]] = {}
    clean_cell: dict[str, float] = {}   # from a 'clean' attack cell
    clean_any: dict[str, float] = {}    # else the clean_accuracy stored with the model's first cell
    by_model: dict[str, list[Record]] = {}
    for rec in latest:
        model = rec.model
        by_model.setdefault(model, []).append(rec)
        if family_of(rec.attack_type) is Family.CLEAN:
            v = rec.clean_accuracy
            clean_cell[model] = float(v if v is not None else rec.robust_accuracy)
            continue
        if rec.clean_accuracy is not None:
            clean_any.setdefault(model, float(rec.clean_accuracy))
        col = column_of(rec)
        key = (col.kind, col.attack)
        if key not in protos or col.order < protos[key].order:
            protos[key] = col
        if family_of(col.kind) is Family.TRANSFER:       # one value per source: the table shows their mean
            transfer.setdefault((model, key), []).append(float(rec.robust_accuracy))
        else:
            values[(model, key)] = float(rec.robust_accuracy)
    for (model, key), accs in transfer.items():
        values[(model, key)] = float(np.mean(accs))
    clean = {**clean_any, **clean_cell}

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
        group = {"norm": norm, "eps": eps}
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
    cols = sorted(protos.values(), key=lambda c: c.order)
    labeled = label_columns([clean_col] + cols + worst_cols)
    out: dict[tuple[str, Column], float] = {}
    for c in labeled:
        for r in rows:
            if c.kind == "clean":
                v = clean.get(r.model)
            elif c.kind == "worst":
                v = values.get((r.model, ("worst", f"{c.norm}:{c.eps}")))
            else:
                v = values.get((r.model, (c.kind, c.attack)))
            if v is not None:
                out[(r.model, c)] = 100.0 * v
    text, tex = describe(latest)
    notes = []
    for family, note in ((Family.BLACK_BOX, "black-box (score-based) attack"),
                         (Family.TRANSFER, "mean over source models")):
        for kind in unique(c.kind for c in labeled if family_of(c.kind) is family):
            notes.append(f"{attack_class(kind).display_name()}: {note}")
    if worst_cols:
        notes.append("Worst: a test point counts only if it withstands every attack at the seen budget")
    caption = f"Accuracy (%) on {text}. Best per column in bold" + "".join(f"; {n}" for n in notes) + "."
    caption_tex = (f"Accuracy (\\%) on {tex}. Best per column in bold"
                   + "".join(f"; {tex_escape(n)}" for n in notes) + ".")
    return Table(rows, labeled, out, caption, caption_tex, True, notes)


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
    for r in cells:
        for c in cols:
            if c.attack == r.attack and c.target == r.model:
                values[(r.source or "?", c)] = 100.0 * float(r.robust_accuracy)
    text, tex = describe(latest)
    caption = (f"Transfer attacks: accuracy (%) of the target model (columns) on adversarial examples crafted on "
               f"the source model (rows); {text}.")
    caption_tex = (f"Transfer attacks: accuracy (\\%) of the target model (columns) on adversarial examples "
                   f"crafted on the source model (rows); {tex}.")
    return Table(rows, cols, values, caption, caption_tex, bold=False, corner="Source \\ target",
                 label="tab:rocl-bench-transfer")


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
    for c in main.columns:
        b, ref = main.values.get((base, c)), main.values.get((reference, c))
        if b is None or ref is None:
            continue
        values[(gap_row.model, c)] = ref - b
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
    return Table(rows, list(main.columns), values, caption, caption_tex, bold=False, corner="Model",
                 label="tab:rocl-bench-gap")


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
    note = "ref: baseline value; Δ: ours − ref in points"
    return dataclasses.replace(table, columns=cols, values=values,
                               caption=table.caption.rstrip(".") + f"; {note}.",
                               caption_tex=table.caption_tex.rstrip(".") + r"; ref: baseline value; $\Delta$: ours "
                               r"$-$ ref in points.")


# ----------------------------------------------------------------------------------------- rendering
def _best(table: Table) -> np.ndarray:
    m = table.matrix()
    best = np.zeros_like(m, dtype=bool)
    if not table.bold:
        return best
    for j, c in enumerate(table.columns):
        col = np.round(m[:, j], 1)
        if c.role == "value" and np.isfinite(col).any():
            best[:, j] = col == np.nanmax(col)
    return best


def _cells(table: Table, fmt: str) -> list[list[str]]:
    m, best = table.matrix(), _best(table)
    na = {"md": "–", "html": "–", "latex": "--", "csv": ""}[fmt]
    wrap = {"md": "**{}**", "html": "<strong>{}</strong>", "latex": r"\textbf{{{}}}", "csv": "{}"}[fmt]
    out = []
    for i in range(len(table.rows)):
        line = []
        for j, c in enumerate(table.columns):
            v = m[i, j]
            if not math.isfinite(v):
                line.append(na)
                continue
            if c.role == "diff":
                s = f"{v:+.1f}"
            elif c.role == "ref" and abs(v * 10 - round(v * 10)) > 1e-6:
                s = f"{v:.2f}"  # keep a reference's second decimal (83.71), ours are one-decimal
            else:
                s = f"{v:.1f}"
            if fmt == "latex" and c.role == "diff":
                s = s.replace("-", "$-$")
            line.append(wrap.format(s) if best[i, j] else s)
        out.append(line)
    return out


def render(table: Table, fmt: str) -> str:
    """The table as md, csv, latex (booktabs, two-level header) or html (see report/render.py)."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    cells, labels = _cells(table, fmt), [r.label for r in table.rows]
    if fmt == "md":
        return markdown([table.corner] + [c.flat for c in table.columns],
                        [[label] + line for label, line in zip(labels, cells)], table.caption,
                        "l" + "r" * len(table.columns))
    if fmt == "csv":
        return csv(["model", "label"] + [c.flat for c in table.columns],
                   [[r.model, r.label] + line for r, line in zip(table.rows, cells)])
    if fmt == "latex":
        header = [(c.group_tex, c.sub_tex) for c in table.columns]
        body = latex(header, cells, table.caption_tex, table.label, index=labels,
                     column_format="l" + "r" * len(table.columns), header_tex=True)
        return latex_grouped(body, header)
    return html([(c.group, c.sub) for c in table.columns], cells, labels, table.caption)
