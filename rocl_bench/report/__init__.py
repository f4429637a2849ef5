"""Reports from evaluation records: tables, figures, baselines and regression checks.

Modules: `records` (read records.jsonl, latest record per cell, robust-mask encode/decode), `tables`
(main table, transfer matrix, worst case; md/csv/latex/html), `plots` (figures), `check` (baselines),
`commands` (the CLI handlers and `add_report_parsers`). Nothing heavy is imported here, so importing
`rocl_bench.report.commands` to build the CLI parser stays cheap.
"""
