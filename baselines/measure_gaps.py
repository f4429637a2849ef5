"""Measure the numbers behind the weak-attack and per-point alarms (bench/sanity.py: DEFAULT_MARGIN, FLOOR, SHARE).

For every model of the committed results folders: the largest same-budget gap between a white-box cell and the
strongest other attack at its norm and ε (`sanity.attack_gaps`, what the weak-attack alarm compares with its
margin), and the largest number of points fooled at a smaller ε that a white-box cell at a larger ε leaves robust
(`sanity.inconsistent_points`, what the per-point alarm compares with FLOOR). Models are grouped as the
margin must treat them: normal (standard, Madry, RoCL / SimCLR linear, robust-linear and fine-tuned), TRADES, and
the rest.

    python baselines/measure_gaps.py                # the committed folders
    python baselines/measure_gaps.py --saturated    # plus a tiny suite: the CI standard and Madry MLPs, and the
                                                    # same MLPs with their logits multiplied by 1e4 (CPU, ~1 min)

The figures the margin was chosen from are in bench/sanity.py's docstring.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("results/mnist", "results/cifar10_jpeg_small", "results/ci", "results/ci_train")
NORMAL = ("standard", "madry", "linear", "robust-linear", "finetune")

SUITE = """\
name: saturated
seed: 0
device: cpu
data: {dataset: digits, test_limit: 200}
models:
  standard: {factory: 'trust_nets:standard'}
  madry: {factory: 'trust_nets:madry'}
  standard_x1e4: {factory: 'trust_nets:saturated'}
  madry_x1e4: {factory: 'trust_nets:madry_x1e4'}
attacks:
  clean: {type: clean}
  pgd_ce: {type: pgd, norm: linf, eps: 0.1, steps: 10}
  pgd_cw: {type: pgd, norm: linf, eps: 0.1, steps: 10, loss: cw}
  apgd_dlr: {type: apgd, norm: linf, eps: 0.1, steps: 20, loss: dlr}
"""


def group_of(method: str | None) -> str:
    if method == "trades":
        return "trades"
    return "normal" if method in NORMAL else "other"


def measure(records: list, where: str) -> list[tuple]:
    """Per model: (folder, model, method, group, largest gap in points, its share of what the stronger attack
    fools, largest inconsistent count, n, which cells, whether any weak-attack alarm fires)."""
    from rocl_bench.bench.sanity import attack_gaps, inconsistent_points, weak

    out = []
    models = {r.model: r.method for r in records}
    gaps, incons = attack_gaps(records), inconsistent_points(records)
    for model, method in models.items():
        g = [x for x in gaps if x.weaker.model == model]
        top = max(g, key=lambda x: x.gap, default=None)
        share = max((x.gap / max(x.weaker.clean_accuracy - x.stronger.robust_accuracy, 1e-9) for x in g
                     if x.gap > 0 and x.weaker.clean_accuracy is not None), default=0.0)
        count = max((i.count for i in incons if i.cell.model == model), default=0)
        n = next((r.n for r in records if r.model == model and r.n), 0)
        what = (f"{top.weaker.attack} vs {top.stronger.attack} @ {top.weaker.threat[1]} {top.weaker.threat[2]:g}"
                if top else "-")
        out.append((where, model, str(method), group_of(method), 100 * top.gap if top else 0.0, share, count, n,
                    what, any(weak(x) for x in g)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saturated", action="store_true", help="also run the x1e4-logit suite (CPU, ~1 min)")
    args = parser.parse_args(argv)
    from rocl_bench.record import load

    rows = []
    for folder in FOLDERS:
        path = ROOT / folder
        if (path / "records.jsonl").is_file():
            rows += measure(load(path).latest(), folder)
    if args.saturated:
        from rocl_bench.bench.runner import run_suite

        with tempfile.TemporaryDirectory() as tmp:
            sys.path.insert(0, str(ROOT / "baselines" / "ci_models"))     # trust_nets.py: the factories
            (Path(tmp) / "saturated.yaml").write_text(SUITE)
            recs = run_suite(Path(tmp) / "saturated.yaml", out=str(Path(tmp) / "out"), progress=False,
                             log=lambda s: None)
            sys.path.remove(str(ROOT / "baselines" / "ci_models"))
            sys.modules.pop("trust_nets", None)
            for r in recs:
                print(f"  saturated {r.model:<14} {r.attack:<9} robust {100 * r.robust_accuracy:5.1f}")
            rows += [(r[0], r[1], "x1e4" if "x1e4" in r[1] else r[2], "x1e4" if "x1e4" in r[1] else r[3], *r[4:])
                     for r in measure(recs, "saturated suite")]
    print(f"{'folder':<28} {'model':<20} {'method':<14} {'group':<7} {'gap':>5} {'share':>5} {'points':>8} "
          f"{'alarm':>5}  largest gap between")
    for w, m, meth, g, gap, share, c, n, what, fires in rows:
        print(f"{w:<28} {m:<20} {meth:<14} {g:<7} {gap:5.1f} {share:5.2f} {f'{c}/{n}':>8} {'yes' if fires else '':>5}"
              f"  {what}")
    for group in ("normal", "trades", "other", "x1e4"):
        mine = [r for r in rows if r[3] == group]
        if mine:
            print(f"largest over {group}: gap {max(r[4] for r in mine):.1f} points, share "
                  f"{max(r[5] for r in mine if r[4] > 5) if any(r[4] > 5 for r in mine) else 0:.2f} (gaps > 5 "
                  f"points), {max(r[6] / r[7] for r in mine):.1%} inconsistent points; weak-attack alarm on "
                  f"{sum(r[9] for r in mine)} of {len(mine)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
