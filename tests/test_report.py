"""Reports: tables (md/csv/latex/html), latest-record logic, bad lines, worst case, check/baseline, plots.

Uses tests/fixtures/records_small.jsonl: SYNTHETIC test data (invented numbers, 5 models x 9 attacks, n=40,
one superseded record for rocl_rle/pgd_linf_seen at the top of the file).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rocl_bench.errors import UserError
from rocl_bench.report import check as check_mod
from rocl_bench.report import commands, tables
from rocl_bench.record import Record, decode_mask, encode_mask, latest_per_cell
from rocl_bench.record import load as load_records
from rocl_bench.report.records import eps_text

FIXTURE = Path(__file__).parent / "fixtures" / "records_small.jsonl"
PAPER = Path(__file__).resolve().parents[1] / "baselines" / "paper" / "rocl_cifar10_resnet18.json"
LABELS = ["Standard", "Madry AT", "SimCLR + LE", "RoCL + rLE", "RoCL + AT"]
ATTACKS = {"clean", "pgd_linf_seen", "fgsm_linf_seen", "pgd_linf_16", "pgd_l2_05", "pgd_l1_12", "aa_linf",
           "square_linf", "transfer_pgd_linf"}


def cli(*argv: str) -> int:
    """Run a report subcommand the way rocl_bench.cli.main does (UserError -> one line on stderr, exit 2)."""
    parser = argparse.ArgumentParser(prog="rocl-bench")
    commands.add_report_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args([str(a) for a in argv])
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"rocl-bench: error: {e}", file=sys.stderr)
        return e.exit_code


def lines() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines()]


def write_records(path: Path, recs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def main_table():
    """The per-attack layout (`table --per-attack`); the headline (worst case per budget) is tests/test_trust_report.py's."""
    return tables.build_main_table(load_records(FIXTURE).latest(), per_attack=True)


# -------------------------------------------------------------------------------------------- records
def test_mask_round_trip_numpy_and_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    for n in (1, 7, 8, 9, 40, 361):
        m = rng.random(n) < 0.5
        assert np.array_equal(decode_mask(encode_mask(m), n), m)
        assert np.array_equal(decode_mask(encode_mask(torch.from_numpy(m)), n), m)
    with pytest.raises(ValueError):
        decode_mask(encode_mask(np.ones(16, bool)), 40)
    with pytest.raises(ValueError):
        decode_mask("not base64!", 8)


def test_fixture_masks_match_accuracies():
    for r in lines():
        assert decode_mask(r["robust_mask"], r["n"]).mean() == pytest.approx(r["robust_accuracy"])


def test_latest_record_wins():
    recs = load_records(FIXTURE)
    old = [r for r in recs.all if (r.model, r.attack) == ("rocl_rle", "pgd_linf_seen")]
    assert [r.robust_accuracy for r in old] == [0.2, 0.475]  # superseded first, re-run later in the file
    latest = [r for r in recs.latest() if (r.model, r.attack) == ("rocl_rle", "pgd_linf_seen")]
    assert len(latest) == 1 and latest[0].robust_accuracy == 0.475
    table = main_table()
    seen = next(c for c in table.columns if c.attack == "pgd_linf_seen")
    assert table.value("rocl_rle", seen) == pytest.approx(47.5)
    # the same holds for a later duplicate appended at the end, and for transfer cells keyed by source
    a = {"model": "m", "attack": "x", "robust_accuracy": 0.1}
    t1 = {"model": "m", "attack": "t", "source": "s1", "robust_accuracy": 0.3}
    t2 = {"model": "m", "attack": "t", "source": "s2", "robust_accuracy": 0.4}
    out = latest_per_cell([Record.from_dict(d) for d in
                           (a, t1, t2, {**a, "robust_accuracy": 0.2}, {**t1, "robust_accuracy": 0.5})])
    got = {(r.attack, r.source): r.robust_accuracy for r in out}
    assert got == {("x", None): 0.2, ("t", "s1"): 0.5, ("t", "s2"): 0.4}


