"""Baselines: write one from a run, read one, and check a results folder against it.

A baseline is a JSON object:

    {"format": "rocl-bench-baseline/1", "suite": ..., "suite_hash": ..., "source": "...", "created": "...",
     "versions": {...}, "tolerance_points": 0.5, "cells": [...]}

Two kinds of cells, which may be mixed:

* run cells (written by `rocl-bench baseline`), named by our ids, accuracies as FRACTIONS like the records:
      {"model": "rocl_rle", "attack": "pgd_linf_seen", "source": null, "label": "RoCL + rLE",
       "clean_accuracy": 0.93, "robust_accuracy": 0.41, "n": 360}
  matched to the latest record of the same (model, attack, source) cell. Robust accuracy is compared for
  every cell; clean accuracy once per model (from its 'clean' cell when there is one, else its first cell).
  `"warnings": [...]` (written since #16) holds the cell's alarms (bench/sanity.py) when the baseline was made:
  `check` fails when the results' record of the cell carries an alarm the baseline's did not (compared with
  the numbers in the message blanked, so "PGD is 36.5 points weaker" and "... 36.0 points weaker" are the same
  alarm); a cell without the key (an older baseline) has its warnings "not recorded" and is not compared.
  For `table --compare`, transfer cells of one (model, attack) are averaged over sources, like the table.
* reference cells (hand-written, e.g. numbers from a paper), named by a model label and a threat
  description, values in PERCENT:
      {"label": "RoCL + LE", "aliases": ["RoCL"], "column": "seen linf 8/255", "value_percent": 40.27}
  `label` (or any of `aliases`, or an exact `model` id when given) is matched against the table's row labels,
  ignoring case and repeated spaces. `column` is "clean" or "<kind> <norm> <eps>" with kind one of seen,
  unseen, autoattack, square, transfer (mean over sources), worst; norm linf|l2|l1; eps a decimal or k/255
  (budgets equal within 0.2 %, so 0.0314 matches 8/255). seen/unseen cells match PGD columns unless the
  cell gives "attack_type" (fgsm, cw, apgd, eot-pgd); "attack" (our attack id) picks one column when
  several match.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from ..config import NonFiniteJSON, read_limited, refuse_json_constant, shown
from ..errors import UserError
from ..record import RecordFile, same_eps, warn_stderr
from .columns import own_column_kinds
from .tables import Column, Table, build_main_table

FORMAT = "rocl-bench-baseline/1"
DEFAULT_TOL = 0.5
COLUMN_KINDS = ("seen", "unseen", *own_column_kinds(), "worst")     # autoattack, square, transfer: declared
NORM_ALIASES = {"linf": "linf", "l_inf": "linf", "inf": "linf", "ℓ∞": "linf", "l2": "l2", "ℓ2": "l2",
                "l1": "l1", "ℓ1": "l1"}


@dataclass
class Cell:
    index: int
    raw: dict[str, Any]

    @property
    def is_reference(self) -> bool:
        return "column" in self.raw

    @property
    def name(self) -> str:
        r = self.raw
        if self.is_reference:
            who = r.get("model") or r.get("label")
            return f"{who} / {r['column']}"
        return f"{r['model']} / {r['attack']}" + (f" / from {r['source']}" if r.get("source") else "")


@dataclass
class Baseline:
    path: Path
    data: dict[str, Any]
    cells: list[Cell]

    @property
    def tolerance(self) -> float | None:
        return self.data.get("tolerance_points")

    @property
    def clean_tolerance(self) -> float | None:
        """Tolerance for clean accuracies when it differs from the robust one (a training check's: clean accuracy
        moves less across CPUs than the robust cells that a point of clean accuracy drags along)."""
        return self.data.get("tolerance_clean_points")


@dataclass
class Comparison:
    name: str
    metric: str          # robust | clean
    ref: float           # percent
    ours: float          # percent

    @property
    def diff(self) -> float:
        return self.ours - self.ref


# ------------------------------------------------------------------------------------------ reading
def _fraction(cell: Mapping[str, Any], key: str, where: str, required: bool) -> None:
    v = cell.get(key)
    if v is None:
        if required:
            raise UserError(f"{where}: missing '{key}' (a fraction in [0, 1], as in records.jsonl)")
        return
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
        raise UserError(f"{where}: '{key}' is {v!r}; expected a fraction in [0, 1] (percent values go in "
                        f"reference cells as 'value_percent')")


BASELINE_LIMIT = 64 * 2**20


def load_baseline(path: str | Path) -> Baseline:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: baseline not found; write one with 'rocl-bench baseline RESULTS --out {p}'")
    raw = read_limited(p, BASELINE_LIMIT, "baseline JSON file")   # a FIFO or /dev/zero is refused, not read
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=refuse_json_constant)
    except NonFiniteJSON as e:
        raise UserError(f"{p}: {e}; re-create the baseline with 'rocl-bench baseline'") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); fix or re-create "
                        f"the baseline") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: cannot be read ({e}); check the path") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: expected a JSON object with a 'cells' list, found a {type(data).__name__}")
    cells = data.get("cells")
    if not isinstance(cells, list) or not cells:
        raise UserError(f"{p}: 'cells' must be a non-empty list of cells; re-create the baseline with "
                        f"'rocl-bench baseline'")
    for key in ("tolerance_points", "tolerance_clean_points"):
        tol = data.get(key)
        if tol is not None and (not isinstance(tol, (int, float)) or isinstance(tol, bool) or not math.isfinite(tol)
                                or tol < 0):
            raise UserError(f"{p}: '{key}' is {tol!r}; expected a finite number of percentage points >= 0, "
                            f"e.g. 1.0")
    out = []
    for i, c in enumerate(cells):
        where = f"{p}: cells[{i}]"
        if not isinstance(c, dict):
            raise UserError(f"{where}: expected an object, found a {type(c).__name__}")
        if "column" in c:
            if not (c.get("label") or c.get("model")):
                raise UserError(f"{where}: a reference cell needs 'label' (or 'model') to name its row")
            parse_column(c["column"], where)
            v = c.get("value_percent")
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 100.0:
                raise UserError(f"{where}: 'value_percent' is {v!r}; expected a percentage in [0, 100]")
        else:
            for key in ("model", "attack"):
                if not isinstance(c.get(key), str) or not c[key]:
                    raise UserError(f"{where}: missing '{key}' (or give 'label' + 'column' + 'value_percent' "
                                    f"for a reference cell)")
            _fraction(c, "robust_accuracy", where, True)
            _fraction(c, "clean_accuracy", where, False)
            if c.get("source") is not None and (not isinstance(c["source"], str) or not c["source"]):
                raise UserError(f"{where}: 'source' is {shown(c['source'])}; expected a model id or null")
            n = c.get("n")
            if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
                raise UserError(f"{where}: 'n' is {shown(n)}; expected a whole number of test points >= 1 or null")
        warned = c.get("warnings")
        if warned is not None and (not isinstance(warned, list) or not all(isinstance(w, str) for w in warned)):
            raise UserError(f"{where}: 'warnings' is {shown(warned)}; expected a list of warning strings (or drop "
                            f"the key: not recorded)")
        for key in ("label", "model"):
            if c.get(key) is not None and not isinstance(c[key], str):
                raise UserError(f"{where}: '{key}' is {shown(c[key])}; expected a string")
        aliases = c.get("aliases")
        if aliases is not None and (not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases)):
            raise UserError(f"{where}: 'aliases' is {shown(aliases)}; expected a list of label strings")
        out.append(Cell(i, c))
    return Baseline(p, data, out)


def parse_column(desc: Any, where: str = "column") -> tuple[str, str | None, float | None]:
    """'clean' | '<kind> <norm> <eps>' -> (kind, norm, eps)."""
    if not isinstance(desc, str):
        raise UserError(f"{where}: 'column' is {desc!r}; expected e.g. 'clean' or 'seen linf 8/255'")
    parts = desc.strip().lower().split()
    if parts == ["clean"]:
        return "clean", None, None
    if len(parts) != 3 or parts[0] not in COLUMN_KINDS or parts[1] not in NORM_ALIASES:
        raise UserError(f"{where}: column '{desc}' not understood; expected 'clean' or '<kind> <norm> <eps>' with "
                        f"kind in {', '.join(COLUMN_KINDS)}, norm linf|l2|l1, e.g. 'seen linf 8/255'")
    m = re.fullmatch(r"([0-9.]+)(?:/([0-9.]+))?", parts[2])
    try:
        eps = float(m.group(1)) / (float(m.group(2)) if m.group(2) else 1.0) if m else None
    except (ValueError, ZeroDivisionError):
        eps = None
    if eps is None:
        raise UserError(f"{where}: eps '{parts[2]}' in column '{desc}' is not a number or k/255 fraction")
    return parts[0], NORM_ALIASES[parts[1]], eps


# ------------------------------------------------------------------------------------------ matching
def _norm_label(s: Any) -> str:
    return " ".join(str(s).lower().split())


def find_row(table: Table, cell: Mapping[str, Any], warn: Callable[[str], None]) -> str | None:
    if cell.get("model"):
        return next((r.model for r in table.rows if r.model == cell["model"]), None)
    names = {_norm_label(n) for n in [cell.get("label"), *(cell.get("aliases") or [])] if n}
    hits = [r.model for r in table.rows if _norm_label(r.label) in names]
    if len(hits) > 1:
        warn(f"baseline label {cell.get('label')!r} matches several models ({', '.join(hits)}); using {hits[0]}")
    return hits[0] if hits else None


def find_column(table: Table, cell: Mapping[str, Any], warn: Callable[[str], None]) -> Column | None:
    kind, norm, eps = parse_column(cell["column"])
    want_type = str(cell.get("attack_type") or "pgd").lower()
    hits = []
    for c in table.columns:
        if c.role != "value" or c.kind != kind:
            continue
        if kind == "clean":
            hits.append(c)
        elif c.norm == norm and same_eps(c.eps, eps) and (kind not in ("seen", "unseen") or c.atype == want_type):
            hits.append(c)
    if cell.get("attack"):
        hits = [c for c in hits if c.attack == cell["attack"]]
    if len(hits) > 1:
        ids = ", ".join(str(c.attack) for c in hits)
        warn(f"baseline column {cell['column']!r} matches several attacks ({ids}); using {hits[0].attack}; "
             f"add \"attack\": \"<id>\" to the cell to choose")
    return hits[0] if hits else None


def reference_values(baseline: Baseline, table: Table, warn: Callable[[str], None] | None = None
                     ) -> tuple[dict[tuple[str, Column], float], list[str]]:
    """Baseline numbers (percent) keyed like the table's values, and the names of cells the table lacks."""
    warn = warn or warn_stderr
    refs: dict[tuple[str, Column], float] = {}
    transfer: dict[tuple[str, Column], list[float]] = {}
    missing: list[str] = []
    clean_col = next((c for c in table.columns if c.kind == "clean"), None)
    for cell in baseline.cells:
        c = cell.raw
        if cell.is_reference:
            model, col = find_row(table, c, warn), find_column(table, c, warn)
            if model is None or col is None or (model, col) not in table.values:
                missing.append(cell.name)
                continue
            refs[(model, col)] = float(c["value_percent"])
            continue
        model = c["model"]
        col = next((x for x in table.columns if x.role == "value" and x.attack == c["attack"]), None)
        if col is None or (model, col) not in table.values:
            if clean_col is None or c["attack"] != "clean":
                missing.append(cell.name)
                continue
            col = clean_col
        if col.kind == "transfer":
            transfer.setdefault((model, col), []).append(100.0 * c["robust_accuracy"])
        else:
            refs[(model, col)] = 100.0 * c["robust_accuracy"]
        if clean_col is not None and c.get("clean_accuracy") is not None and (model, clean_col) not in refs:
            refs[(model, clean_col)] = 100.0 * c["clean_accuracy"]
    for key, vals in transfer.items():
        refs[key] = sum(vals) / len(vals)
    return refs, missing


