"""argparse handlers for `rocl-bench table | report | plot | check | baseline`.

Wire them into the CLI with `add_report_parsers(subparsers)`; each handler returns an exit code and raises
UserError (printed as one line, exit 2) for user mistakes. Heavy imports (pandas, matplotlib, torch for the
atomic writer) happen inside the handlers, so building the parser stays cheap.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError

TABLE_FORMATS = ("md", "csv", "latex", "html")          # = tables.FORMATS
PLOT_KINDS = ("eps-curve", "transfer", "training")       # = plots.KINDS
DEFAULT_TOL = 0.5                                        # = check.DEFAULT_TOL
EXT_FORMAT = {".md": "md", ".markdown": "md", ".csv": "csv", ".tex": "latex", ".latex": "latex", ".html": "html",
              ".htm": "html"}


def _write_text(path: str | Path, text: str) -> Path:
    from ..train.checkpoint import atomic_write_bytes

    p = Path(path)
    try:
        atomic_write_bytes(p, lambda f: f.write(text.encode("utf-8")))
    except OSError as e:
        raise UserError(f"--out {p}: cannot be written ({e.strerror or e}); choose a writable path") from None
    return p


def out_format(out: str | None, fmt: str | None, formats: dict[str, str], default: str) -> str:
    """The format of a report: --format, else --out's extension, else `default`. An --out whose extension
    names another format (t.docx, or t.csv with --format md) is refused, so no file lies about its content."""
    suffix = Path(out).suffix.lower() if out else ""
    known = ", ".join(sorted(formats))
    if suffix and suffix not in formats:
        raise UserError(f"--out {out}: '{suffix}' is not an extension of a format this command writes; use one of "
                        f"{known}, or pass --format with a name that has none")
    if fmt and suffix and formats[suffix] != fmt:
        raise UserError(f"--out {out}: the extension '{suffix}' does not match --format {fmt}; rename the file or "
                        "drop --format")
    return fmt or formats.get(suffix, default)


def _emit(text: str, out: str | None) -> None:
    """A report goes to --out (atomically) when given, else to stdout."""
    if out:
        print(f"wrote {_write_text(out, text)}")
    else:
        sys.stdout.write(text)


def cmd_table(args: argparse.Namespace) -> int:
    from . import check as check_mod
    from . import tables
    from ..record import load

    fmt = out_format(args.out, args.format, EXT_FORMAT, "md")
    recs = load(args.results)
    latest = recs.latest()
    if args.kind != "gap" and (args.base or args.reference):
        raise UserError("--base and --reference go with --kind gap")
    if args.kind != "main" and args.compare:
        raise UserError("--compare works with --kind main only (baselines name main-table cells)")
    if args.kind == "transfer":
        table = tables.build_transfer_table(latest)
    elif args.kind == "gap":
        if not (args.base and args.reference):
            raise UserError("--kind gap needs --base MODEL (e.g. simclr_le) and --reference MODEL (e.g. standard)")
        table = tables.build_gap_table(tables.build_main_table(latest, per_attack=args.per_attack), args.base,
                                       args.reference, args.min_gap)
    else:
        # baselines name per-attack cells (a paper's PGD or AutoAttack number), so --compare shows those columns
        table = tables.build_main_table(latest, per_attack=args.per_attack or bool(args.compare))
        if args.compare:
            baseline = check_mod.load_baseline(args.compare)
            ours = sorted({r.dataset for r in latest if r.dataset})
            theirs = baseline.data.get("dataset")
            if isinstance(theirs, str) and ours and ours != [theirs]:
                print(f"rocl-bench: warning: {args.compare} holds numbers on {theirs}, these records are on "
                      f"{', '.join(ours)}: the ref columns set different data side by side", file=sys.stderr)
            refs, missing = check_mod.reference_values(baseline, table)
            if missing:
                print(f"rocl-bench: warning: {len(missing)} cell(s) of {args.compare} have no counterpart in the "
                      f"table and are not shown: {'; '.join(missing)}", file=sys.stderr)
            table = tables.with_reference(table, refs)
    if args.models:
        if args.kind == "transfer":
            raise UserError("--models works with --kind main or gap (the transfer matrix keeps every source)")
        table = tables.only_rows(table, [m.strip() for m in args.models.split(",") if m.strip()])
    text = tables.render(table, fmt)
    if fmt == "html":          # a page of its own, styled and sortable like the report's (report/site.py)
        from .site import standalone_table

        text = standalone_table(text, table.caption)
    _emit(text, args.out)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .site import cmd_report as run

    return run(args)


def cmd_plot(args: argparse.Namespace) -> int:
    from . import plots
    from ..record import load

    if args.kind == "training":
        fig = plots.training_figure(args.results)
        base = Path(args.results) if Path(args.results).is_dir() else Path(args.results).parent
    else:
        recs = load(args.results)
        latest = recs.latest()
        fig = plots.eps_curve_figure(latest) if args.kind == "eps-curve" else plots.transfer_figure(latest)
        base = recs.path.parent
    out = Path(args.out) if args.out else base / "figures" / f"{args.kind}.png"
    print(f"wrote {plots.save_figure(fig, out)}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from . import check as check_mod
    from ..record import load

    tol = check_mod.check_tol(args.tol)
    clean_tol = check_mod.check_tol(args.clean_tol, "--clean-tol")
    baseline = check_mod.load_baseline(args.against)
    recs = load(args.results)
    if tol is None:       # the baseline's tolerances, unless --tol overrides both
        tol = baseline.tolerance if baseline.tolerance is not None else check_mod.DEFAULT_TOL
        clean_tol = baseline.clean_tolerance if clean_tol is None else clean_tol
    return check_mod.check(baseline, recs, float(tol), args.allow_improvement, clean_tol=clean_tol,
                           allow_new_warnings=args.allow_new_warnings)


def cmd_baseline(args: argparse.Namespace) -> int:
    from . import check as check_mod
    from ..record import load, records_path

    tol = check_mod.check_tol(args.tol)
    clean_tol = check_mod.check_tol(args.clean_tol, "--clean-tol")
    recs = load(args.results)
    cmd = f"rocl-bench baseline {shlex.quote(str(args.results))} --out {shlex.quote(str(args.out))}" + (
        f" --tol {tol:g}" if tol is not None else "") + (f" --clean-tol {clean_tol:g}" if clean_tol is not None else "")
    source = f"{cmd} (records: {records_path(args.results)})"
    data: dict[str, Any] = check_mod.make_baseline(recs, tol, source, clean_tol)
    existed = Path(args.out).exists()
    _write_text(args.out, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    clean_text = (f", {data['tolerance_clean_points']:g} for clean accuracy" if "tolerance_clean_points" in data
                  else "")
    print(f"wrote {args.out} ({len(data['cells'])} cells, tolerance {data['tolerance_points']:g} points{clean_text})"
          + (" — replaced the existing file" if existed else ""))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .paired import render_paired
    from ..record import load

    fmt = out_format(args.out, args.format, {k: v for k, v in EXT_FORMAT.items() if v in ("md", "csv")}, "md")
    text = render_paired(load(args.results).latest(), args.a, args.b, fmt)
    _emit(text, args.out)
    return 0


def _points(text: str) -> float:
    """A number of percentage points; NaN and infinity are refused (a NaN tolerance would pass every check)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of percentage points") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of percentage points")
    return value


