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


def html(header: Sequence[tuple[str, str] | str], rows: Sequence[Sequence[str]], index: Sequence[str],
         caption: str, footnotes: Sequence[str] = (), corner: str = "",
         links: Sequence[str | None] | None = None) -> str:
    """A sortable HTML table: `header` holds column names, or (group, sub) pairs for a two-level header (runs of
    one group share a spanning cell; a column without a sub spans both rows); `rows` hold cells already in HTML
    (callers format numbers and mark best cells); `index` labels the rows (escaped; `links`, optional, makes the
    i-th label a link to links[i]); `corner` heads the label column; every name, the caption and the footnotes
    (one paragraph each, after the table) are escaped. Each column header (th.sort, data-col) re-sorts the rows in
    a browser with the site's script (report/site_assets/sort.js, inlined by `rocl-bench report` and by
    `table --format html`). The table's id derives from its content, so the same table gives the same bytes.
    The one HTML table renderer: the site's pages and `table --format html` both use it."""
    esc = html_lib.escape
    pairs = [h if isinstance(h, tuple) else (str(h), "") for h in header]
    two = any(sub for _, sub in pairs)
    digest = hashlib.sha256(repr((pairs, [list(r) for r in rows], list(index), caption, corner,
                                  list(links or []))).encode()).hexdigest()[:10]
    out = [f'<table class="rocl-bench sortable" id="rb-{digest}">', f"<caption>{esc(caption)}</caption>", "<thead>"]

    def th(text: str, col: int, span: str = "") -> str:
        return f'<th scope="col" class="sort" data-col="{col}"{span} title="sort by this column">{esc(text)}</th>'

    top = [th(corner, 0, ' rowspan="2"' if two else "")]
    subs = []
    j = 0
    while j < len(pairs):
        group, sub = pairs[j]
        if not two or not sub:
            top.append(th(group, j + 1, ' rowspan="2"' if two else ""))
            j += 1
            continue
        k = j
        while k < len(pairs) and pairs[k][0] == group and pairs[k][1]:
            subs.append(th(pairs[k][1], k + 1))
            k += 1
        top.append(f'<th scope="colgroup" colspan="{k - j}">{esc(group)}</th>')
        j = k
    out.append("<tr>" + "".join(top) + "</tr>")
    if two:
        out.append("<tr>" + "".join(subs) + "</tr>")
    out += ["</thead>", "<tbody>"]
    for i, (label, row) in enumerate(zip(index, rows)):
        href = links[i] if links is not None and i < len(links) else None
        name = f'<a href="{esc(href, quote=True)}">{esc(str(label))}</a>' if href else esc(str(label))
        out.append(f'<tr><th scope="row">{name}</th>' + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    out += ["</tbody>", "</table>"]
    notes = "".join(f'<p class="rocl-bench-note">{esc(str(n))}</p>\n' for n in footnotes)
    if len(footnotes) > 3:              # many warnings: folded under one line, so the next table stays in view
        notes = (f'<details class="rocl-bench-notes"><summary>† {len(footnotes)} warnings (show)</summary>\n'
                 f"{notes}</details>\n")
    return "\n".join(out) + "\n" + notes
