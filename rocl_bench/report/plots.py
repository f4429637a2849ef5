"""Figures from records and training logs: ε-curves, transfer heat maps, training curves.

Figures are built on matplotlib's object API (Figure + Agg canvas): no pyplot, no global backend switch.
Every figure is written atomically (temp file + rename); the format follows the file extension.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator

from ..config import read_limited
from ..errors import UserError
from ..attacks import Family, family_of
from ..distances import best_known, is_min_norm
from ..record import RECORDS_FILE, Record, same_eps, warn_stderr
from ..train.checkpoint import atomic_write_bytes
from .records import NORM_ORDER, eps_text, norm_text
from .tables import build_transfer_table, describe
from .worst import worst_case

KINDS = ("eps-curve", "transfer", "training")
FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
DPI = 200
NORM_AXIS = {"linf": "ℓ∞ radius ε", "l2": "ℓ2 radius ε", "l1": "ℓ1 radius ε"}

# Okabe & Ito's colour-blind-safe qualitative palette
PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")     # 7 markers against 8 colours: 56 distinct (colour, marker) pairs
Styles = dict[str, tuple[str, str]]


def model_styles(models: Any) -> Styles:
    """{model: (colour, marker)} for models in suite order: the i-th model gets colour i mod 8 and marker i mod 7, so
    the first 56 models (8 and 7 are coprime) each have a pair of their own, and neighbours differ in both. Every
    plot of a suite (ε-curve, training curves, the site's per-model plots) takes its styles from here with the
    suite's model list, so a model keeps its colour and marker across them."""
    names = list(dict.fromkeys(models))
    return {m: (PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]) for i, m in enumerate(names)}


def suite_models(latest: list[Record]) -> list[str]:
    """The models of these records in suite order (the order model_styles is given)."""
    return list(dict.fromkeys(r.model for r in latest))


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out: str | Path, dpi: int = DPI) -> Path:
    out = Path(out)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise UserError(f"--out {out}: unsupported figure type '{out.suffix}'; use .png, .pdf or .svg")
    try:
        atomic_write_bytes(out, lambda f: fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight"))
    except OSError as e:
        raise UserError(f"--out {out}: cannot be written ({e.strerror or e}); choose a writable path") from None
    return out


def _legend_outside(fig: Figure, ax: Any, title: str | None = None) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, title=title,
                   fontsize=9, title_fontsize=9)


# ---------------------------------------------------------------------------------------- eps curve
def _fixed_at(model: str, norm: str, eps: float) -> Callable[[Record], bool]:
    """The fixed-ε cells of `model` at (norm, ε), derived minimum-norm cells excluded (the markers of a curve)."""
    def pred(r: Record) -> bool:
        kind, n, e = r.threat
        return (r.model == model and n == norm and e is not None and same_eps(e, eps) and not r.extra.get("derived_from")
                and family_of(kind) not in (None, Family.CLEAN, Family.MIN_NORM))
    return pred


