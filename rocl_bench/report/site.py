"""`rocl-bench report`: a static leaderboard site from one or more results folders.

    SITE/index.html                      per suite: the main table and one leaderboard per threat model (each
                                         headline column: clean, seen, every unseen budget, each one the per-point
                                         worst case over its attacks; minimum-norm median ε; the transfer columns),
                                         with cost columns and the † warning markers
    SITE/<suite>/index.html              the suite: main and per-attack tables, ε-curves, transfer heat map and
                                         matrix, training curves, gap and paired tables, links to the data
    SITE/<suite>/records.jsonl           a copy of the records every number of the site comes from
    SITE/<suite>/table*.csv|tex          the tables `rocl-bench table` writes (same code)
    SITE/<suite>/models/<model>.html     a model: every cell, its curves, its transfer row and column, its
                                         training curve, provenance (commit, versions, configuration, sha256...)

Every number is built from the records by the table code (report/tables.py: build_main_table, the transfer and
gap tables, footnotes and daggers; report/paired.py) and rendered by rocl_bench.render.html, the renderer of
`table --format html` too. Pages carry their CSS and sorting script inline (report/site_assets) and link only
to files of the site by relative paths, so the site works from file:// with no server and no network.

A report is written into a temporary sibling folder and renamed into place at the end: a failed report leaves
the previous site (or nothing) where --out points. --out may be a new path, an empty folder, or a site this
command wrote before (it holds the marker file .rocl-bench-site); anything else is refused.
"""
from __future__ import annotations

import dataclasses
import html as html_lib
import json
import math
import os
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import UserError, suggest
from ..record import Record, RecordFile, latest_per_cell, load
from ..render import html as html_table

SITE_MARK = ".rocl-bench-site"
DPI = 100                  # figures of the site: screen resolution (the PNGs of `plot` are 200 dpi, for print)
ASSETS = Path(__file__).with_name("site_assets")
esc = html_lib.escape


def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- pages
def page(title: str, body: str, nav: Sequence[tuple[str, str | None]] = (), footer: str = "") -> str:
    """A whole HTML document: the site's CSS and sorting script inline, no external resource."""
    crumbs = " › ".join(f'<a href="{esc(href, quote=True)}">{esc(text)}</a>' if href else esc(text)
                        for text, href in nav)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<link rel=\"icon\" href=\"data:,\">\n"
            f"<title>{esc(title)}</title>\n<style>\n{_asset('site.css')}</style>\n</head>\n<body>\n"
            + (f"<nav>{crumbs}</nav>\n" if crumbs else "") + body
            + (f"\n<footer class=\"meta\"><hr>{footer}</footer>" if footer else "")
            + f"\n<script>\n{_asset('sort.js')}</script>\n</body>\n</html>\n")


def standalone_table(fragment: str, title: str) -> str:
    """`table --format html`: the renderer's table as a page of its own, styled and sortable like the site's."""
    return page(title, _wrap(fragment))


def _wrap(fragment: str) -> str:
    return f'<div class="wrap">\n{fragment}</div>\n'


