"""Trustworthy numbers: the runner's alarms fire on models built to trigger them, and stay quiet on a normal one.

Models (suite `factory:` entries, written into tmp_path):
- `standard`: a normally trained digits MLP. No alarm.
- `quantized`: the same MLP behind a rounding layer (5 grey levels). torch.round has zero gradient, so white-box
  PGD only gets its random start, while the score-based Square attack and PGD examples transferred from
  `standard` fool it: gradient masking. pyautoattack's APGD (DLR loss, where it checks) reports the zero
  gradients.
- `trap`: memorises the test set and answers wrongly only for points slightly moved (linf 0 < d <= 0.12) from
  one; no gradient. PGD at eps 0.05 (random start within 0.05) fools it, PGD at eps 0.3 does not: robust
  accuracy rises with eps.
- `randomized`: the MLP on inputs with Gaussian noise from its own generator: clean accuracy differs between
  cells, and pyautoattack's AutoAttack reports a randomized defence.
"""
from __future__ import annotations

import sys

import pytest
import torch

from rocl_bench.bench.runner import run_suite
from rocl_bench.bench.sanity import cell_warnings
from rocl_bench.record import Record

from util import quick_train

NETS = """\
import torch
import torch.nn.functional as F
from torch import nn

from rocl_bench.models.loading import classifier_from_checkpoint
from rocl_bench.train import load_checkpoint

CKPT = {ckpt!r}


def _mlp():
    return classifier_from_checkpoint(load_checkpoint(CKPT), CKPT)


def standard():
    return _mlp()


class Quantized(nn.Module):
    def __init__(self, clf, levels=4):
        super().__init__()
        self.clf, self.levels = clf, levels

    def forward(self, x):
        return self.clf(torch.round(x * self.levels) / self.levels)


def quantized():
    return Quantized(_mlp())


class Trap(nn.Module):
    def __init__(self):
        super().__init__()
        from rocl_bench.data import load_dataset

        x, y = load_dataset("digits", False).batch()
        self.register_buffer("known", x.flatten(1))
        self.register_buffer("labels", y)

    def forward(self, x):
        flat = x.flatten(1)
        with torch.no_grad():
            dist, idx = (flat[:, None, :] - self.known[None]).abs().amax(-1).min(1)
            label = self.labels[idx]
            moved = (dist > 1e-6) & (dist <= 0.12)
            logits = 10.0 * F.one_hot(torch.where(moved, (label + 1) % 10, label), 10).float()
        return logits + 0.0 * flat.sum(1, keepdim=True)


def trap():
    return Trap()


class Randomized(nn.Module):
    def __init__(self, clf, sigma=0.4):
        super().__init__()
        self.clf, self.sigma = clf, sigma
        self.g = torch.Generator().manual_seed(0)

    def forward(self, x):
        return self.clf(x + self.sigma * torch.randn(x.shape, generator=self.g).to(x.device))


def randomized():
    return Randomized(_mlp())
"""

SUITE = """\
name: alarms
seed: 0
device: cpu
data: {dataset: digits, test_limit: 100}
models:
  standard: {factory: 'alarmnets:standard'}
  quantized: {factory: 'alarmnets:quantized'}
  trap: {factory: 'alarmnets:trap'}
  randomized: {factory: 'alarmnets:randomized'}
attacks:
  clean: {type: clean}
  pgd_small: {type: pgd, norm: linf, eps: 0.05, steps: 10}
  pgd: {type: pgd, norm: linf, eps: 0.3, steps: 10}
  square: {type: square, norm: linf, eps: 0.3, queries: 300}
  apgd: {type: apgd, norm: linf, eps: 0.3, steps: 20, loss: dlr}
  aa: {type: autoattack, norm: linf, eps: 0.3, version: custom, attacks: [apgd-ce]}
transfer: {sources: [standard], attacks: [pgd]}
"""


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("alarms")
    quick_train(root / "mlp", method="standard", epochs=10, batch_size=64)
    (root / "alarmnets.py").write_text(NETS.format(ckpt=str(root / "mlp" / "checkpoint.pt")))
    (root / "alarms.yaml").write_text(SUITE)
    log: list[str] = []
    try:
        recs = run_suite(root / "alarms.yaml", out=str(root / "out"), progress=False, log=log.append)
    finally:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(False)      # run_suite turned it on for this whole process
        sys.modules.pop("alarmnets", None)
    return {(r.model, r.attack): r.to_dict() for r in recs}, log


def warnings_of(records, model, attack):
    return " | ".join(records[(model, attack)]["warnings"])


