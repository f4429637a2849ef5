"""The CI regression guards numbers that do not depend on the CPU.

CI runs on whichever machine submits a change. Two kernel settings stand in for two CPUs on this one: torch's
vectorised kernels (ATEN_CPU_CAPABILITY) and MKL's code path (MKL_CBWR) are where the summation order, and so
the last bits of every matmul and softmax, follow the processor. On the committed checkpoints of suites/ci.yaml
both settings must pass `rocl-bench check` against baselines/ci_digits.json, and an attack weakened by a few
steps must still fail it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rocl_bench.record import load

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "suites" / "ci.yaml"
BASELINE = ROOT / "baselines" / "ci_digits.json"
KNOBS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "DNNL_MAX_CPU_ISA", "OMP_NUM_THREADS")

AVX2_CPU = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2"}
PLAIN_CPU = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


def cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in KNOBS}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "rocl_bench", *map(str, args)], env=full, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def cells(folder: Path) -> dict[tuple, dict]:
    recs = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]
    return {(r["model"], r["attack"], r.get("source")): r for r in recs}


@pytest.fixture(scope="module")
def two_cpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The frozen CI suite evaluated under two kernel settings (an AVX2 CPU, and the plainest code path)."""
    out = []
    for name, env in (("avx2", AVX2_CPU), ("plain", PLAIN_CPU)):
        folder = tmp_path_factory.mktemp(name)
        r = cli("run", SUITE, "--out", folder, "--quiet", env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        out.append(folder)
    return out[0], out[1]


def test_frozen_suite_passes_check_under_two_kernel_settings(two_cpus):
    tol = json.loads(BASELINE.read_text())["tolerance_points"]
    for folder in two_cpus:
        r = cli("check", folder, "--against", BASELINE)
        assert r.returncode == 0, r.stdout[-2000:]
        assert "largest difference" in r.stdout           # CI prints the size of what it saw
    a, b = (cells(f) for f in two_cpus)
    # the baseline also holds the minimum-norm cells read at their budgets (record.load(...).latest())
    assert a.keys() == b.keys() and len(load(two_cpus[0]).latest()) == len(json.loads(BASELINE.read_text())["cells"])
    for key in a:                                        # the records agree within the stated tolerance
        assert abs(a[key]["robust_accuracy"] - b[key]["robust_accuracy"]) * 100 <= tol + 1e-9, key


def test_weakened_attack_fails_check(tmp_path, two_cpus):
    """The tolerance is tight enough to catch an attack that lost most of its steps (10 -> 2 PGD steps at the
    unseen ℓ∞ 0.2; at the seen 0.1, 2 steps of 1.25·ε with early stopping are as strong as 10 on these MLPs)."""
    text = SUITE.read_text().replace("../baselines/", f"{ROOT / 'baselines'}/")
    weak = text.replace("pgd_linf_2x:   {type: pgd, norm: linf, eps: 0.2, steps: 10",
                        "pgd_linf_2x:   {type: pgd, norm: linf, eps: 0.2, steps: 2")
    assert weak != text
    suite = tmp_path / "ci.yaml"
    suite.write_text(weak)
    out = tmp_path / "weak"
    r = cli("run", suite, "--out", out, "--quiet", "--only", "madry,trades,standard", env=AVX2_CPU)
    assert r.returncode == 0, r.stderr[-2000:]
    # the other models' cells come from an unweakened run, so only the weakened attack can move
    full = cells(two_cpus[0])
    with (out / "records.jsonl").open("a") as f:
        for key, rec in full.items():
            if key[0] in ("simclr_le", "rocl_rle"):
                f.write(json.dumps(rec) + "\n")
    r = cli("check", out, "--against", BASELINE)
    assert r.returncode == 1, r.stdout[-2000:]
    moved = [line for line in r.stdout.splitlines() if line.rstrip().endswith(("DROP", "RISE"))]
    assert moved and all("pgd_linf_2x" in line for line in moved), r.stdout
