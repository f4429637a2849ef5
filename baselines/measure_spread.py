"""Measure how far a suite's numbers move when the CPU's arithmetic changes, to size a baseline's tolerances.

CI runs on whichever machine submits a change (AVX2 or AVX-512, Intel or AMD). On one machine, the kernel
settings below stand in for those CPUs: torch's vectorised kernels (`ATEN_CPU_CAPABILITY`), MKL's code path
(`MKL_CBWR`) and oneDNN's instruction set (`DNNL_MAX_CPU_ISA`) are the places where the summation order, and
so the last bits of every matmul, softmax and reduction, depend on the processor; the thread count
(`OMP_NUM_THREADS` 1 and 4) changes how sums are split. The suite is run once per
setting, in fresh folders, and each cell's spread (largest minus smallest value, in points) is written out.

    python baselines/measure_spread.py suites/ci.yaml --out baselines/ci_spread.json

The result is what `rocl-bench baseline ... --spread FILE` turns into per-cell tolerances.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CAPABILITIES = ("default", "avx2", "avx512")
MKL_PATHS = (None, "AVX2", "COMPATIBLE")
DNNL_ISAS = (None, "AVX2")
KNOBS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "DNNL_MAX_CPU_ISA", "OMP_NUM_THREADS")


def settings() -> list[dict[str, str]]:
    """Every combination of the three knobs (None: the library's own choice for this CPU)."""
    out = []
    for cap, mkl, dnnl in itertools.product(CAPABILITIES, MKL_PATHS, DNNL_ISAS):
        env: dict[str, str] = {"ATEN_CPU_CAPABILITY": cap}
        if mkl:
            env["MKL_CBWR"] = mkl
        if dnnl:
            env["DNNL_MAX_CPU_ISA"] = dnnl
        out.append(env)
    # the thread count changes how MKL and OpenMP split each sum; CI machines have 2 cores, users may have more
    out += [{"OMP_NUM_THREADS": "1"}, {"OMP_NUM_THREADS": "4"}]
    return out


QUICK = ({"ATEN_CPU_CAPABILITY": "default"},
         {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2"},   # an AVX2 machine
         {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"},
         {"OMP_NUM_THREADS": "1"}, {"OMP_NUM_THREADS": "4"})


def chosen_settings(quick: bool) -> list[dict[str, str]]:
    """All 20 settings, or --quick: the five that moved numbers most when all 20 were measured (the default,
    the AVX2 stand-in, MKL's COMPATIBLE path, one and four threads), for suites whose runs take minutes."""
    return [dict(e) for e in QUICK] if quick else settings()


def run_once(suite: str, env: dict[str, str], folder: Path, extra: list[str]) -> dict[str, dict[str, float]]:
    """{cell name: {"clean": %, "robust": %}} of one fresh run under `env`."""
    full = {k: v for k, v in os.environ.items() if k not in KNOBS}
    full.update(env)
    subprocess.run(["rocl-bench", "run", suite, "--out", str(folder), "--quiet", *extra], env=full, check=True,
                   stdout=subprocess.DEVNULL)
    cells: dict[str, dict[str, float]] = {}
    for line in (folder / "records.jsonl").read_text().splitlines():
        r = json.loads(line)
        name = f"{r['model']} / {r['attack']}" + (f" / from {r['source']}" if r.get("source") else "")
        cells[name] = {"clean": 100 * r["clean_accuracy"], "robust": 100 * r["robust_accuracy"],
                       "mask": r.get("robust_mask")}
    return cells


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite")
    ap.add_argument("--out", required=True, help="JSON file for the per-cell spreads")
    ap.add_argument("--extra", default="", help="extra arguments for rocl-bench run, e.g. '--data-root DIR'")
    ap.add_argument("--quick", action="store_true", help="5 of the 20 settings (see chosen_settings)")
    ap.add_argument("--work", help="keep the runs here (one folder per setting) and resume them; default: a "
                                   "temporary folder")
    args = ap.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        todo = chosen_settings(args.quick)
        for i, env in enumerate(todo):
            t0 = time.time()
            cells = run_once(args.suite, env, work / str(i), args.extra.split())
            runs.append({"env": env, "seconds": round(time.time() - t0, 1), "cells": cells})
            print(f"{i + 1}/{len(todo)} {env} {time.time() - t0:.0f} s", file=sys.stderr)
    names = sorted(runs[0]["cells"])
    spread = {}
    for name in names:
        spread[name] = {m: round(max(r["cells"][name][m] for r in runs) - min(r["cells"][name][m] for r in runs), 4)
                        for m in ("clean", "robust")}
    same_masks = sum(len({r["cells"][n]["mask"] for r in runs}) == 1 for n in names)
    for r in runs:
        for c in r["cells"].values():
            c.pop("mask")
    shown_args = [a for a in (argv or sys.argv[1:])]
    if args.work:                      # a scratch folder is not part of what the measurement computes
        k = shown_args.index("--work")
        del shown_args[k:k + 2]
    result = {"suite": args.suite, "command": "python baselines/measure_spread.py " + " ".join(shown_args),
              "cpu": _cpu_name(), "settings": len(runs),
              "cells_with_identical_masks": f"{same_masks} of {len(names)}",
              "max_spread_points": {m: max(s[m] for s in spread.values()) for m in ("clean", "robust")},
              "spread_points": spread, "runs": runs}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    worst = sorted(spread.items(), key=lambda kv: -kv[1]["robust"])[:8]
    print(f"largest spread over {len(runs)} kernel settings: clean {result['max_spread_points']['clean']:.2f}, "
          f"robust {result['max_spread_points']['robust']:.2f} points; "
          f"per-point masks identical in {same_masks} of {len(names)} cells")
    for name, s in worst:
        print(f"  {name:45s} clean {s['clean']:5.2f}  robust {s['robust']:5.2f}")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