def eps_curve_figure(latest: list[Record], styles: Styles | None = None) -> Figure:
    """Accuracy (%) vs ε, one panel per norm, one (colour, marker) per model: `styles` (the suite's model_styles,
    so a page showing some models keeps their colours), else model_styles of these records; clean accuracy at ε = 0.

    In a norm where a model has a minimum-norm cell, its line is the continuous best-known curve
    (distances.best_known: the per-point smallest ε at which any cell fooled the point) and its fixed-ε cells are
    markers (per-point worst case over the fixed-ε attacks at each budget), which lie on or above the line; else
    the line joins its PGD cells (the strongest PGD per ε)."""
    pgd = [r for r in latest if r.attack_type == "pgd"]
    min_norm = [r for r in latest if is_min_norm(r)]
    if not pgd and not min_norm:
        raise UserError("no PGD or minimum-norm cells in these records: the eps curve plots accuracy against ε; add PGD "
                        "attacks at several ε, or an fmn / fab attack, to the suite")
    norms = sorted({r.threat[1] for r in pgd + min_norm if r.threat[1]}, key=lambda n: NORM_ORDER.get(n, 9))
    models: dict[str, str] = {}
    for r in latest:
        models.setdefault(r.model, r.name)
    styles = {**model_styles(models), **(styles or {})}
    colour = {m: styles[m][0] for m in models}
    marker = {m: styles[m][1] for m in models}
    clean: dict[str, float] = {}
    for r in latest:
        if r.attack_type == "clean" or (r.model not in clean and r.clean_accuracy is not None):
            v = r.clean_accuracy
            clean[r.model] = 100.0 * float(v if v is not None else r.robust_accuracy)
    seen_eps = {r.threat[1]: r.threat[2] for r in pgd if r.seen}
    fig = _new_figure(3.6 * len(norms) + 0.4, 3.4)
    axes = fig.subplots(1, len(norms), squeeze=False)[0]
    for ax, norm in zip(axes, norms):
        curves = {r.model for r in min_norm if r.threat[1] == norm}
        budgets = sorted({float(r.threat[2]) for r in latest if r.threat[1] == norm and r.threat[2] is not None
                          and not r.extra.get("derived_from") and r.attack_type != "clean"})
        finite = [d for r in min_norm if r.threat[1] == norm for d in r.min_distances() if math.isfinite(d)]
        top = 1.25 * max(budgets) if budgets else (float(np.quantile(finite, 0.95)) if finite else 1.0)
        for m, label in models.items():
            if m in curves:
                best = best_known(latest, m, norm)
                xs = np.linspace(0.0, top, 300)
                ax.plot(xs, [100.0 * float((best > x).mean()) for x in xs], color=colour[m], linewidth=1.5,
                        marker=marker[m], markersize=4, markevery=(list(models).index(m) % 6 * 10, 60),
                        markerfacecolor="white", label=label)
                recs = [r for r in latest if r.model == m]
                for eps in budgets:
                    v = worst_case(recs, _fixed_at(m, norm, eps))
                    if v is not None:
                        ax.plot([eps], [100.0 * v], marker=marker[m], markersize=4, color=colour[m],
                                linestyle="none")
                continue
            pts: dict[float, float] = {}
            for r in pgd:
                kind, n, e = r.threat
                if r.model == m and n == norm and e is not None:
                    pts[e] = min(pts.get(e, math.inf), 100.0 * r.robust_accuracy)  # strongest PGD per ε
            if not pts:
                continue
            if m in clean:
                pts[0.0] = clean[m]
            xs = sorted(pts)
            ax.plot(xs, [pts[x] for x in xs], marker=marker[m], markersize=4, linewidth=1.5, color=colour[m],
                    label=label)
        if seen_eps.get(norm) is not None:
            ax.axvline(seen_eps[norm], color="0.5", linestyle=":", linewidth=1, label="training ε (seen)")
        ticks = sorted({0.0} | set(budgets))
        ax.set_xticks(ticks)
        ax.set_xticklabels(["0"] + [eps_text(t) for t in ticks[1:]], rotation=30 if len(ticks) > 4 else 0)
        ax.set_ylim(0, 100)
        ax.set_xlabel(NORM_AXIS.get(norm, f"{norm} radius ε"))
        what = "best known (line), fixed-ε cells (dots)" if curves else "PGD"
        ax.set_title(f"{what}, {norm_text(norm)}", fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("Accuracy under attack (%)")
    # one legend for all panels: union of labels, first panel that has each
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="center left", bbox_to_anchor=(1.0, 0.5),
               frameon=False, fontsize=9)
    fig.suptitle(f"Robust accuracy vs perturbation budget (ε = 0: clean) — {describe(latest)[0]}", fontsize=10)
    fig.tight_layout()
    return fig


# -------------------------------------------------------------------------------------- transfer map
def transfer_figure(latest: list[Record]) -> Figure:
    """Heat map sources × targets of the accuracy under transfer attacks, numbers in the cells."""
    table = build_transfer_table(latest)
    groups: list[str] = []
    for c in table.columns:
        if c.group not in groups:
            groups.append(c.group)
    targets = list(dict.fromkeys(c.sub for c in table.columns))
    width = max(4.5, 0.9 * len(targets) + 2.5)
    fig = _new_figure(width * len(groups), max(3.0, 0.55 * len(table.rows) + 2.2))
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    image = None
    for ax, g in zip(axes, groups):
        cols = [c for c in table.columns if c.group == g]
        m = np.array([[table.value(r.model, c) for c in cols] for r in table.rows], dtype=float)
        image = ax.imshow(np.ma.masked_invalid(m), cmap="viridis", vmin=0, vmax=100, aspect="auto")
        ax.set_facecolor("0.85")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                v = m[i, j]
                text = "–" if not math.isfinite(v) else f"{v:.1f}"
                color = "black" if not math.isfinite(v) or v > 60 else "white"
                ax.text(j, i, text, ha="center", va="center", fontsize=9, color=color)
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels([c.sub for c in cols], rotation=30, ha="right")
        ax.set_yticks(range(len(table.rows)))
        ax.set_yticklabels([r.label for r in table.rows])
        ax.set_xlabel("Target model (attacked)")
        ax.set_ylabel("Source model (examples crafted on)")
        ax.set_title(g, fontsize=10)
    cbar = fig.colorbar(image, ax=list(axes), fraction=0.046, pad=0.04)
    cbar.set_label("Accuracy of target under transfer attack (%)")
    fig.suptitle(f"Transfer attacks — {describe(latest)[0]}", fontsize=10)
    return fig


# ------------------------------------------------------------------------------------ training logs
def find_metrics(results: str | Path) -> list[Path]:
    p = Path(results)
    if p.is_file():
        if p.name.endswith(".jsonl") and p.name != RECORDS_FILE:
            return [p]
        p = p.parent
    if not p.is_dir():
        raise UserError(f"{results}: not found; pass a run folder (with metrics.jsonl) or a results folder")
    if (p / "metrics.jsonl").is_file():
        return [p / "metrics.jsonl"]
    found = sorted(p.rglob("metrics.jsonl"))
    if not found:
        raise UserError(f"{results}: no metrics.jsonl in this folder or below it; pass the --out folder of "
                        f"'rocl-bench train' or a results folder with models/*/metrics.jsonl")
    return found