def add_report_parsers(sub: Any) -> None:
    """Add `table`, `report`, `compare`, `plot`, `check` and `baseline` to an argparse subparsers object."""
    t = sub.add_parser("table", help="tables (Markdown, CSV, LaTeX, HTML) from a results folder",
                       description="Accuracy table: rows = models in suite order; columns Clean, then one per "
                                   "budget (Seen, Unseen per norm and ε), each the per-point worst case over every "
                                   "attack evaluated at that budget (transfer sources included); --per-attack "
                                   "shows one column per attack instead (AutoAttack, Square, Transfer = mean over "
                                   "sources, Worst case at the seen budget). Best unmarked value per column in "
                                   "bold; a cell whose records carry a warning gets † and a footnote (CSV: a "
                                   "'warnings' column).")
    t.add_argument("results", help="results folder (with records.jsonl) or a records.jsonl file")
    t.add_argument("--format", choices=list(TABLE_FORMATS),
                   help="output format (default: from the --out extension, else md)")
    t.add_argument("--out", help="write here (atomically) instead of printing")
    t.add_argument("--compare", metavar="BASELINE",
                   help="baseline JSON: adds 'ref' and 'Δ' (ours - ref, points) beside each column it covers")
    t.add_argument("--kind", choices=["main", "transfer", "gap"], default="main",
                   help="main table (default), the transfer matrix (sources x targets), or the share of the "
                        "gap between --base and --reference that each other model closes")
    t.add_argument("--base", metavar="MODEL", help="--kind gap: the susceptible model (e.g. simclr_le)")
    t.add_argument("--reference", metavar="MODEL", help="--kind gap: the model it is compared with (e.g. standard)")
    t.add_argument("--min-gap", dest="min_gap", type=_points, default=5.0, metavar="POINTS",
                   help="--kind gap: no share where the gap is smaller than this (default 5 points)")
    t.add_argument("--models", metavar="A,B", help="only these models' rows (in table order)")
    t.add_argument("--per-attack", dest="per_attack", action="store_true",
                   help="one column per attack instead of the worst case per budget (implied by --compare)")
    t.set_defaults(func=cmd_table)

    r = sub.add_parser("report", help="a static leaderboard site (HTML, works from file://) from results folders",
                       description="Writes OUT/index.html (per suite: the main table and one leaderboard per threat "
                                   "model, with cost columns and † warning markers, sortable by any column), a page "
                                   "per suite (ε-curves, transfer heat map and matrix, training curves, gap and "
                                   "paired tables, links to records.jsonl and the CSV/LaTeX tables) and a page per "
                                   "model (every cell, its curves, transfer row and column, training curve, "
                                   "provenance). No server and no network needed. Written to a temporary folder "
                                   "and renamed into place; an existing OUT is replaced only if a report wrote it.")
    r.add_argument("results", nargs="+", help="results folder(s) (with records.jsonl) or records.jsonl file(s)")
    r.add_argument("--out", required=True, metavar="SITE", help="folder to write the site to")
    r.add_argument("--gap", action="append", metavar="BASE,REFERENCE",
                   help="gap table(s) on the suite pages (repeatable; default simclr_le,standard where both exist)")
    r.add_argument("--pair", action="append", metavar="A,B",
                   help="paired comparison(s) on the suite pages (repeatable; default: the model first at the "
                        "seen budget against each other model)")
    r.set_defaults(func=cmd_report)

    p = sub.add_parser("plot", help="figures from a results folder")
    p.add_argument("results", help="results folder or records.jsonl; for --kind training a run folder with "
                                   "metrics.jsonl or any folder above several")
    p.add_argument("--kind", required=True, choices=list(PLOT_KINDS))
    p.add_argument("--out", help="figure path, .png/.pdf/.svg (default: RESULTS/figures/KIND.png)")
    p.set_defaults(func=cmd_plot)

    q = sub.add_parser("compare", help="two models on the same test points: per-threat difference, the points "
                                       "each alone keeps, exact McNemar p")
    q.add_argument("results", help="results folder (with records.jsonl) or a records.jsonl file")
    q.add_argument("a", metavar="MODEL_A")
    q.add_argument("b", metavar="MODEL_B")
    q.add_argument("--format", choices=["md", "csv"], help="default: from the --out extension, else md")
    q.add_argument("--out", help="write here (atomically) instead of printing")
    q.set_defaults(func=cmd_compare)

    c = sub.add_parser("check", help="compare a results folder with a stored baseline",
                       description="Exit 0 when every baseline cell is within tolerance, 1 when any dropped "
                                   "(or rose, without --allow-improvement) or gained a warning (an alarm of "
                                   "bench/sanity.py) that the baseline's cell did not have, 2 on bad input or "
                                   "missing cells. Baselines whose cells have no 'warnings' (written before "
                                   "0.2 added them) have their warnings 'not recorded': those are not compared.")
    c.add_argument("results", help="results folder or records.jsonl")
    c.add_argument("--against", required=True, metavar="BASELINE", help="baseline JSON, e.g. baselines/NAME.json")
    c.add_argument("--tol", type=_points, metavar="POINTS",
                   help=f"tolerance in percentage points (default: the baseline's tolerance_points, "
                        f"else {DEFAULT_TOL})")
    c.add_argument("--clean-tol", type=_points, metavar="POINTS",
                   help="tolerance for clean accuracies (default: the baseline's tolerance_clean_points, else --tol)")
    c.add_argument("--allow-improvement", action="store_true", help="accept values that rose beyond tolerance")
    c.add_argument("--allow-new-warnings", dest="allow_new_warnings", action="store_true",
                   help="list, but do not fail on, cells that gained a warning the baseline did not have "
                        "(cells whose baseline recorded no warnings key are never compared)")
    c.set_defaults(func=cmd_check)

    b = sub.add_parser("baseline", help="write a baseline from a results folder (values and each cell's "
                                        "warnings)")
    b.add_argument("results", help="results folder or records.jsonl")
    b.add_argument("--out", required=True, help="baseline JSON to write, e.g. baselines/NAME.json")
    b.add_argument("--tol", type=_points, metavar="POINTS",
                   help=f"tolerance_points stored in the baseline (default {DEFAULT_TOL})")
    b.add_argument("--clean-tol", type=_points, metavar="POINTS",
                   help="tolerance_clean_points: a separate tolerance for clean accuracies (default: --tol)")
    b.set_defaults(func=cmd_baseline)
