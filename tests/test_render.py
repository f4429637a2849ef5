"""The one renderer family (rocl_bench/render.py): what tables, paired comparisons, analysis and the run summary
write goes through it, and the committed reports come out byte for byte."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from rocl_bench.analysis.run import render_analysis
from rocl_bench.bench.summary import summary_markdown
from rocl_bench.record import Record, load
from rocl_bench import render
from rocl_bench.report import tables

RESULTS = Path(__file__).resolve().parents[1] / "results"
SUITES = ["ci", "ci_train", "mnist", "cifar10_jpeg_small"]
ANALYSED = ["ci_train", "mnist", "cifar10_jpeg_small"]     # results/ci evaluates committed checkpoints: no analysis


@pytest.mark.parametrize("suite", ANALYSED)
def test_analysis_renders_the_committed_files_byte_for_byte(suite):
    folder = RESULTS / suite / "analysis"
    caption = (folder / "analysis.md").read_text().splitlines()[0].strip("*")
    out = render_analysis(pd.read_csv(folder / "analysis.csv"), caption)   # the csv holds every digit
    for name in ("analysis.csv", "analysis.md", "analysis.tex"):
        assert out[name] == (folder / name).read_text(), name


@pytest.mark.parametrize("suite", SUITES)
def test_tables_render_the_committed_files_byte_for_byte(suite):
    table = tables.build_main_table(load(RESULTS / suite).latest())
    for fmt, name in (("md", "table.md"), ("latex", "table.tex"), ("csv", "table.csv")):
        assert tables.render(table, fmt) == (RESULTS / suite / name).read_text(), name


def test_markdown_layout_escaping_and_alignment():
    text = render.markdown(["a|b", "n"], [["x|y", 3]], caption="c|d", align="lr")
    assert text == "*c\\|d*\n\n| a\\|b | n |\n|:--|--:|\n| x\\|y | 3 |\n"
    assert render.markdown(["a"], [], align=None) == "| a |\n|---|\n"


def test_tex_escape_and_csv_missing_values():
    assert render.tex_escape("a_b 100% & $x$ #1 {~^\\}") == \
        r"a\_b 100\% \& \$x\$ \#1 \{\textasciitilde{}\textasciicircum{}\textbackslash{}\}"
    assert render.csv(["a", "b"], [[None, math.nan], ["x,y", 0.1]]) == 'a,b\n,\n"x,y",0.1\n'


def test_html_is_the_same_bytes_for_the_same_table_and_differs_between_tables():
    one = render.html([("G", "a")], [["1"]], ["row"], "cap <1>")
    assert one == render.html([("G", "a")], [["1"]], ["row"], "cap <1>")
    assert "cap &lt;1&gt;" in one
    other = render.html([("G", "a")], [["2"]], ["row"], "cap <1>")
    assert other.split('id="')[1][:7] != one.split('id="')[1][:7]


def test_run_summary_goes_through_the_shared_markdown():
    recs = [Record.from_dict({"model": "m", "label": "A|B", "attack": "pgd", "robust_accuracy": 0.25,
                              "clean_accuracy": 0.5, "attack_spec": {"type": "pgd"}}),
            Record.from_dict({"model": "m", "attack": "t", "source": "s", "robust_accuracy": 0.5,
                              "attack_spec": {"type": "transfer"}})]
    assert summary_markdown(recs) == ("| model | clean acc. | pgd | t |\n|---|---|---|---|\n"
                                      "| A\\|B | 50.0 | 25.0 | 50.0 |")


def test_footnotes_go_under_the_table_in_every_format():
    md = render.markdown(["a"], [["1†"]], caption="c", footnotes=["† a, x: w"])
    assert md.endswith("| 1† |\n\n† a, x: w\n")
    body = render.latex([("G", "a")], [["1$^\\dagger$"]], "cap", "tab:x", index=["r"], header_tex=True)
    tex = render.latex_grouped(body, [("G", "a")], footnotes=[r"$^\dagger$ r: w"])
    assert tex.index(r"\end{tabular}") < tex.index(r"$^\dagger$ r: w\par") < tex.index(r"\end{table}")
    assert r"$^\dagger$ r" not in render.latex_grouped(body, [("G", "a")])
    page = render.html([("G", "a")], [["1†"]], ["r"], "cap", footnotes=["† r: <w>"])
    assert page.endswith('<p class="rocl-bench-note">† r: &lt;w&gt;</p>\n')
    assert render.tex_text("ε=0.1 at ℓ∞ 5%") == r"$\epsilon$=0.1 at $\ell$$\infty$ 5\%"


def test_html_folds_many_warnings_under_one_line():
    from rocl_bench.render import html

    few = html(["a"], [["1"]], ["m"], "cap", footnotes=["w1", "w2"])
    many = html(["a"], [["1"]], ["m"], "cap", footnotes=[f"w{i}" for i in range(5)])
    assert "<details" not in few and few.count('class="rocl-bench-note"') == 2
    assert '<details class="rocl-bench-notes"><summary>† 5 warnings (show)</summary>' in many
    assert many.count('class="rocl-bench-note"') == 5          # every warning is still on the page