def test_corrupted_line_is_reported_with_its_number_and_skipped(tmp_path, capsys):
    text = FIXTURE.read_text().splitlines()
    text[4] = text[4][: len(text[4]) // 2]          # line 5: a truncated write
    text.insert(7, "[1, 2, 3]")                     # line 8: valid JSON but not a record
    bad = tmp_path / "records.jsonl"
    bad.write_text("\n".join(text) + "\n")
    recs = load_records(tmp_path)
    err = capsys.readouterr().err
    assert f"{bad}:5: not valid JSON" in err and "skipped" in err
    assert f"{bad}:8: not a usable record" in err
    assert recs.skipped == [5, 8] and len(recs.all) == len(lines()) - 1
    assert cli("table", tmp_path) == 0
    captured = capsys.readouterr()
    assert ":5:" in captured.err and "| Standard |" in captured.out


def test_row_name_is_the_label_else_the_model_id():
    assert Record.from_dict({"model": "m", "attack": "a", "robust_accuracy": 0.1, "label": "Mine"}).name == "Mine"
    assert Record.from_dict({"model": "m", "attack": "a", "robust_accuracy": 0.1}).name == "m"


def test_eps_text():
    assert eps_text(8 / 255) == "8/255"
    assert eps_text(0.0314) == "8/255"           # the 0.0314 of many scripts is 8/255 within rounding
    assert eps_text(0.5) == "0.5" and eps_text(12.0) == "12" and eps_text(0.1) == "0.1"


# --------------------------------------------------------------------------------------------- tables
@pytest.mark.parametrize("fmt", ["md", "csv", "latex", "html"])
def test_every_model_and_attack_in_every_format(fmt, tmp_path):
    table = main_table()
    attacks = {c.attack for c in table.columns if c.attack}
    assert attacks | {"clean"} == ATTACKS
    out = tmp_path / f"t.{fmt}"
    assert cli("table", FIXTURE, "--per-attack", "--format", fmt, "--out", out) == 0
    text = out.read_text()
    for label in LABELS:
        assert label in text
    if fmt == "latex":
        headers = [c.group_tex for c in table.columns] + [c.sub_tex for c in table.columns]
    else:
        headers = [c.group for c in table.columns] + [c.sub for c in table.columns]
    for h in headers:
        assert h in text, h
    # one value per (model, column): 5 models x 11 columns, all present
    assert len(table.values) == 5 * len(table.columns)


def test_columns_are_grouped_and_ordered():
    groups = [c.group for c in main_table().columns]
    assert groups == ["Clean", "Seen ℓ∞", "Seen ℓ∞", "Unseen ℓ∞", "Unseen ℓ2", "Unseen ℓ1", "AutoAttack ℓ∞",
                      "Square ℓ∞", "Transfer ℓ∞", "Worst ℓ∞"]
    subs = [c.sub for c in main_table().columns]
    assert subs[1:4] == ["ε=8/255", "ε=8/255 FGSM", "ε=16/255"]


def test_rows_follow_model_index():
    assert [r.label for r in main_table().rows] == LABELS


def test_best_value_in_bold():
    md = tables.render(main_table(), "md")
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "**95.0**" in rows["Standard"]                      # best clean
    assert "**50.0**" in rows["RoCL + AT"]                     # best seen PGD
    assert "**" not in rows["SimCLR + LE"]                    # never best
    assert "85.0" in rows["Madry AT"] and "**85.0**" not in rows["Madry AT"]
    assert r"\textbf{95.0}" in tables.render(main_table(), "latex")
    assert "<strong>95.0</strong>" in tables.render(main_table(), "html")
    assert "**" not in tables.render(main_table(), "csv")


def test_transfer_column_is_mean_over_sources_and_matrix():
    table = main_table()
    col = next(c for c in table.columns if c.kind == "transfer")
    assert table.value("rocl_rle", col) == pytest.approx((75.0 + 60.0) / 2)
    matrix = tables.build_transfer_table(load_records(FIXTURE).latest())
    assert [r.model for r in matrix.rows] == ["standard", "madry"]
    assert [c.target for c in matrix.columns] == ["standard", "madry", "simclr_le", "rocl_rle", "rocl_at"]
    by = {(m, c.target): v for (m, c), v in matrix.values.items()}
    assert by[("madry", "rocl_rle")] == pytest.approx(60.0) and ("madry", "madry") not in by


def test_transfer_kind_needs_transfer_cells(tmp_path, capsys):
    recs = write_records(tmp_path / "r.jsonl", [r for r in lines() if r["attack_spec"]["type"] != "transfer"])
    assert cli("table", recs, "--kind", "transfer") == 2
    assert "no transfer cells" in capsys.readouterr().err
    assert cli("table", FIXTURE, "--kind", "transfer", "--format", "md") == 0


def test_gap_table_is_the_share_of_the_gap_closed(tmp_path, capsys):
    main = main_table()
    gap = tables.build_gap_table(main, "simclr_le", "standard")
    assert [r.model for r in gap.rows] == ["__gap__", "madry", "rocl_rle", "rocl_at"]
    for c in main.columns:
        base, ref = main.value("simclr_le", c), main.value("standard", c)
        assert gap.value("__gap__", c) == pytest.approx(ref - base)
        for m in ("madry", "rocl_rle", "rocl_at"):
            if abs(ref - base) >= 5.0:
                assert gap.value(m, c) == pytest.approx(100 * (main.value(m, c) - base) / (ref - base))
            else:
                assert np.isnan(gap.value(m, c))
    assert cli("table", FIXTURE, "--kind", "gap", "--base", "simclr_le", "--reference", "standard") == 0
    assert "share of the gap between SimCLR + LE and Standard closed" in capsys.readouterr().out
    assert cli("table", FIXTURE, "--kind", "gap", "--base", "simclr", "--reference", "standard") == 2
    assert "did you mean 'simclr_le'" in capsys.readouterr().err
    assert cli("table", FIXTURE, "--kind", "gap", "--base", "simclr_le") == 2
    assert cli("table", FIXTURE, "--base", "simclr_le", "--reference", "standard") == 2
    assert cli("table", FIXTURE, "--kind", "gap", "--base", "standard", "--reference", "standard") == 2
    assert cli("table", FIXTURE, "--kind", "gap", "--base", "simclr_le", "--reference", "standard",
               "--min-gap", "-1") == 2
    err = capsys.readouterr().err
    assert "needs --base" in err and "go with --kind gap" in err and "same model" in err and "--min-gap" in err
    some = tables.build_gap_table(main, "simclr_le", "standard", min_gap=0.0)
    assert all(np.isfinite(some.value("madry", c)) for c in main.columns
               if main.value("standard", c) != main.value("simclr_le", c))
    assert cli("table", FIXTURE, "--kind", "gap", "--base", "simclr_le", "--reference", "standard",
               "--models", "rocl_at") == 0
    rows = [ln.split(" | ")[0] for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")][1:]
    assert rows == ["| Gap: Standard - SimCLR + LE (points)", "| RoCL + AT"]
    assert cli("table", FIXTURE, "--models", "madry,rocl_at", "--format", "csv") == 0
    assert cli("table", FIXTURE, "--models", "madri") == 2
    assert cli("table", FIXTURE, "--kind", "transfer", "--models", "madry") == 2
    assert "did you mean 'madry'" in capsys.readouterr().err


def test_mcnemar_exact_values():
    from rocl_bench.report.paired import mcnemar_p

    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(3, 3) == 1.0
    assert mcnemar_p(0, 5) == pytest.approx(2 / 32) and mcnemar_p(5, 0) == pytest.approx(2 / 32)
    assert mcnemar_p(1, 9) == pytest.approx(2 * 11 / 1024)
    stats = pytest.importorskip("scipy.stats")
    for a, b in ((6, 17), (11, 30), (26, 28), (0, 3), (40, 10)):
        assert mcnemar_p(a, b) == pytest.approx(stats.binomtest(a, a + b, 0.5).pvalue)


def test_compare_counts_points_each_model_alone_keeps(capsys, tmp_path):
    from rocl_bench.report.paired import paired_rows

    latest = load_records(FIXTURE).latest()
    main = main_table()
    rows = paired_rows(latest, "madry", "rocl_rle")
    cols = [c for c in main.columns if c.kind != "transfer"]
    assert [r.threat for r in rows] == [c.flat for c in cols]
    for r, c in zip(rows, cols):
        assert r.acc_a == pytest.approx(main.value("madry", c)) and r.acc_b == pytest.approx(main.value("rocl_rle", c))
        assert r.acc_a - r.acc_b == pytest.approx(100 * (r.only_a - r.only_b) / 40)
        assert 0 < r.p <= 1
    assert cli("compare", FIXTURE, "madry", "rocl_rle") == 0
    out = capsys.readouterr().out
    assert "A = Madry AT, B = RoCL + rLE" in out and "| Worst ℓ∞ ε=8/255 |" in out
    assert cli("compare", FIXTURE, "madry", "rocl_rle", "--out", tmp_path / "p.csv") == 0
    assert (tmp_path / "p.csv").read_text().startswith("Threat,")
    assert cli("compare", FIXTURE, "madri", "rocl_rle") == 2
    assert cli("compare", FIXTURE, "madry", "madry") == 2
    err = capsys.readouterr().err
    assert "did you mean 'madry'" in err and "twice" in err


def test_worst_case_is_and_of_masks():
    latest = [r for r in load_records(FIXTURE).latest() if r.model == "madry"]
    group = {"norm": "linf", "eps": 8 / 255}
    eight = [r for r in latest if r.attack in ("pgd_linf_seen", "fgsm_linf_seen", "aa_linf", "square_linf",
                                                   "transfer_pgd_linf")]
    expected = np.logical_and.reduce([decode_mask(r.robust_mask, 40) for r in eight]).mean()
    assert tables.worst_case(latest, group) == pytest.approx(expected)
    assert tables.worst_case(latest, lambda r: r.attack == "pgd_linf_seen") == pytest.approx(0.45)
    assert tables.worst_case(latest, {"norm": "l2", "eps": 3.0}) is None
    table = main_table()
    worst = next(c for c in table.columns if c.kind == "worst")
    assert table.value("madry", worst) == pytest.approx(100 * expected)
    with pytest.raises(UserError):
        tables.worst_case(load_records(FIXTURE).latest(), group)      # several models


def test_table_errors(tmp_path, capsys):
    assert cli("table", tmp_path / "nope") == 2
    assert cli("table", tmp_path) == 2                                # folder without records.jsonl
    (tmp_path / "records.jsonl").write_text("{oops\n")
    assert cli("table", tmp_path) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "no records.jsonl" in err and "no usable records" in err
    assert load_records(tmp_path, allow_empty=True).all == []
    assert ":1: not valid JSON" in capsys.readouterr().err              # the bad line is still reported


# ---------------------------------------------------------------------------------------------- LaTeX
@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not on PATH (Debian: apt-get install texlive-latex-base "
                           "texlive-latex-recommended)")
def test_latex_compiles_with_pdflatex(tmp_path):
    assert cli("baseline", FIXTURE, "--out", tmp_path / "b.json") == 0
    main = tables.render(tables.with_reference(main_table(), check_mod.reference_values(
        check_mod.load_baseline(tmp_path / "b.json"), main_table())[0]), "latex")
    transfer = tables.render(tables.build_transfer_table(load_records(FIXTURE).latest()), "latex")
    transfer += tables.render(tables.build_gap_table(main_table(), "simclr_le", "standard"), "latex")
    for snippet in (r"\toprule", r"\midrule", r"\bottomrule", r"\multicolumn", r"\textbf{", r"$\epsilon=8/255$",
                    r"\caption{", "digits (mlp)", "$n=40$"):
        assert snippet in main, snippet
    doc = (r"\documentclass{article}" "\n" r"\usepackage{booktabs}" "\n" r"\usepackage{graphicx}" "\n"
           r"\begin{document}" "\n" + main + transfer + r"\end{document}" "\n")
    (tmp_path / "doc.tex").write_text(doc)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_latex_escapes_labels(tmp_path):
    recs = lines()
    for r in recs:
        if r["model"] == "madry":
            r["label"] = "Madry_AT 100% & more"
    latest = load_records(write_records(tmp_path / "r.jsonl", recs)).latest()
    tex = tables.render(tables.build_main_table(latest), "latex")
    assert r"Madry\_AT 100\% \& more" in tex


# ---------------------------------------------------------------------------------- compare and check
def test_compare_with_run_baseline_and_paper_baseline(tmp_path, capsys):
    assert cli("baseline", FIXTURE, "--out", tmp_path / "b.json") == 0
    capsys.readouterr()
    assert cli("table", FIXTURE, "--compare", tmp_path / "b.json") == 0
    md = capsys.readouterr().out
    assert "Clean ref" in md and "Clean Δ" in md
    body = [line.strip("| ").split(" | ") for line in md.splitlines()[4:] if line.startswith("| ")]
    diffs = [cell for row in body for cell in row if cell[:1] in "+-"]
    assert len(body) == 5 and diffs and set(diffs) == {"+0.0"}
    # the paper baseline names cells by label + threat; the fixture's rocl_rle relabelled "RoCL" (an alias)
    recs = lines()
    for r in recs:
        if r["model"] == "rocl_rle":
            r["label"] = "RoCL"
    path = write_records(tmp_path / "paper.jsonl", recs)
    assert cli("table", path, "--compare", PAPER) == 0
    md = capsys.readouterr().out
    row = next(line for line in md.splitlines() if line.startswith("| RoCL |"))
    assert "83.71" in row and "-3.7" in row         # clean: 80.0 - 83.71
    assert "40.27" in row and "+7.2" in row         # seen l_inf 8/255 PGD: 47.5 - 40.27
    assert cli("check", path, "--against", PAPER, "--tol", "8") == 0
    assert cli("check", path, "--against", PAPER) == 1                # default tolerance 0.5 points


def test_paper_baseline_is_sourced():
    data = json.loads(PAPER.read_text())
    assert data["source"].startswith("https://github.com/Kim-Minseon/RoCL/")
    values = {c["column"]: c["value_percent"] for c in data["cells"]}
    assert values == {"clean": 83.71, "seen linf 8/255": 40.27}
    assert any("83.71 %" in w and "40.27%" in w for w in data["source_wording"])
    check_mod.load_baseline(PAPER)


def _shift(tmp_path: Path, points: float) -> Path:
    recs = lines()
    target = next(r for r in recs if (r["model"], r["attack"]) == ("madry", "pgd_linf_seen"))
    target["robust_accuracy"] = round(target["robust_accuracy"] + points / 100, 6)
    return write_records(tmp_path / "shifted.jsonl", recs)


def test_check_same_records_pass(tmp_path, capsys):
    assert cli("baseline", FIXTURE, "--out", tmp_path / "b.json") == 0
    data = json.loads((tmp_path / "b.json").read_text())
    for key in ("suite", "suite_hash", "source", "created", "versions", "tolerance_points", "cells"):
        assert key in data
    assert len(data["cells"]) == 48 and data["tolerance_points"] == 0.5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]       # no temp file left
    assert cli("check", FIXTURE, "--against", tmp_path / "b.json") == 0
    assert "ok:" in capsys.readouterr().out


def test_check_records_made_over_several_suite_versions(tmp_path, capsys):
    """A results folder that grew with its suite has several suite hashes; its baseline lists them all."""
    recs = lines()
    for i, r in enumerate(recs):
        r["suite_hash"] = "aaaa" if i % 2 else "bbbb"
    grown = write_records(tmp_path / "r.jsonl", recs)
    assert cli("baseline", grown, "--out", tmp_path / "b.json") == 0
    assert json.loads((tmp_path / "b.json").read_text())["suite_hash"] == ["aaaa", "bbbb"]
    assert cli("check", grown, "--against", tmp_path / "b.json") == 0
    assert "suite changed" not in capsys.readouterr().err
    for r in recs:
        r["suite_hash"] = "cccc"
    assert cli("check", write_records(tmp_path / "new.jsonl", recs), "--against", tmp_path / "b.json") == 0
    assert "suite_hash aaaa, bbbb differs" in capsys.readouterr().err


def test_check_drop_fails(tmp_path, capsys):
    assert cli("baseline", FIXTURE, "--out", tmp_path / "b.json") == 0
    capsys.readouterr()
    shifted = _shift(tmp_path, -5)
    assert cli("check", shifted, "--against", tmp_path / "b.json") == 1
    out = capsys.readouterr().out
    assert "madry / pgd_linf_seen" in out and "45.00" in out and "40.00" in out and "-5.00" in out
    assert "DROP" in out
    assert cli("check", shifted, "--against", tmp_path / "b.json", "--allow-improvement") == 1
    assert cli("check", shifted, "--against", tmp_path / "b.json", "--tol", "6") == 0


def test_check_rise_fails_unless_allowed(tmp_path, capsys):
    assert cli("baseline", FIXTURE, "--out", tmp_path / "b.json") == 0
    shifted = _shift(tmp_path, +5)
    assert cli("check", shifted, "--against", tmp_path / "b.json") == 1
    assert "RISE" in capsys.readouterr().out
    assert cli("check", shifted, "--against", tmp_path / "b.json", "--allow-improvement") == 0
    assert "rise (allowed)" in capsys.readouterr().out


def test_check_tolerance_from_baseline(tmp_path):
    assert cli("baseline", FIXTURE, "--out", tmp_path / "b.json", "--tol", "6") == 0
    assert cli("check", _shift(tmp_path, -5), "--against", tmp_path / "b.json") == 0
    assert cli("check", _shift(tmp_path, -5), "--against", tmp_path / "b.json", "--tol", "1") == 1


def test_check_missing_cell_lists_it(tmp_path, capsys):
    assert cli("baseline", FIXTURE, "--out", tmp_path / "b.json") == 0
    recs = [r for r in lines() if not (r["model"] == "madry" and r["attack"] == "aa_linf")
            and not (r["model"] == "rocl_at" and r.get("source") == "madry")]
    path = write_records(tmp_path / "partial.jsonl", recs)
    assert cli("check", path, "--against", tmp_path / "b.json") == 2
    err = capsys.readouterr().err
    assert "madry / aa_linf" in err and "rocl_at / transfer_pgd_linf / from madry" in err
    assert err.count("\n") == 1                                 # one line


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"cells": {}}', "'cells' must be a non-empty list"),
    ('[1, 2]', "expected a JSON object"),
    ('{"cells": [{"model": "madry"}]}', "missing 'attack'"),
    ('{"cells": [{"model": "madry", "attack": "aa_linf", "robust_accuracy": 45}]}', "fraction in [0, 1]"),
    ('{"cells": [{"label": "X", "column": "seen linf", "value_percent": 4}]}', "not understood"),
    ('{"tolerance_points": -1, "cells": [{"model": "m", "attack": "a", "robust_accuracy": 0.1}]}',
     "tolerance_points"),
])
def test_check_malformed_baseline(tmp_path, capsys, content, message):
    (tmp_path / "b.json").write_text(content)
    assert cli("check", FIXTURE, "--against", tmp_path / "b.json") == 2
    assert message in capsys.readouterr().err


