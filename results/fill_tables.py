"""Copy generated tables into results/README.md, so that no table there is typed by hand.

A block in the README
    <!-- include: mnist/table.md -->
    ...anything...
    <!-- end include -->
is replaced by the file named (relative to results/). `--check` exits 1 when a block differs from its file
(the test suite runs it), instead of rewriting.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BLOCK = re.compile(r"(<!-- include: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- end include -->)", re.S)


def filled(text: str) -> str:
    def replace(m: re.Match) -> str:
        source = HERE / m["path"]
        if not source.is_file():
            raise SystemExit(f"results/README.md: include {m['path']}: no such file; run results/make_reports.sh")
        return m.group(1) + source.read_text().rstrip("\n") + "\n" + m.group(4)
    return BLOCK.sub(replace, text)


def main(argv: list[str]) -> int:
    readme = HERE / "README.md"
    text = readme.read_text()
    new = filled(text)
    if "--check" in argv:
        if new != text:
            print("results/README.md: a table differs from its generated file; run python results/fill_tables.py",
                  file=sys.stderr)
            return 1
        return 0
    tmp = readme.with_suffix(".md.tmp")
    tmp.write_text(new)
    tmp.replace(readme)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
