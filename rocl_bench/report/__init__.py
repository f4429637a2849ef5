"""Reports from evaluation records: tables, figures, baselines and regression checks.

Records are read with `rocl_bench.record.load` (validated, latest per cell) and rendered with
`rocl_bench.render` (the one md/csv/latex/html renderer, shared with the analysis and the run summary).
Modules: `records` (threat-model text: ε, norms), `columns` (which column a record's cell belongs to, and its
headers), `worst` (the per-point worst case over attacks), `tables` (main table, transfer matrix, gap table),
`paired` (McNemar comparisons), `plots` (figures), `check` (baselines), `commands` (the CLI handlers and
`add_report_parsers`). Nothing heavy is imported here, so importing `rocl_bench.report.commands` to build the
CLI parser stays cheap.
"""
