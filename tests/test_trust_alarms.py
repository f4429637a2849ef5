"""The weak-attack and per-point alarms (bench/sanity.suite_warnings) fire on models built to trigger them and stay
quiet on normal ones.

End to end (a tiny suite through run_suite, on the committed CI checkpoints, so nothing is trained):
- `standard`, `madry`: the CI digits MLPs. No alarm.
- `saturated`: the standard MLP with its logits multiplied by 1e4. Softmax saturates and cross-entropy gradients
  vanish, so PGD-CE does nothing while APGD-DLR (a margin loss) fools as on the plain MLP: a weak attack.
- `quantized`: the standard MLP behind torch.round (zero gradient). White-box PGD gets only its random start;
  Square at ε=0.1 fools points that PGD at ε=0.2 leaves robust: the per-point ε-order alarm.
Record-level cases build Records directly, with masks, to pin the rules and the messages.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rocl_bench.bench.runner import run_suite
from rocl_bench.bench.sanity import DEFAULT_MARGIN, FLOOR, check_margin, suite_warnings
from rocl_bench.errors import UserError
from rocl_bench.record import Record, encode_mask

CI_MODELS = Path(__file__).resolve().parents[1] / "baselines" / "ci_models"

SUITE = """\
name: trust
seed: 0
device: cpu
data: {dataset: digits, test_limit: 100}
models:
  standard: {factory: 'trust_nets:standard'}
  madry: {factory: 'trust_nets:madry'}
  saturated: {factory: 'trust_nets:saturated'}
  quantized: {factory: 'trust_nets:quantized'}
attacks:
  clean: {type: clean}
  pgd: {type: pgd, norm: linf, eps: 0.1, steps: 10}
  apgd_dlr: {type: apgd, norm: linf, eps: 0.1, steps: 20, loss: dlr}
  square: {type: square, norm: linf, eps: 0.1, queries: 300}
  pgd_2x: {type: pgd, norm: linf, eps: 0.2, steps: 10}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trust")
    sys.path.insert(0, str(CI_MODELS))                # the factories: baselines/ci_models/trust_nets.py
    (root / "trust.yaml").write_text(SUITE)
    try:
        recs = run_suite(root / "trust.yaml", out=str(root / "out"), progress=False, log=lambda s: None)
    finally:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(False)
        sys.path.remove(str(CI_MODELS))
        sys.modules.pop("trust_nets", None)
    chance = 0.11
    return {r.cell[:2]: r for r in recs}, suite_warnings(recs, chance=chance), recs, root / "out"


def _joined(warnings, model, attack):
    return " | ".join(warnings[(model, attack, None)])


def test_normal_standard_and_madry_models_raise_no_alarm(run):
    recs, warnings, *_ = run
    for model in ("standard", "madry"):
        mine = {c: w for c, w in warnings.items() if c[0] == model}
        assert len(mine) == 5 and all(w == () for w in mine.values()), mine
    assert recs[("standard", "pgd")].robust_accuracy < recs[("madry", "pgd")].robust_accuracy   # the attack works


def test_a_saturated_logit_model_is_a_weak_attack_for_pgd_ce(run):
    recs, warnings, *_ = run
    pgd, dlr = recs[("saturated", "pgd")], recs[("saturated", "apgd_dlr")]
    assert pgd.robust_accuracy > dlr.robust_accuracy + 0.2                      # the model is built for this
    text = _joined(warnings, "saturated", "pgd")
    assert f"pgd is {100 * (pgd.robust_accuracy - dlr.robust_accuracy):.1f} points weaker than apgd_dlr on model " \
           f"saturated at linf ε=0.1: a weak attack or gradient masking" in text
    assert "weaker than" not in _joined(warnings, "saturated", "apgd_dlr")      # only the weaker cell is marked


def test_a_zero_gradient_model_fails_the_per_point_eps_order(run):
    recs, warnings, *_ = run
    square = recs[("quantized", "square")].robust()
    large = recs[("quantized", "pgd_2x")].robust()
    assert int((~square & large).sum()) > FLOOR * 100                            # the model is built for this
    text = _joined(warnings, "quantized", "pgd_2x")
    assert "point(s) fooled at linf ε=0.1 (by " in text and "square" in text and \
        "survive pgd_2x at the larger ε=0.2" in text
    assert "black-box square beats white-box pgd" in _joined(warnings, "quantized", "square")


def test_suite_warnings_do_not_depend_on_the_order_of_the_records(run):
    _, warnings, recs, _ = run
    assert suite_warnings(list(reversed(recs)), chance=0.11) == warnings
    # the runner's per-cell alarms (computed as cells finished) are a subset of the full list
    for r in recs:
        assert set(r.warnings) <= set(warnings[r.cell]), r.cell