def compare(baseline: Baseline, records: RecordFile, warn: Callable[[str], None] | None = None
            ) -> tuple[list[Comparison], list[str]]:
    """Every baseline number next to ours (percent), and the names of baseline cells missing from the results."""
    warn = warn or warn_stderr
    latest = records.latest()
    by_key = {r.cell: r for r in latest}
    table: Table | None = None
    out: list[Comparison] = []
    missing: list[str] = []
    clean_done: set[str] = set()
    run_cells = [c for c in baseline.cells if not c.is_reference]
    # clean accuracy once per model: prefer the model's 'clean' cell
    clean_source: dict[str, Cell] = {}
    for cell in run_cells:
        m = cell.raw["model"]
        if cell.raw.get("clean_accuracy") is None:
            continue
        if m not in clean_source or cell.raw["attack"] == "clean":
            clean_source[m] = cell
    for cell in baseline.cells:
        c = cell.raw
        if cell.is_reference:
            if table is None:
                table = build_main_table(latest, warn, per_attack=True)   # reference cells name attacks
            model, col = find_row(table, c, warn), find_column(table, c, warn)
            ours = table.values.get((model, col)) if model is not None and col is not None else None
            if ours is None:
                missing.append(cell.name)
                continue
            out.append(Comparison(cell.name, "clean" if col.kind == "clean" else "robust", float(c["value_percent"]),
                                  ours))
            continue
        rec = by_key.get((c["model"], c["attack"], c.get("source") or None))
        if rec is None:
            missing.append(cell.name)
            continue
        if c.get("n") is not None and rec.n is not None and int(c["n"]) != rec.n:
            warn(f"{cell.name}: baseline has n={c['n']}, results have n={rec.n} (line {rec.line}); "
                 f"numbers come from different test sets")
        m = c["model"]
        if rec.attack_type == "clean":  # its robust accuracy is the clean accuracy: compare it once, as clean
            ref = c["clean_accuracy"] if c.get("clean_accuracy") is not None else c["robust_accuracy"]
            ours = rec.clean_accuracy if rec.clean_accuracy is not None else rec.robust_accuracy
            out.append(Comparison(f"{m} / clean", "clean", 100.0 * ref, 100.0 * ours))
            clean_done.add(m)
            continue
        out.append(Comparison(cell.name, "robust", 100.0 * c["robust_accuracy"], 100.0 * rec.robust_accuracy))
        if clean_source.get(m) is cell and m not in clean_done and rec.clean_accuracy is not None:
            clean_done.add(m)
            out.append(Comparison(f"{m} / clean", "clean", 100.0 * c["clean_accuracy"],
                                  100.0 * rec.clean_accuracy))
    return out, missing