def test_check_missing_baseline_file_and_bad_tol(tmp_path, capsys):
    assert cli("check", FIXTURE, "--against", tmp_path / "none.json") == 2
    assert "baseline not found" in capsys.readouterr().err
    assert cli("baseline", FIXTURE, "--out", tmp_path / "b.json", "--tol", "-1") == 2


def test_constants_agree():
    from rocl_bench.report import plots
    assert commands.TABLE_FORMATS == tables.FORMATS
    assert commands.PLOT_KINDS == plots.KINDS
    assert commands.DEFAULT_TOL == check_mod.DEFAULT_TOL


# ---------------------------------------------------------------------------------------------- plots
def _assert_image(path: Path) -> None:
    import matplotlib.image as mpimg
    assert path.is_file() and path.stat().st_size > 1000
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300


@pytest.mark.parametrize("kind", ["eps-curve", "transfer"])
def test_plots_from_records(kind, tmp_path):
    out = tmp_path / f"{kind}.png"
    assert cli("plot", FIXTURE, "--kind", kind, "--out", out) == 0
    _assert_image(out)


def test_training_plot_globs_metrics(tmp_path, capsys):
    for name, acc in (("madry", True), ("rocl", False)):
        d = tmp_path / "models" / name
        d.mkdir(parents=True)
        rows = [{"epoch": e, "loss": 2.0 / e + (10 if not acc else 0), "lr": 0.1,
                 "train_accuracy": 0.5 + 0.1 * e if acc else None} for e in range(1, 4)]
        text = "".join(json.dumps(r) + "\n" for r in rows)
        (d / "metrics.jsonl").write_text(text + ('{"epoch": 4, "lo\n' if name == "rocl" else ""))
    assert cli("plot", tmp_path, "--kind", "training", "--out", tmp_path / "training.png") == 0
    assert "metrics.jsonl:4: not valid JSON" in capsys.readouterr().err
    _assert_image(tmp_path / "training.png")
    assert cli("plot", tmp_path / "models" / "madry", "--kind", "training", "--out", tmp_path / "one.pdf") == 0
    assert (tmp_path / "one.pdf").read_bytes().startswith(b"%PDF")


def test_plot_default_out_and_bad_extension(tmp_path, capsys):
    shutil.copy(FIXTURE, tmp_path / "records.jsonl")
    assert cli("plot", tmp_path, "--kind", "eps-curve") == 0
    _assert_image(tmp_path / "figures" / "eps-curve.png")
    assert cli("plot", tmp_path, "--kind", "eps-curve", "--out", tmp_path / "x.jpg") == 2
    assert "unsupported figure type" in capsys.readouterr().err


def test_compare_warns_when_the_baseline_is_on_other_data(tmp_path, capsys):
    recs = lines()
    for r in recs:
        r["dataset"] = "mnist"
    assert cli("table", write_records(tmp_path / "m.jsonl", recs), "--compare", PAPER) == 0
    assert "holds numbers on cifar10, these records are on mnist" in capsys.readouterr().err
    for r in recs:
        r["dataset"] = "cifar10"
    assert cli("table", write_records(tmp_path / "c.jsonl", recs), "--compare", PAPER) == 0
    assert "holds numbers on" not in capsys.readouterr().err