def test_a_normally_trained_model_raises_no_alarm(records):
    recs, log = records
    mine = [r for (m, _), r in recs.items() if m == "standard"]
    assert len(mine) == 6
    assert all(r["warnings"] == [] and r["flags"] == [] for r in mine), [r["warnings"] for r in mine]
    assert recs[("standard", "clean")]["clean_accuracy"] > 0.85
    assert recs[("standard", "pgd")]["robust_accuracy"] < 0.1        # the attack works on it
    assert not any(line.startswith("  warning: standard") for line in log)


def test_gradient_masking_black_box_and_transfer_beat_white_box(records):
    recs, log = records
    pgd = recs[("quantized", "pgd")]["robust_accuracy"]
    assert pgd > recs[("quantized", "square")]["robust_accuracy"] + 0.1        # the model is built for this
    assert "black-box square beats white-box pgd at linf eps=0.3" in warnings_of(recs, "quantized", "square")
    assert "black-box transfer:pgd beats white-box pgd" in warnings_of(recs, "quantized", "transfer:pgd")
    assert recs[("quantized", "transfer:pgd")]["source"] == "standard"
    assert any(line.startswith("  warning: quantized / square") for line in log)
    # pyautoattack's own gradient check
    apgd = warnings_of(recs, "quantized", "apgd")
    assert "pyautoattack flagged this model" in apgd and "zero gradient" in apgd
    assert any("zero gradient" in f for f in recs[("quantized", "apgd")]["flags"])


def test_robust_accuracy_rising_with_eps_is_flagged(records):
    recs, _ = records
    small, large = recs[("trap", "pgd_small")], recs[("trap", "pgd")]
    assert large["robust_accuracy"] > small["robust_accuracy"] + 0.5          # the model is built for this
    assert "robust accuracy rises with eps for linf (pgd_small eps=0.05" in warnings_of(recs, "trap", "pgd")
    assert recs[("trap", "clean")]["warnings"] == []


def test_a_randomized_model_is_flagged(records):
    recs, _ = records
    clean = {a: r["clean_accuracy"] for (m, a), r in recs.items() if m == "randomized" and a != "transfer:pgd"}
    assert len(set(clean.values())) > 1                                        # the model is built for this
    assert any("clean accuracy differs between cells" in w for (m, _), r in recs.items() if m == "randomized"
               for w in r["warnings"])
    aa = warnings_of(recs, "randomized", "aa")
    assert "pyautoattack flagged this model" in aa and "randomized defense" in aa


def _rec(attack, kind, robust, eps=0.3, clean=0.9, norm="linf", model="m"):
    spec = {"type": kind, "norm": norm, "eps": eps} if kind != "transfer" else \
        {"type": "transfer", "source": "s", "crafted_with": {"type": "pgd", "norm": norm, "eps": eps}}
    return Record.from_dict({"model": model, "attack": attack, "attack_spec": spec, "robust_accuracy": robust,
                             "clean_accuracy": clean})


@pytest.mark.parametrize("first,second,needle", [
    (_rec("pgd", "pgd", 0.6), _rec("square", "square", 0.2), "black-box square beats white-box pgd"),
    (_rec("square", "square", 0.2), _rec("pgd", "pgd", 0.6), "black-box square beats white-box pgd"),
    (_rec("small", "pgd", 0.1, eps=0.1), _rec("large", "pgd", 0.5), "rises with eps"),
    (_rec("large", "pgd", 0.5), _rec("small", "pgd", 0.1, eps=0.1), "rises with eps"),
    (_rec("clean", "clean", 0.9, clean=0.9), _rec("pgd", "pgd", 0.1, clean=0.8), "clean accuracy differs"),
])
def test_alarms_do_not_depend_on_the_order_of_the_suite(first, second, needle):
    assert any(needle in w for w in cell_warnings(second, [first]))


def test_no_alarm_within_one_point_or_across_models_norms_and_budgets():
    base = _rec("pgd", "pgd", 0.50)
    assert cell_warnings(_rec("square", "square", 0.495), [base]) == []          # within one point
    assert cell_warnings(_rec("square", "square", 0.1, model="other"), [base]) == []
    assert cell_warnings(_rec("square", "square", 0.1, norm="l2"), [base]) == []
    assert cell_warnings(_rec("square", "square", 0.1, eps=0.2), [base]) == []
    assert cell_warnings(_rec("large", "pgd", 0.2, eps=0.5), [base]) == []       # falls with eps, as it should
    transfer = _rec("transfer:pgd", "transfer", 0.2, clean=0.7)
    assert [w for w in cell_warnings(transfer, [base]) if "clean accuracy" in w] == []