# ------------------------------------------------------------------------------------------ records
def _rec(attack, kind, robust, eps=0.3, clean=0.9, norm="linf", model="m", mask=None, n=None):
    spec = {"type": kind, "norm": norm, "eps": eps} if kind != "transfer" else \
        {"type": "transfer", "source": "s", "crafted_with": {"type": "pgd", "norm": norm, "eps": eps}}
    fields = {"model": model, "attack": attack, "attack_spec": spec, "robust_accuracy": robust,
              "clean_accuracy": clean}
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        fields.update(n=len(mask), robust_mask=encode_mask(mask), clean_mask=encode_mask(np.ones(len(mask), bool)),
                      robust_accuracy=float(mask.mean()), clean_accuracy=1.0)
    return Record.from_dict(fields)


def test_weak_attack_rule():
    pgd, dlr = _rec("pgd", "pgd", 0.70), _rec("dlr", "apgd", 0.45)           # 25 points > the margin
    w = suite_warnings([pgd, dlr])
    assert any("pgd is 25.0 points weaker than dlr on model m at linf ε=0.3" in x for x in w[pgd.cell])
    assert w[dlr.cell] == ()
    assert suite_warnings([_rec("pgd", "pgd", 0.60), dlr])[pgd.cell] == ()    # 15 points, 1/3 of 45: no alarm
    # on a robust model: 12 points, but all that the stronger attack fools (clean 0.9, PGD does nothing)
    assert suite_warnings([_rec("pgd", "pgd", 0.9), _rec("dlr", "apgd", 0.78)])[("m", "pgd", None)]
    # below the floor, a large share is noise
    assert suite_warnings([_rec("pgd", "pgd", 0.9), _rec("dlr", "apgd", 0.87)])[("m", "pgd", None)] == ()
    # a black-box attack weaker than a white-box one is expected; so is a cheap one-step attack (FGSM declares
    # `cheap`), which still serves as the stronger rival of others; a transfer cell is never compared
    assert suite_warnings([_rec("f", "fgsm", 0.8), dlr])[("m", "f", None)] == ()
    assert suite_warnings([pgd, _rec("f", "fgsm", 0.45)])[pgd.cell]
    assert suite_warnings([_rec("sq", "square", 0.8), dlr])[("m", "sq", None)] == ()
    assert suite_warnings([_rec("t", "transfer", 0.8), dlr])[("m", "t", None)] == ()
    # other budgets, norms and models are not the same threat
    for other in (_rec("dlr", "apgd", 0.1, eps=0.2), _rec("dlr", "apgd", 0.1, norm="l2"),
                  _rec("dlr", "apgd", 0.1, model="o")):
        assert suite_warnings([pgd, other])[pgd.cell] == ()
    # the margin is the caller's: a tighter one fires on the 15-point gap
    assert suite_warnings([_rec("pgd", "pgd", 0.60), dlr], margin=0.1)[pgd.cell]


def test_per_point_eps_order():
    n = 100
    fooled_small = np.ones(n, bool)
    fooled_small[:10] = False                       # ten points fooled at eps 0.1 ...
    large = np.ones(n, bool)
    large[10:40] = False                            # ... that pgd at 0.3 leaves robust (it fools others)
    small = _rec("small", "square", 0, eps=0.1, mask=fooled_small)
    big = _rec("big", "pgd", 0, eps=0.3, mask=large)
    w = suite_warnings([big, small])
    assert any(x.startswith("10 point(s) fooled at linf ε=0.1 (by small) survive big at the larger ε=0.3")
               for x in w[big.cell]), w
    assert w[small.cell] == ()
    few = fooled_small.copy()
    few[:5] = True                                  # five points: 5 % of the test set is noise
    assert suite_warnings([big, _rec("small", "square", 0, eps=0.1, mask=few)])[big.cell] == ()
    # a point is fooled at a budget if ANY attack there fooled it: two attacks, five points each
    a, b = np.ones(n, bool), np.ones(n, bool)
    a[:5], b[5:10] = False, False
    w = suite_warnings([big, _rec("a", "pgd", 0, eps=0.1, mask=a), _rec("b", "transfer", 0, eps=0.1, mask=b)])
    assert any(x.startswith("10 point(s) fooled at linf ε=0.1 (by a, b)") for x in w[big.cell]), w


def test_a_bad_margin_is_one_line_naming_it():
    assert check_margin(DEFAULT_MARGIN) == DEFAULT_MARGIN
    for bad in (-0.1, 1.5, float("nan"), "0.2", True):
        with pytest.raises(UserError, match=r"^margin: .* not a fraction of the test set in \[0, 1\]; use e\.g\. 0\.2") as e:
            suite_warnings([_rec("pgd", "pgd", 0.5)], margin=bad)
        assert "\n" not in str(e.value)


def test_the_run_rewrites_a_record_whose_alarm_needed_a_later_cell(run):
    """pgd runs before apgd_dlr, so its weak-attack alarm is only known at the end of the run: the runner
    appends the record again with the full list, and the latest line per cell (what tables read) carries it."""
    from rocl_bench.record import load

    recs, warnings, *_ = run
    assert any("weaker than apgd_dlr" in w for w in recs[("saturated", "pgd")].warnings)
    for rec in recs.values():
        assert rec.warnings == warnings[rec.cell], rec.cell
    latest = {r.cell: r for r in load(run[3]).latest()}
    assert latest[("saturated", "pgd", None)].warnings == warnings[("saturated", "pgd", None)]