def _num(v: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if v is None or not math.isfinite(v) else fmt.format(v)


def _slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "x"
    slug, k = base, 2
    while slug.lower() in taken:
        slug, k = f"{base}-{k}", k + 1
    taken.add(slug.lower())
    return slug


# --------------------------------------------------------------------------------------------- suites
@dataclass
class Suite:
    """One results folder, with the tables every page of it shows (built once)."""

    results: Path
    recs: RecordFile
    latest: list[Record]
    slug: str
    main: Any                          # tables.Table
    per_attack: Any
    transfer: Any | None
    models: list[str]                  # suite order
    labels: dict[str, str]
    pages: dict[str, str] = field(default_factory=dict)         # model -> file name under <suite>/models/
    styles: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        suites = list(dict.fromkeys(r.suite for r in self.latest if r.suite))
        return ", ".join(suites) or self.results.name


def load_strict(results: str | Path) -> RecordFile:
    """The records of a results folder; a line that does not read is an error naming it (a published site is built
    from every record, so none may be dropped silently)."""
    said: list[str] = []
    recs = load(results, warn=said.append)
    if recs.skipped:
        first = said[0].removesuffix(", line skipped") if said else f"{recs.path}:{recs.skipped[0]}: unreadable"
        more = f" ({len(recs.skipped) - 1} more bad line(s))" if len(recs.skipped) > 1 else ""
        raise UserError(f"{first}{more}; fix or delete the line, a report is built from every record")
    return recs


def _suite(results: str | Path, taken: set[str], warn: Callable[[str], None]) -> Suite:
    from . import tables
    from .plots import model_styles, suite_models

    recs = load_strict(results)
    latest = recs.latest()
    main = tables.build_main_table(latest, warn=warn)
    per_attack = tables.build_main_table(latest, warn=warn, per_attack=True)
    try:
        transfer = tables.build_transfer_table(latest)
    except UserError:
        transfer = None                        # no transfer cells in this suite
    folder = recs.path.parent
    suite = Suite(folder, recs, latest, "", main, per_attack, transfer, suite_models(latest),
                  {r.model: r.label for r in main.rows})
    suite.slug = _slug(suite.name if suite.name != folder.name else folder.name, taken)
    model_taken: set[str] = set()
    suite.pages = {m: _slug(m, model_taken) + ".html" for m in suite.models}
    suite.styles = model_styles(suite.models)
    return suite


def _links(suite: Suite, prefix: str) -> dict[str, str]:
    return {m: f"{prefix}{p}" for m, p in suite.pages.items()}


def _cost(suite: Suite) -> dict[str, dict[str, Any]]:
    """Per model, from its records as written (derived budget cells of a minimum-norm cell left out): training
    seconds, the sum of its cells' evaluation seconds, the largest peak memory, the device(s)."""
    out: dict[str, dict[str, Any]] = {}
    for r in latest_per_cell(suite.recs.all):
        c = out.setdefault(r.model, {"train": None, "eval": None, "memory": None, "device": []})
        if r.train_seconds is not None:
            c["train"] = max(c["train"] or 0.0, r.train_seconds)
        if r.seconds is not None:
            c["eval"] = (c["eval"] or 0.0) + r.seconds
        if r.peak_memory_mb is not None:
            c["memory"] = max(c["memory"] or 0.0, r.peak_memory_mb)
        if r.device and r.device not in c["device"]:
            c["device"].append(r.device)
    return out


# ------------------------------------------------------------------------------------------ leaderboards
def _what(col: Any) -> str:
    if col.kind == "clean":
        return "clean accuracy (%)"
    if col.atype == "budget":
        names = ", ".join(col.attacks) + (f" and, at smaller ε, {', '.join(col.smaller)}" if col.smaller else "")
        return f"accuracy (%) under the per-point worst case over {names}"
    if col.kind == "median":
        return "median over the test points of the smallest perturbation found (a distance, not a %)"
    if col.kind == "transfer":
        return "accuracy (%) under transfer attacks, mean over source models"
    return "accuracy (%)"


def leaderboard(suite: Suite, table: Any, col: Any, cost: dict[str, dict[str, Any]], prefix: str) -> str:
    """One threat model's leaderboard: the column's cells as the main table formats them (bold best, † marks and
    their footnotes), best first (a click on any header re-sorts), then each model's method and costs."""
    from . import tables

    one = dataclasses.replace(table, columns=[col])
    cells = tables._cells(one, "html")
    notes = tables.footnotes(one, "html")
    method = {r.model: r.method for r in suite.latest}
    order = sorted(range(len(one.rows)), key=lambda i: (not math.isfinite(one.value(one.rows[i].model, col)),
                                                        -one.value(one.rows[i].model, col)
                                                        if math.isfinite(one.value(one.rows[i].model, col)) else 0, i))
    header = [(col.group, col.sub), ("Method", ""), ("Cost", "train (s)"), ("Cost", "evaluation (s)"),
              ("Cost", "peak memory (MB)"), ("Cost", "device")]
    rows, labels, links = [], [], []
    for i in order:
        m = one.rows[i].model
        c = cost.get(m, {})
        rows.append([cells[i][0], esc(method.get(m) or "–"), _num(c.get("train")), _num(c.get("eval")),
                     _num(c.get("memory"), "{:.0f}"), esc(", ".join(c.get("device", [])) or "–")])
        labels.append(one.rows[i].label)
        links.append(f"{prefix}{suite.pages[m]}" if m in suite.pages else None)
    caption = f"{col.flat}: {_what(col)}; best first, best unmarked value in bold"
    if notes:
        caption += "; † marks a cell whose records carry a warning (listed below), never bold"
    caption += ". Cost: the model's training time, the sum of its cells' evaluation times, its peak memory."
    return (f'<section class="board"><h4>{esc(col.flat)}</h4>\n'
            + _wrap(html_table(header, rows, labels, caption, notes, corner="Model", links=links)) + "</section>\n")


def _boards(suite: Suite, prefix: str) -> str:
    cost = _cost(suite)
    parts = [leaderboard(suite, suite.main, c, cost, prefix) for c in suite.main.columns]
    parts += [leaderboard(suite, suite.per_attack, c, cost, prefix) for c in suite.per_attack.columns
              if c.kind in ("transfer", "worst")]      # the per-point worst case has a board of its own
    return '<div class="boards">\n' + "".join(parts) + "</div>\n"


# ------------------------------------------------------------------------------------------------ index
def index_page(suites: list[Suite]) -> str:
    from . import tables

    body = ["<h1>rocl-bench leaderboard</h1>",
            f'<p class="meta">{len(suites)} results folder(s). Every number is read from the folder\'s '
            "records.jsonl (linked from its page). Click a column header to sort.</p>"]
    if len(suites) > 1:
        body.append("<ul>" + "".join(f'<li><a href="#{esc(s.slug, quote=True)}">{esc(s.name)}</a></li>'
                                     for s in suites) + "</ul>")
    for s in suites:
        text, _ = tables.describe(s.latest)
        body += [f'<h2 id="{esc(s.slug, quote=True)}"><a href="{esc(s.slug, quote=True)}/index.html">'
                 f"{esc(s.name)}</a></h2>",
                 f'<p class="meta">{esc(text)}; {len(s.models)} models, {len(s.latest)} cells. '
                 f'<a href="{esc(s.slug, quote=True)}/index.html">Suite page</a> (plots, transfer, gap and paired '
                 "tables, data).</p>",
                 "<h3>Main table</h3>", _wrap(tables.render(s.main, "html", _links(s, f"{s.slug}/models/"))),
                 "<h3>Leaderboards by threat model</h3>", _boards(s, f"{s.slug}/models/")]
    return page("rocl-bench leaderboard", "\n".join(body), footer=_footer(suites))


def _footer(suites: list[Suite]) -> str:
    from ..version import __version__

    return (f"Written by rocl-bench {esc(__version__)} <code>report</code> from "
            + ", ".join(f"{esc(str(s.recs.path))} ({len(s.recs.all)} records)" for s in suites) + ".")


# ------------------------------------------------------------------------------------------------ suite
def _one_row(table: Any, model: str) -> Any:
    """A model's row of a table; no bold (in a one-row table every value would be its column's best)."""
    from . import tables

    one = tables.only_rows(table, [model])
    return dataclasses.replace(one, bold=False, caption=one.caption.replace(" Best per column in bold;", "")
                               .replace(" Best per column in bold.", ""))


def _figure(src: str, alt: str, caption: str) -> str:
    return (f'<figure><img src="{esc(src, quote=True)}" alt="{esc(alt, quote=True)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>\n")


def _paired_html(suite: Suite, a: str, b: str) -> str:
    from .paired import render_paired

    try:
        return _wrap(render_paired(suite.latest, a, b, "html"))
    except UserError as e:
        return f"<p>{esc(suite.labels.get(a, a))} vs {esc(suite.labels.get(b, b))}: not compared ({esc(str(e))}).</p>\n"


def _leader(suite: Suite) -> str | None:
    """The model first on the seen budget (else clean) among unmarked cells: the default partner of the paired
    tables (is each model's difference to the leader more than chance?)."""
    cols = [c for c in suite.main.columns if c.kind == "seen"] or [c for c in suite.main.columns if c.kind == "clean"]
    if not cols:
        return None
    col = cols[0]
    vals = [(v, -i, r.model) for i, r in enumerate(suite.main.rows)
            if math.isfinite(v := suite.main.value(r.model, col)) and not suite.main.marks.get((r.model, col))]
    return max(vals)[2] if vals else None


def _pairs(suite: Suite, pairs: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    if pairs is not None:
        return [(a, b) for a, b in pairs if a in suite.labels and b in suite.labels]
    leader = _leader(suite)
    return [(leader, m) for m in suite.models if leader is not None and m != leader]


def _gaps(suite: Suite, gaps: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    if gaps is not None:
        return [(a, b) for a, b in gaps if a in suite.labels and b in suite.labels]
    return [("simclr_le", "standard")] if {"simclr_le", "standard"} <= set(suite.labels) else []


def suite_page(suite: Suite, figures: dict[str, str], gaps: list[tuple[str, str]],
               pairs: list[tuple[str, str]]) -> str:
    from . import tables

    text, _ = tables.describe(suite.latest)
    data = [("records.jsonl", "the records (every number of this site)"), ("table.csv", "main table, CSV"),
            ("table.tex", "main table, LaTeX"), ("table_per_attack.csv", "per-attack table, CSV"),
            ("table_per_attack.tex", "per-attack table, LaTeX")]
    if suite.transfer is not None:
        data += [("transfer.csv", "transfer matrix, CSV"), ("transfer.tex", "transfer matrix, LaTeX")]
    links = _links(suite, "models/")
    body = [f"<h1>{esc(suite.name)}</h1>", f'<p class="meta">{esc(text)}; {len(suite.models)} models, '
            f"{len(suite.latest)} cells, from {esc(str(suite.recs.path))}.</p>",
            "<p>Data: " + ", ".join(f'<a href="{f}">{f}</a> ({esc(w)})' for f, w in data) + ".</p>",
            "<h2>Models</h2><ul>" + "".join(f'<li><a href="{esc(links[m], quote=True)}">{esc(suite.labels[m])}</a>'
                                             f" <code>{esc(m)}</code></li>" for m in suite.models) + "</ul>",
            "<h2>Main table</h2>", _wrap(tables.render(suite.main, "html", links)),
            "<h2>Per attack</h2>", _wrap(tables.render(suite.per_attack, "html", links)),
            "<h2>Accuracy against ε</h2>"]
    body.append(_figure("eps_curve.png", "ε-curves", "Accuracy under attack against the budget ε; each model keeps "
                        "its colour and marker in every plot of the suite.") if "eps" in figures
                else f"<p>No ε-curve: {esc(figures.get('eps_error', ''))}</p>")
    body.append("<h2>Transfer</h2>")
    if suite.transfer is not None:
        body += [_figure("transfer.png", "transfer heat map", "Accuracy of the target model (columns) under "
                         "adversarial examples crafted on the source model (rows)."),
                 _wrap(tables.render(suite.transfer, "html", links))]
    else:
        body.append("<p>No transfer cells in this suite.</p>")
    body.append("<h2>Training</h2>")
    body.append(_figure("training.png", "training curves", "Training loss and train accuracy of every run under "
                        "models/ (a model's line has its ε-curve colour).") if "training" in figures
                else "<p>No training logs (models/*/metrics.jsonl) in this results folder.</p>")
    body.append("<h2>Share of the gap closed</h2>")
    if not gaps:
        body.append("<p>No gap table: pass <code>--gap BASE,REFERENCE</code> (the default, simclr_le,standard, is "
                    "not in this suite).</p>")
    for base, ref in gaps:
        body.append(_wrap(tables.render(tables.build_gap_table(suite.main, base, ref), "html", links)))
    body.append("<h2>Paired comparisons</h2>")
    if not pairs:
        body.append("<p>No pairs to compare.</p>")
    elif pairs and all(a == pairs[0][0] for a, _ in pairs):
        body.append(f"<p>Each model against {esc(suite.labels[pairs[0][0]])} (first at the seen budget, or the pair "
                    "given with --pair) on the same test points.</p>")
    body += [_paired_html(suite, a, b) for a, b in pairs]
    return page(f"{suite.name} — rocl-bench", "\n".join(body), nav=[("Leaderboard", "../index.html"),
                                                                     (suite.name, None)])


# ------------------------------------------------------------------------------------------------ model
PROVENANCE = (("git commit", "git_commit"), ("checkpoint sha256", "checkpoint_sha256"), ("seed", "seed"),
              ("device", "device"), ("world size", "world_size"), ("method", "method"), ("architecture", "arch"),
              ("dataset", "dataset"), ("split", "split"), ("test points (n)", "n"),
              ("test indices hash", "test_indices_hash"), ("model key", "model_key"), ("config hash", "config_hash"),
              ("suite", "suite"), ("suite hash", "suite_hash"), ("record schema", "schema"),
              ("training seconds", "train_seconds"))


def _distinct(recs: list[Record], key: str) -> list[str]:
    return list(dict.fromkeys(str(getattr(r, key)) for r in recs if getattr(r, key) is not None))


def model_page(suite: Suite, model: str, figures: dict[str, str], run: Path | None) -> str:
    from . import tables
    from .records import eps_text, norm_text

    label = suite.labels[model]
    mine = [r for r in suite.latest if r.model == model]
    written = [r for r in latest_per_cell(suite.recs.all) if r.model == model]
    stem = suite.pages[model][:-len(".html")]
    body = [f"<h1>{esc(label)}</h1>",
            f'<p class="meta"><code>{esc(model)}</code> · method {esc(", ".join(_distinct(mine, "method")) or "–")}'
            f' · {esc(tables.describe(mine)[0])} · <a href="../index.html">suite page</a></p>',
            "<h2>Main table row</h2>", _wrap(tables.render(_one_row(suite.main, model), "html")),
            "<h2>Per attack</h2>", _wrap(tables.render(_one_row(suite.per_attack, model), "html"))]
    header = ["Attack", "Type", "Norm", "ε", "Source", "Seen", "Robust acc. (%)", "Clean acc. (%)", "n",
              "Seconds", "Peak memory (MB)", "Warnings", "Library flags", "Time stamp"]
    rows, ids = [], []
    for r in mine:
        kind, norm, eps = r.threat
        derived = r.extra.get("derived_from")
        rows.append([esc(kind), esc(norm_text(norm) if norm else "–"), esc(eps_text(eps) if eps is not None else "–"),
                     esc(r.source or "–"), "yes" if r.seen else "no", _num(100.0 * r.robust_accuracy),
                     _num(100.0 * r.clean_accuracy if r.clean_accuracy is not None else None), esc(str(r.n or "–")),
                     _num(r.seconds) if not derived else f"(read from {esc(str(derived))})",
                     _num(r.peak_memory_mb, "{:.0f}"),
                     esc("; ".join(r.warnings)) + ("†" if r.warnings else "") or "–", esc("; ".join(r.flags)) or "–",
                     esc(r.timestamp or "–")])
        ids.append(r.attack)
    body += ["<h2>Every cell</h2>",
             _wrap(html_table(header[1:], rows, ids, f"The latest record of each of the {len(mine)} cells of "
                              f"{label} (records.jsonl line numbers in the configuration below).", corner="Attack"))]
    body.append("<h2>Accuracy against ε</h2>")
    body.append(_figure(f"{stem}-eps.png", f"ε-curve of {label}", f"{label}: accuracy under attack against ε "
                        "(the colour and marker of the suite's plots).") if "eps" in figures
                else f"<p>No ε-curve: {esc(figures.get('eps_error', ''))}</p>")
    body.append("<h2>Transfer</h2>")
    t = suite.transfer
    if t is not None and (model in [r.model for r in t.rows] or any(c.target == model for c in t.columns)):
        if model in [r.model for r in t.rows]:
            body += [f"<h3>As the source (examples crafted on {esc(label)})</h3>",
                     _wrap(tables.render(tables.only_rows(t, [model]), "html"))]
        cols = [c for c in t.columns if c.target == model]
        if cols:
            body += [f"<h3>As the target ({esc(label)} attacked)</h3>",
                     _wrap(tables.render(dataclasses.replace(t, columns=cols), "html", suite.pages))]
    else:
        body.append("<p>No transfer cells with this model as source or target.</p>")
    body.append("<h2>Training curve</h2>")
    if "training" in figures:
        body.append(_figure(f"{stem}-training.png", f"training curve of {label}", f"{label}: training loss and train "
                            f"accuracy per epoch, from {run}/metrics.jsonl."))
    else:
        body.append("<p>No training log: " + esc(figures.get("training_error", "no models/<model>-<key>/metrics.jsonl "
                                                                          "in the results folder")) + ".</p>")
    body.append("<h2>Provenance</h2><dl class=\"prov\">")
    for name, key in PROVENANCE:
        body.append(f"<dt>{esc(name)}</dt><dd>{esc(', '.join(_distinct(written, key)) or '–')}</dd>")
    versions: dict[str, list[str]] = {}
    for r in written:
        for lib, v in sorted(r.versions.items()):
            versions.setdefault(lib, [])
            if v not in versions[lib]:
                versions[lib].append(v)
    shown = ", ".join(f"{k} {'/'.join(v)}" for k, v in versions.items()) or "–"
    body.append(f"<dt>library versions</dt><dd>{esc(shown)}</dd>")
    stamps = sorted(r.timestamp for r in written if r.timestamp)
    body.append(f"<dt>time stamps</dt><dd>{esc(f'{stamps[0]} – {stamps[-1]}' if stamps else '–')}</dd>")
    if run is not None:
        body.append(f"<dt>training run</dt><dd>{esc(str(run))}</dd>")
    body.append("</dl>\n<h3>Configuration of each cell</h3>")
    conf = [[esc(str(r.line)), f"<code>{esc(json.dumps(r.attack_spec, sort_keys=True))}</code>"] for r in written]
    body.append(_wrap(html_table(["records.jsonl line", "attack_spec"], conf, [r.attack + (f" ← {r.source}" if r.source
                                                                                             else "") for r in written],
                                 f"The attack configuration of each cell of {label}, as recorded.", corner="Attack")))
    return page(f"{label} — {suite.name} — rocl-bench", "\n".join(body),
                nav=[("Leaderboard", "../../index.html"), (suite.name, "../index.html"), (label, None)])


# ------------------------------------------------------------------------------------------------ build
_JOBS: list[tuple[Callable[[], Any], Path]] = []     # the figures of one report, read by forked workers


def _draw(i: int) -> str | None:
    """Draw and save figure `i` of _JOBS; the UserError that says why it cannot be drawn, else None."""
    from .plots import save_figure

    make, path = _JOBS[i]
    try:
        save_figure(make(), path, dpi=DPI)
    except UserError as e:
        return str(e)
    return None


def _workers(jobs: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, jobs, 8))


def draw_all(jobs: list[tuple[Callable[[], Any], Path]]) -> list[str | None]:
    """Draw the figures, in forked worker processes where there are several CPUs (matplotlib draws on one core; a
    figure takes about half a second), else one after the other. Returns each one's error (None: written)."""
    global _JOBS
    _JOBS = jobs
    try:
        n = _workers(len(jobs))
        if n == 1 or not sys.platform.startswith("linux"):
            return [_draw(i) for i in range(len(jobs))]
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_draw, range(len(jobs))))
    finally:
        _JOBS = []


def _figures(suite: Suite, folder: Path, warn: Callable[[str], None]) -> tuple[dict[str, str],
                                                                               dict[str, dict[str, str]],
                                                                               dict[str, Path]]:
    """Write the suite's and every model's figures; say for each what was drawn (or why not)."""
    from . import plots

    files: list[Path] = []
    if (suite.results / "models").is_dir():
        files = sorted((suite.results / "models").rglob("metrics.jsonl"))
    styles = plots.training_styles(files, suite.results) if files else {}
    runs: dict[str, Path] = {}
    for f in files:
        owner = plots.run_model(f.parent, suite.latest)
        if owner is not None:
            runs[owner] = f.parent
    if files:          # bad lines of the metrics files are said once, here (the per-model figures say nothing)
        for f in files:
            plots.read_metrics(f, warn)
    quiet: Callable[[str], None] = lambda s: None
    latest, st = suite.latest, suite.styles
    jobs: list[tuple[Callable[[], Any], Path]] = []
    keys: list[tuple[str, str]] = []

    def add(owner: str, what: str, make: Callable[[], Any], path: Path) -> None:
        jobs.append((make, path))
        keys.append((owner, what))

    add("", "eps", lambda: plots.eps_curve_figure(latest, st), folder / "eps_curve.png")
    if suite.transfer is not None:
        add("", "transfer", lambda: plots.transfer_figure(latest), folder / "transfer.png")
    if files:
        add("", "training", lambda: plots.training_figure(suite.results / "models", warn=quiet, styles=styles),
            folder / "training.png")
    for m in suite.models:
        stem = suite.pages[m][:-len(".html")]
        mine = [r for r in latest if r.model == m]
        add(m, "eps", lambda mine=mine: plots.eps_curve_figure(mine, st), folder / "models" / f"{stem}-eps.png")
        if m in runs:
            f = runs[m] / "metrics.jsonl"
            add(m, "training", lambda run=runs[m], f=f: plots.training_figure(run, warn=quiet, styles={f: styles[f]}),
                folder / "models" / f"{stem}-training.png")
    made: dict[str, str] = {}
    per_model: dict[str, dict[str, str]] = {m: {} for m in suite.models}
    for (owner, what), (_, path), error in zip(keys, jobs, draw_all(jobs)):
        got = made if owner == "" else per_model[owner]
        if error is None:
            got[what] = path.name
        else:
            got[f"{what}_error"] = error
    return made, per_model, runs


def _parse_pairs(items: list[str] | None, flag: str) -> list[tuple[str, str]] | None:
    if items is None:
        return None
    out = []
    for item in items:
        parts = [p.strip() for p in item.split(",")]
        if len(parts) != 2 or not all(parts):
            raise UserError(f"{flag} {item}: expected two model ids separated by a comma, e.g. {flag} simclr_le,standard")
        out.append((parts[0], parts[1]))
    return out


def _check_out(out: Path) -> None:
    if out.is_file() or (out.exists() and not out.is_dir()):
        raise UserError(f"--out {out}: is a file; pass a folder for the site (a new path, or a site written before)")
    if out.is_dir() and any(out.iterdir()) and not (out / SITE_MARK).is_file():
        raise UserError(f"--out {out}: an existing folder that is not a rocl-bench site (no {SITE_MARK}); pass a new "
                        "folder, or remove this one first (report replaces only a site it wrote)")


def build_site(results: Sequence[str | Path], out: str | Path, gaps: list[str] | None = None,
               pairs: list[str] | None = None, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write the site for `results` to `out` (atomically: a temporary sibling folder renamed into place)."""
    from . import tables
    from ..record import warn_stderr

    warn = warn or warn_stderr
    start = time.perf_counter()
    out = Path(out)
    _check_out(out)
    gap_pairs, compare_pairs = _parse_pairs(gaps, "--gap"), _parse_pairs(pairs, "--pair")
    taken: set[str] = set()
    suites = [_suite(r, taken, warn) for r in results]
    for flag, given in (("--gap", gap_pairs), ("--pair", compare_pairs)):
        for a, b in given or []:
            if not any(a in s.labels and b in s.labels for s in suites):
                names = sorted({m for s in suites for m in s.models})
                missing = a if not any(a in s.labels for s in suites) else b
                raise UserError(f"{flag} {a},{b}: no suite has both models ({missing}{suggest(missing, names)}); "
                                f"models: {', '.join(names)}")
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
    except OSError as e:
        raise UserError(f"--out {out}: cannot be written ({e.strerror or e}); choose a writable path") from None
    counts = {"pages": 0, "images": 0}
    try:
        for s in suites:
            folder = tmp / s.slug
            (folder / "models").mkdir(parents=True)
            shutil.copyfile(s.recs.path, folder / "records.jsonl")
            (folder / "table.csv").write_text(tables.render(s.main, "csv"), encoding="utf-8")
            (folder / "table.tex").write_text(tables.render(s.main, "latex"), encoding="utf-8")
            (folder / "table_per_attack.csv").write_text(tables.render(s.per_attack, "csv"), encoding="utf-8")
            (folder / "table_per_attack.tex").write_text(tables.render(s.per_attack, "latex"), encoding="utf-8")
            if s.transfer is not None:
                (folder / "transfer.csv").write_text(tables.render(s.transfer, "csv"), encoding="utf-8")
                (folder / "transfer.tex").write_text(tables.render(s.transfer, "latex"), encoding="utf-8")
            made, per_model, runs = _figures(s, folder, warn)
            (folder / "index.html").write_text(suite_page(s, made, _gaps(s, gap_pairs),
                                                          _pairs(s, compare_pairs)), encoding="utf-8")
            for m in s.models:
                (folder / "models" / s.pages[m]).write_text(model_page(s, m, per_model[m], runs.get(m)),
                                                            encoding="utf-8")
            counts["pages"] += 1 + len(s.models)
        (tmp / "index.html").write_text(index_page(suites), encoding="utf-8")
        counts["pages"] += 1
        counts["images"] = sum(1 for _ in tmp.rglob("*.png"))
        (tmp / SITE_MARK).write_text("written by rocl-bench report; the folder is replaced whole by the next report\n",
                                     encoding="utf-8")
        _publish(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise UserError(f"--out {out}: cannot be written ({e.strerror or e}); choose a writable path") from None
        raise
    return {"out": out, "suites": len(suites), "seconds": time.perf_counter() - start, **counts}


def _publish(tmp: Path, out: Path) -> None:
    """Rename the finished site into place; a previous site is renamed away first and removed after."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old, out)          # put the previous site back
        raise
    shutil.rmtree(old, ignore_errors=True)


def cmd_report(args: Any) -> int:
    info = build_site(args.results, args.out, gaps=args.gap, pairs=args.pair)
    print(f"wrote {info['out']}/index.html ({info['suites']} suite(s), {info['pages']} pages, {info['images']} "
          f"images) in {info['seconds']:.1f} s", file=sys.stdout)
    return 0
