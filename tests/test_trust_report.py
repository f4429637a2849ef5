"""Honest tables (#16): the headline per budget is the per-point worst case over every attack there; cells whose
records carry a warning get a dagger and a footnote in every format and are never bold; `check` fails on a cell
that gained a warning.

Uses tests/fixtures/records_small.jsonl (SYNTHETIC: 5 models x 9 attacks, n=40; at ℓ∞ 8/255 PGD, FGSM,
AutoAttack, Square and transfer from two sources)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rocl_bench.record import decode_mask
from rocl_bench.record import load as load_records
from rocl_bench.report import tables

from test_report import FIXTURE, cli, lines, write_records

EIGHT = ("pgd_linf_seen", "fgsm_linf_seen", "aa_linf", "square_linf", "transfer_pgd_linf")
WARNING = "pgd_linf_seen is 40.0 points weaker than aa_linf on model madry at linf ε=0.0314: a weak attack"


def _headline(latest=None):
    return tables.build_main_table(latest or load_records(FIXTURE).latest())


def _budget(table, norm="linf", eps=8 / 255):
    return next(c for c in table.columns if c.atype == tables.BUDGET and c.norm == norm
                and abs(c.eps - eps) < 1e-6)


def test_the_headline_is_the_per_point_worst_case_over_every_attack_at_the_budget():
    latest = load_records(FIXTURE).latest()
    table, per_attack = _headline(latest), tables.build_main_table(latest, per_attack=True)
    col = _budget(table)
    assert col.flat == "Seen ℓ∞ ε=8/255 (5 attacks)" and col.attacks == EIGHT
    assert f"Seen ℓ∞ ε=8/255 (5 attacks): per-point worst case over {', '.join(EIGHT)}" in table.caption
    assert [c.flat for c in table.columns] == ["Clean", "Seen ℓ∞ ε=8/255 (5 attacks)",
                                               "Unseen ℓ∞ ε=16/255 (6 attacks)", "Unseen ℓ2 ε=0.5 (1 attack)",
                                               "Unseen ℓ1 ε=12 (1 attack)"]
    for model in ("standard", "madry", "simclr_le", "rocl_rle", "rocl_at"):
        cells = [r for r in latest if r.model == model and r.attack in EIGHT]     # every transfer source too
        expected = np.logical_and.reduce([decode_mask(r.robust_mask, r.n) for r in cells]).mean()
        assert table.value(model, col) == pytest.approx(100 * expected)
        # never more generous than the strongest single attack at that budget
        strongest = min(per_attack.value(model, c) for c in per_attack.columns
                        if c.kind not in ("clean", "worst") and c.norm == "linf" and abs(c.eps - 8 / 255) < 1e-6)
        assert table.value(model, col) <= strongest + 1e-9
    # a transfer source counts: madry's worst case includes the points transfer from standard fools
    madry = [r for r in latest if r.model == "madry" and r.attack in EIGHT and r.source != "standard"]
    without = np.logical_and.reduce([decode_mask(r.robust_mask, r.n) for r in madry]).mean()
    assert 100 * without >= table.value("madry", col)
    # a budget with one attack shows that attack's number
    one = _budget(table, "l2", 0.5)
    assert table.value("madry", one) == per_attack.value("madry", next(c for c in per_attack.columns
                                                                       if c.attack == "pgd_l2_05"))


def test_without_masks_the_headline_falls_back_to_the_strongest_attack(tmp_path, capsys):
    recs = lines()
    for r in recs:
        if r["model"] == "madry" and r["attack"] == "square_linf":
            r.pop("robust_mask")
    latest = load_records(write_records(tmp_path / "r.jsonl", recs)).latest()
    said: list[str] = []
    table = tables.build_main_table(latest, warn=said.append)
    strongest = min(100 * r.robust_accuracy for r in latest if r.model == "madry" and r.attack in EIGHT)
    assert table.value("madry", _budget(table)) == pytest.approx(strongest)
    assert any("worst case for madry" in s and "showing the strongest single attack instead" in s for s in said)


def _warned_fixture(tmp_path: Path, model="madry", attack="pgd_linf_seen") -> Path:
    recs = lines()
    for r in recs:
        if r["model"] == model and r["attack"] == attack:
            r["warnings"] = [WARNING]
    return write_records(tmp_path / "warned.jsonl", recs)


@pytest.mark.parametrize("fmt,dagger", [("md", "†"), ("html", "†"), ("latex", r"$^\dagger$")])
def test_a_warned_cell_gets_a_dagger_and_a_footnote_in_every_format(tmp_path, fmt, dagger):
    latest = load_records(_warned_fixture(tmp_path)).latest()
    for per_attack in (False, True):
        table = tables.build_main_table(latest, per_attack=per_attack)
        text = tables.render(table, fmt)
        marked = {c.flat for (m, c) in table.marks if m == "madry"}
        if per_attack:        # the PGD cell itself and the Worst cell it contributes to
            assert marked == {"Seen ℓ∞ ε=8/255", "Worst ℓ∞ ε=8/255"}
        else:                 # the headline cells it contributes to: its budget, and the larger ε (best known)
            assert marked == {"Seen ℓ∞ ε=8/255 (5 attacks)", "Unseen ℓ∞ ε=16/255 (6 attacks)"}
        value = f"{table.value('madry', next(c for (m, c) in table.marks if m == 'madry')):.1f}"
        assert f"{value}{dagger}" in text
        if fmt == "latex":
            assert r"$^\dagger$ Madry AT, Seen $\ell_\infty$ $\epsilon=8/255$" in text
            assert r"pgd\_linf\_seen is 40.0 points weaker than aa\_linf on model madry at linf $\epsilon$=0.0314" in text
        else:
            assert f"† Madry AT, Seen ℓ∞ ε=8/255{' (5 attacks)' if not per_attack else ''}: {WARNING}" in text
        assert "carry a warning" in text
    clean = tables.render(tables.build_main_table(load_records(FIXTURE).latest()), fmt)
    assert dagger not in clean and "carry a warning" not in clean


def test_a_marked_cell_is_never_bold_and_the_next_best_is(tmp_path):
    # rocl_rle holds the best headline value at 8/255 (12.5); warn one of its cells there
    latest = load_records(_warned_fixture(tmp_path, "rocl_rle", "aa_linf")).latest()
    md = tables.render(tables.build_main_table(latest), "md")
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in md.splitlines() if line.startswith("| ")}
    assert rows["RoCL + rLE"][2] == "12.5†"                     # not **12.5**
    assert rows["RoCL + AT"][2] == "**5.0**"                     # the best unmarked value
    assert rows["RoCL + rLE"][3] == "0.0†"                      # 16/255 counts the 8/255 cells too (best known)
    assert rows["RoCL + rLE"][4] == "**55.0**"                   # its other columns are ranked as before


def test_csv_keeps_numbers_and_names_the_warnings_in_a_column(tmp_path):
    latest = load_records(_warned_fixture(tmp_path)).latest()
    import io

    import pandas as pd

    frame = pd.read_csv(io.StringIO(tables.render(tables.build_main_table(latest), "csv")))
    assert list(frame.columns)[-1] == "warnings"
    row = frame.set_index("model").loc["madry"]
    assert row["warnings"] == f"Seen ℓ∞ ε=8/255 (5 attacks): {WARNING} | Unseen ℓ∞ ε=16/255 (6 attacks): {WARNING}"
    assert float(row["Seen ℓ∞ ε=8/255 (5 attacks)"]) == pytest.approx(2.5)      # the value stays a number
    assert frame.set_index("model")["warnings"].drop("madry").isna().all()


def test_table_per_attack_flag(tmp_path, capsys):
    assert cli("table", FIXTURE, "--per-attack") == 0
    assert "| Worst ℓ∞ ε=8/255 |" in capsys.readouterr().out
    assert cli("table", FIXTURE) == 0
    out = capsys.readouterr().out
    assert "Seen ℓ∞ ε=8/255 (5 attacks)" in out and "Worst" not in out


# ------------------------------------------------------------------------------------------- check
def test_baseline_stores_warnings_and_check_fails_on_a_new_one(tmp_path, capsys):
    assert cli("baseline", FIXTURE, "--out", tmp_path / "b.json") == 0
    cells = json.loads((tmp_path / "b.json").read_text())["cells"]
    assert all(c["warnings"] == [] for c in cells)
    warned = _warned_fixture(tmp_path)
    capsys.readouterr()
    assert cli("check", warned, "--against", tmp_path / "b.json") == 1
    out = capsys.readouterr().out
    assert f"NEW WARNING: madry / pgd_linf_seen: {WARNING}" in out
    assert out.count("NEW WARNING") == 1 and "1 cell(s) gained a warning" in out
    assert cli("check", warned, "--against", tmp_path / "b.json", "--allow-new-warnings") == 0
    assert "new warning (allowed): madry / pgd_linf_seen" in capsys.readouterr().out
    # the baseline had the alarm (with other figures): not new
    assert cli("baseline", warned, "--out", tmp_path / "w.json") == 0
    moved = lines()
    for r in moved:
        if r["model"] == "madry" and r["attack"] == "pgd_linf_seen":
            r["warnings"] = [WARNING.replace("40.0", "38.5")]
    capsys.readouterr()
    assert cli("check", write_records(tmp_path / "m.jsonl", moved), "--against", tmp_path / "w.json") == 0
    assert "NEW WARNING" not in capsys.readouterr().out


def test_an_old_baseline_without_warnings_is_not_compared(tmp_path, capsys):
    assert cli("baseline", FIXTURE, "--out", tmp_path / "b.json") == 0
    data = json.loads((tmp_path / "b.json").read_text())
    for c in data["cells"]:
        del c["warnings"]
    (tmp_path / "b.json").write_text(json.dumps(data))
    assert cli("check", _warned_fixture(tmp_path), "--against", tmp_path / "b.json") == 0
    assert "NEW WARNING" not in capsys.readouterr().out


def test_a_malformed_warnings_key_is_one_line_naming_it(tmp_path, capsys):
    assert cli("baseline", FIXTURE, "--out", tmp_path / "b.json") == 0
    data = json.loads((tmp_path / "b.json").read_text())
    data["cells"][3]["warnings"] = "oops"
    (tmp_path / "b.json").write_text(json.dumps(data))
    capsys.readouterr()
    assert cli("check", FIXTURE, "--against", tmp_path / "b.json") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cells[3]: 'warnings' is" in err and "expected a list of warning strings" in err
