"""One renderer family: Markdown, CSV, LaTeX (booktabs) and HTML from a header and rows of cells.

The robustness tables (`report/tables.py`), the paired comparison (`report/paired.py`), the representation
analysis (`analysis/run.py`) and the run summary (`bench/summary.py`) all lay out and escape their text here,
so a rule (what a pipe becomes in Markdown, a percent sign in LaTeX) is written once. Callers format their
numbers themselves (how many decimals is a property of the quantity, not of the format) and pass the cells in.
It sits at the package's top and imports nothing of it, so `bench` and `analysis` use it without importing
the reports, which sit downstream of them.
"""
from __future__ import annotations

import hashlib
import html as html_lib
from typing import Any, Sequence

FORMATS = ("md", "csv", "latex", "html")
DAGGER = {"md": "†", "html": "†", "latex": r"$^\dagger$", "csv": ""}     # marks a cell whose records carry a warning
LATEX_NEEDS = r"\usepackage{booktabs} and \usepackage{graphicx}"
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: Any) -> str:
    """Text as LaTeX prints it literally (labels, captions, attack ids)."""
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def tex_text(text: Any) -> str:
    """Free text (a warning) in TeX: escaped, with the Greek and maths letters our messages use in math mode."""
    out = tex_escape(text)
    for ch, tex in (("ε", r"$\epsilon$"), ("ℓ", r"$\ell$"), ("∞", r"$\infty$"), ("Δ", r"$\Delta$"),
                    ("−", "$-$"), ("×", r"$\times$"), ("†", r"$^\dagger$")):
        out = out.replace(ch, tex)
    return out


def md_escape(text: Any) -> str:
    """Text that cannot end a Markdown table cell early."""
    return str(text).replace("|", r"\|")


def markdown(header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None,
             align: str | None = None, footnotes: Sequence[str] = ()) -> str:
    """A pipe table, optionally under an italic caption and over footnotes (one paragraph each). `align` has one
    letter per column, l or r (a colon rule); without it the rule is plain dashes. Ends with a newline."""
    rule = "".join({"l": ":--|", "r": "--:|"}[a] for a in align) if align else "---|" * len(header)
    lines = [f"*{md_escape(caption)}*", ""] if caption is not None else []
    lines += ["| " + " | ".join(md_escape(h) for h in header) + " |", "|" + rule]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]
    for note in footnotes:
        lines += ["", str(note)]
    return "\n".join(lines) + "\n"


def csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Comma-separated with a header line, quoted where needed; None and NaN are empty, floats in full."""
    import pandas as pd

    return pd.DataFrame([list(r) for r in rows], columns=list(header)).to_csv(index=False, lineterminator="\n")


def latex(header: Sequence[Any], rows: Sequence[Sequence[str]], caption: str, label: str,
          index: Sequence[str] | None = None, column_format: str | None = None, header_tex: bool = False) -> str:
    """A booktabs table float. `header` holds column names, or (group, sub) pairs for a two-level header with
    centred group names; `rows` hold cells already in TeX; `index` (optional) labels the rows and is escaped;
    `caption` is TeX. Names are escaped unless `header_tex` says they are TeX already."""
    import pandas as pd

    two_level = bool(header) and isinstance(header[0], tuple)
    columns = pd.MultiIndex.from_tuples(list(header)) if two_level else list(header)
    frame = pd.DataFrame([list(r) for r in rows], index=list(index) if index is not None else None, columns=columns)
    styler = frame.style
    styler = styler.format_index(escape="latex", axis=0) if index is not None else styler.hide(axis="index")
    if not header_tex:
        styler = styler.format_index(escape="latex", axis=1)
    options: dict[str, Any] = {"multicol_align": "c"} if two_level else {}
    if column_format is not None:
        options["column_format"] = column_format
    return styler.to_latex(hrules=True, caption=caption, position="htbp", position_float="centering", label=label,
                           **options)


def latex_grouped(body: str, header: Sequence[tuple[str, str]], footnotes: Sequence[str] = ()) -> str:
    """Finish a two-level `latex` table: a \\cmidrule under each group header that has sub-headers, a smaller
    font, and shrink-to-fit (never enlarge): a tabular wider than \\linewidth is scaled down with graphicx's
    \\resizebox, a narrow one keeps its natural size. `footnotes` (TeX) go under the tabular, in the float."""
    spans, start = [], 0
    for j in range(1, len(header) + 1):
        if j == len(header) or header[j][0] != header[start][0]:
            if any(sub for _, sub in header[start:j]):      # a group with sub-headers (plain Clean has none)
                spans.append(rf"\cmidrule(lr){{{start + 2}-{j + 1}}}")
            start = j
    out = [f"% rocl-bench table: needs {LATEX_NEEDS} in the preamble"]
    after_top = False
    for line in body.splitlines():
        if line.startswith(r"\begin{tabular}"):
            out.append(r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%")
        out.append(line)
        if line.startswith(r"\end{tabular}"):
            out[-1] += "%"
            out.append("}")
            if footnotes:
                out += [r"\par\smallskip\footnotesize\raggedright"] + [f"{note}\\par" for note in footnotes]
        if line.strip() == r"\centering":
            out += [r"\small", r"\setlength{\tabcolsep}{4pt}"]
        if line.strip() == r"\toprule":
            after_top = True
        elif after_top:
            after_top = False
            if spans:
                out.append(" ".join(spans))
    return "\n".join(out) + "\n"


def html(header: Sequence[tuple[str, str]], rows: Sequence[Sequence[str]], index: Sequence[str],
         caption: str, footnotes: Sequence[str] = ()) -> str:
    """A bordered HTML table with a two-level header; every name, label, the caption and the footnotes (one
    paragraph each, after the table) escaped. Element ids derive from the content (pandas would draw them at
    random), so the same table gives the same bytes."""
    import pandas as pd

    frame = pd.DataFrame([list(r) for r in rows], index=list(index), columns=pd.MultiIndex.from_tuples(list(header)))
    uuid = hashlib.sha256(repr((list(header), [list(r) for r in rows], list(index), caption)).encode()).hexdigest()
    styler = (frame.style.set_uuid(uuid[:5]).format_index(escape="html", axis=0).format_index(escape="html", axis=1)
              .set_caption(html_lib.escape(caption))
              .set_table_attributes('class="rocl-bench" border="1" style="border-collapse: collapse"'))
    notes = "".join(f'<p class="rocl-bench-note">{html_lib.escape(str(n))}</p>\n' for n in footnotes)
    return styler.to_html() + notes