def read_metrics(path: Path, warn: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    text = read_limited(path, 1 << 30, "metrics.jsonl file").decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            warn(f"{path}:{number}: not valid JSON ({e.msg}), line skipped")
            continue
        epoch = obj.get("epoch") if isinstance(obj, dict) else None
        if not isinstance(epoch, (int, float)) or isinstance(epoch, bool) or not math.isfinite(epoch):
            warn(f"{path}:{number}: no finite numeric 'epoch', line skipped")
            continue
        rows.append(obj)
    return rows


def run_model(run: Path, latest: list[Record]) -> str | None:
    """The model whose training run folder this is: results/models/<model>-<model_key>, else None (an encoder's
    pre-training, a run of another suite)."""
    return next((r.model for r in latest if run.name == f"{r.model}-{r.model_key}"), None)


def training_styles(files: list[Path], base: Path) -> dict[Path, tuple[str, str]]:
    """The (colour, marker) of each run: a run of a model of the records.jsonl at `base` (a results folder, or
    the folder above its models/) gets that model's suite style (as in the ε-curve); the other runs (an encoder's
    pre-training) follow the suite's models in the palette."""
    latest: list[Record] = []
    folder = next((d for d in (base, base.parent) if (d / RECORDS_FILE).is_file()), None)   # RESULTS or its models/
    if folder is not None:
        from ..record import load

        try:
            latest = load(folder, warn=lambda s: None, allow_empty=True).latest()
        except UserError:
            latest = []
    order = suite_models(latest)
    owner = {f: run_model(f.parent, latest) for f in files}
    styles = model_styles(order + [str(f) for f in files if owner[f] is None])
    return {f: styles[owner[f] if owner[f] is not None else str(f)] for f in files}


def training_figure(results: str | Path, warn: Callable[[str], None] | None = None,
                    styles: dict[Path, tuple[str, str]] | None = None) -> Figure:
    """Training loss and train accuracy (%) vs epoch, one line per run, in its model's suite style (`styles` per
    metrics file, default training_styles)."""
    warn = warn or warn_stderr
    files = find_metrics(results)
    base = Path(results) if Path(results).is_dir() else Path(results).parent
    styles = {**training_styles(files, base), **(styles or {})}
    fig = _new_figure(8.8, 3.4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    any_acc, losses = False, []
    for f in files:
        rows = read_metrics(f, warn)
        if not rows:
            warn(f"{f}: no usable epochs, not plotted")
            continue
        try:
            name = str(f.parent.relative_to(base)) if f.parent != base else f.parent.name
        except ValueError:
            name = f.parent.name
        name = name or f.parent.resolve().name
        ep = [r["epoch"] for r in rows if isinstance(r.get("loss"), (int, float))]
        lo = [r["loss"] for r in rows if isinstance(r.get("loss"), (int, float))]
        colour, mark = styles[f]
        ax_loss.plot(ep, lo, marker=mark, markersize=3, linewidth=1.5, color=colour, label=name)
        losses += [v for v in lo if math.isfinite(v)]
        acc = [(r["epoch"], 100.0 * r["train_accuracy"]) for r in rows
               if isinstance(r.get("train_accuracy"), (int, float))]
        if acc:
            any_acc = True
            ax_acc.plot(*zip(*acc), marker=mark, markersize=3, linewidth=1.5, color=colour, label=name)
    if not losses:
        raise UserError(f"{results}: the metrics files hold no loss values to plot")
    if min(losses) > 0 and max(losses) / min(losses) > 5:  # contrastive and CE losses differ in scale
        ax_loss.set_yscale("log")
        ax_loss.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax_loss.yaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 3.0, 5.0)))
        ax_loss.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax_loss.set_ylabel("Training loss, log scale")
    ax_loss.set_xlabel("Epoch")
    if ax_loss.get_yscale() != "log":
        ax_loss.set_ylabel("Training loss")
    ax_loss.set_title("Training loss per epoch", fontsize=10)
    ax_acc.set_xlabel("Epoch")
    ax_acc.set_ylabel("Train accuracy (%)")
    ax_acc.set_title("Train accuracy per epoch", fontsize=10)
    if not any_acc:
        ax_acc.text(0.5, 0.5, "no train accuracy recorded\n(self-supervised pre-training)", ha="center",
                    va="center", transform=ax_acc.transAxes, color="0.4")
        ax_acc.set_ylim(0, 100)
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    _legend_outside(fig, ax_loss, title="run")
    fig.suptitle(f"Training curves of {len(files)} run(s) under {base} (loss is each method's own objective)",
                 fontsize=10)
    fig.tight_layout()
    return fig