def alarm_key(warning: str) -> str:
    """A warning with its numbers blanked: the same alarm whatever the figures it quotes."""
    return re.sub(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", warning)


def new_warnings(baseline: Baseline, records: RecordFile) -> list[tuple[str, list[str]]]:
    """(cell name, its warnings the baseline did not have) for every run cell whose baseline recorded warnings
    (cells without the key are 'not recorded' and skipped)."""
    by_key = {r.cell: r for r in records.latest()}
    out = []
    for cell in baseline.cells:
        c = cell.raw
        if cell.is_reference or c.get("warnings") is None:
            continue
        rec = by_key.get((c["model"], c["attack"], c.get("source") or None))
        if rec is None:
            continue
        known = {alarm_key(w) for w in c["warnings"]}
        gained = [w for w in rec.warnings if alarm_key(w) not in known]
        if gained:
            out.append((cell.name, gained))
    return out


# ---------------------------------------------------------------------------------------- reporting
def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def check(baseline: Baseline, records: RecordFile, tol: float, allow_improvement: bool,
          out: Callable[[str], None] = print, warn: Callable[[str], None] | None = None,
          clean_tol: float | None = None, allow_new_warnings: bool = False) -> int:
    """Print the cells that moved beyond `tol` points (`clean_tol` for clean accuracies, default `tol`), one line
    per cell that gained a warning the baseline did not have, then one line with how many values were compared
    and the largest difference seen; 0 when none moved (or only rose, if allowed) and no cell gained a warning
    (unless allowed), else 1."""
    clean_tol = tol if clean_tol is None else clean_tol
    warn = warn or warn_stderr
    suites = {r.suite_hash for r in records.all if r.suite_hash}
    want = baseline.data.get("suite_hash")      # one hash, or a list when the records grew with the suite
    wanted = {want} if isinstance(want, str) else {str(h) for h in want} if isinstance(want, list) else set()
    if wanted and suites and not wanted & suites:
        warn(f"{baseline.path}: suite_hash {', '.join(sorted(wanted))} differs from the results' "
             f"({', '.join(sorted(suites))}); the suite changed since the baseline was made")
    comps, missing = compare(baseline, records, warn)
    if missing:
        raise UserError(f"{len(missing)} baseline cell(s) missing from {records.path}: {'; '.join(missing)}; "
                        f"evaluate them (re-run the suite) or remove them from {baseline.path}")
    eps = 1e-9
    limit = {"clean": clean_tol, "robust": tol}
    drops = [c for c in comps if c.diff < -limit[c.metric] - eps]
    rises = [c for c in comps if c.diff > limit[c.metric] + eps]
    moved = sorted(drops + rises, key=lambda c: c.diff)
    if moved:
        rows = [[c.name, c.metric, f"{c.ref:.2f}", f"{c.ours:.2f}", f"{c.diff:+.2f}",
                 "DROP" if c.diff < 0 else ("rise (allowed)" if allow_improvement else "RISE")] for c in moved]
        out(text_table(["cell", "metric", "baseline %", "results %", "diff (points)", "verdict"], rows))
    gained = new_warnings(baseline, records)
    for name, warned in gained:
        out(f"{'new warning (allowed)' if allow_new_warnings else 'NEW WARNING'}: {name}: {'; '.join(warned)}")
    failed = bool(drops) or (bool(rises) and not allow_improvement) or (bool(gained) and not allow_new_warnings)
    tol_text = f"{tol:g} points" if clean_tol == tol else f"{tol:g} points ({clean_tol:g} for clean accuracy)"
    largest = max(comps, key=lambda c: abs(c.diff), default=None)
    biggest = ("" if largest is None else "; largest difference 0.00 points" if abs(largest.diff) < eps else
               f"; largest difference {largest.diff:+.2f} points ({largest.name}, {largest.metric})")
    out(f"{'FAIL' if failed else 'ok'}: {len(comps)} value(s) from {len(baseline.cells)} baseline cell(s) checked "
        f"against {baseline.path} with tolerance {tol_text}: {len(drops)} dropped, {len(rises)} rose"
        + (" (rises allowed)" if allow_improvement and rises else "") + biggest
        + (f"; {len(gained)} cell(s) gained a warning" + (" (allowed)" if allow_new_warnings else "")
           if gained else ""))
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------ writing
def make_baseline(records: RecordFile, tol: float | None, source: str, clean_tol: float | None = None
                  ) -> dict[str, Any]:
    latest = records.latest()
    suites = sorted({r.suite for r in latest if r.suite})
    hashes = sorted({r.suite_hash for r in latest if r.suite_hash})
    versions = next((r.versions for r in reversed(records.all) if r.versions), {})
    cells = []
    for r in latest:
        cell = {"model": r.model, "attack": r.attack, "source": r.source, "label": r.name, "type": r.attack_type,
                "clean_accuracy": r.clean_accuracy, "robust_accuracy": r.robust_accuracy, "n": r.n,
                "warnings": list(r.warnings)}
        cells.append(cell)
    return {"format": FORMAT,
            "suite": suites[0] if len(suites) == 1 else suites,
            "suite_hash": hashes[0] if len(hashes) == 1 else hashes,
            "source": source,
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "versions": versions,
            "tolerance_points": DEFAULT_TOL if tol is None else float(tol),
            **({"tolerance_clean_points": float(clean_tol)} if clean_tol is not None else {}),
            "units": "clean_accuracy and robust_accuracy are fractions in [0, 1], as in records.jsonl; "
                     "tolerance_points is in percentage points",
            "cells": cells}


def check_tol(tol: float | None, flag: str = "--tol") -> float | None:
    if tol is not None and (not math.isfinite(tol) or tol < 0):
        raise UserError(f"{flag} {tol}: expected a number of percentage points >= 0, e.g. {flag} 0.5")
    return tol
