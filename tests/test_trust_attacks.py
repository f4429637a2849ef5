"""Issue 16, numbers a paper can print: transfer at full strength, ℓ1 APGD as AutoAttack runs it, model and
attack identity in the cell keys, and randomized models said so in every record."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from rocl_bench.attacks import build_attack, evaluate
from rocl_bench.attacks.iterative import PGD
from rocl_bench.bench.models import ReadyModel
from rocl_bench.bench.runner import RANDOMIZED, Runner, can_shard, randomized, run_suite
from rocl_bench.bench.suite import load_suite
from rocl_bench.errors import UserError
from rocl_bench.models.loading import classifier_from_checkpoint
from rocl_bench.train import make_train_config, train

QUIET = dict(progress=False, log=lambda s: None)


def robust_count(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor) -> int:
    with torch.no_grad():
        return int(((model(x).argmax(1) == y) & (model(x_adv).argmax(1) == y)).sum())


# ---------------------------------------------------------------- 1. transfer crafted with every step
TRANSFER_SUITE = """
name: transfer-strength
seed: 0
data: {dataset: digits}
models:
  standard: {method: standard, epochs: 1}
  madry: {method: madry, epochs: 1}
attacks:
  pgd: {type: pgd, norm: linf, eps: 0.1, steps: 20}
transfer: {sources: all, attacks: [pgd]}
"""


@pytest.mark.parametrize("source_name,target_name", [("standard", "madry"), ("madry", "standard")])
def test_transfer_is_as_strong_as_torchattacks_pgd_crafted_on_the_source(source_name, target_name, request,
                                                                          tmp_path, digits_test):
    """Crafting stops no point at the first iterate fooling the source: transfer robust accuracy on the target is
    no higher than torchattacks' PGD (which takes every step) with the same eps, steps, step size and random start,
    crafted on the source and judged on the target (1 point of slack)."""
    import torchattacks

    (tmp_path / "s.yaml").write_text(TRANSFER_SUITE)
    suite = load_suite(tmp_path / "s.yaml")
    (tmp_path / "out").mkdir()
    runner = Runner(suite, tmp_path / "out", torch.device("cpu"), False, lambda s: None)
    runner.load_test_set()
    x, y = digits_test
    assert torch.equal(runner.x, x)

    def ready(name: str) -> ReadyModel:
        return ReadyModel(name, name, name, "mlp", name, None, None, request.getfixturevalue(f"{name}_mlp"))

    source, target = ready(source_name), ready(target_name)
    entry = suite.attacks["pgd"]
    runner.transfer_cell(source, entry, target, {})
    (rec,) = runner.new
    ours = int(round(rec.robust_accuracy * rec.n))
    crafted = rec.attack_spec["crafted_with"]
    assert crafted == entry.attack.for_transfer().describe() and crafted["early_stop"] is False, crafted

    pgd = entry.attack
    torch.manual_seed(0)
    ref = torchattacks.PGD(source.module, eps=pgd.eps, alpha=pgd.step, steps=pgd.steps, random_start=pgd.random_start)
    theirs = robust_count(target.module, x, y, ref(x, y))
    assert ours <= theirs + 0.01 * len(y), (ours, theirs)


def test_for_transfer_turns_off_the_early_stop_and_nothing_else():
    pgd = build_attack({"type": "pgd", "eps": 0.1, "steps": 7}, "t")
    assert "early_stop" not in pgd.describe()                 # evaluation cells keep their spec
    full = pgd.for_transfer()
    assert full.describe() == {**pgd.describe(), "early_stop": False}
    assert build_attack(full.describe(), "t") == full           # a record's spec builds what crafted it
    fgsm = build_attack({"type": "fgsm", "eps": 0.1}, "t")
    assert fgsm.for_transfer() is fgsm


# ---------------------------------------------------------------- 2. ℓ1: APGD as AutoAttack runs it
@pytest.fixture(scope="module")
def madry8(tmp_path_factory) -> nn.Module:
    """A Madry digits MLP of 8 epochs (quickstart's), where our ℓ1 PGD-20 is clearly weaker than APGD-L1."""
    cfg = make_train_config({"method": "madry", "dataset": "digits", "model": "mlp", "epochs": 8, "seed": 0,
                             "batch_size": 64}, "test")
    out = tmp_path_factory.mktemp("madry8")
    return classifier_from_checkpoint(train(cfg, out, progress=False, log=lambda s: None), out).eval()


def test_apgd_l1_with_largereps_is_not_weaker_than_our_l1_pgd(madry8, digits_test):
    """ε = 2: APGD-CE-L1 configured as AutoAttack's standard ℓ1 evaluation (larger-eps schedule, 100 steps,
    5 restarts) is at least as strong as our ℓ1 PGD-20, and our wrapper is pyautoattack's APGDAttack exactly."""
    from pyautoattack.autopgd_base import APGDAttack

    x, y = digits_test
    ours = evaluate(madry8, build_attack({"type": "pgd", "norm": "l1", "eps": 2.0, "steps": 20}, "t"), x, y)
    apgd = build_attack({"type": "apgd", "norm": "L1", "eps": 2.0, "steps": 100, "restarts": 5}, "t")
    assert apgd.largereps                                        # None: as AutoAttack does for L1
    res = evaluate(madry8, apgd, x, y, batch_size=len(y), seed=0, return_adv=True)
    assert int(res.robust.sum()) <= int(ours.robust.sum()) + 0.01 * len(y), (res.robust.sum(), ours.robust.sum())
    assert int(res.robust.sum()) < int(res.clean_correct.sum())

    clean = res.clean_correct
    direct = APGDAttack(madry8, n_iter=100, norm="L1", n_restarts=5, eps=2.0, seed=0, loss="ce", eot_iter=1,
                        rho=0.75, verbose=False, device=x.device, use_largereps=True)
    with torch.random.fork_rng():
        x_direct = direct.perturb(x[clean], y[clean])
    assert torch.equal(res.x_adv[clean], x_direct)
    with torch.no_grad():
        assert torch.equal(res.robust[clean], madry8(x_direct).argmax(1) == y[clean])


def test_apgd_largereps_spec_and_refusals(madry8, digits_test):
    x, y = digits_test
    assert "use_largereps" not in build_attack({"type": "apgd", "eps": 0.1}, "t").describe()
    assert not build_attack({"type": "apgd", "eps": 0.1}, "t").largereps
    off = build_attack({"type": "apgd", "norm": "l1", "eps": 2.0, "use_largereps": False}, "t")
    assert not off.largereps and off.describe()["use_largereps"] is False
    with pytest.raises(UserError, match=r"t\.use_largereps: .*norm l1 only, not linf"):
        build_attack({"type": "apgd", "eps": 0.1, "use_largereps": True}, "t")
    with pytest.raises(UserError, match=r"t\.steps: .*at least 2"):
        build_attack({"type": "apgd", "norm": "l1", "eps": 2.0, "steps": 1}, "t")
    # APGD-DLR-L1 runs (pyautoattack supports it) and stays in the ball (evaluate checks every batch)
    dlr = evaluate(madry8, build_attack({"type": "apgd", "norm": "l1", "eps": 2.0, "steps": 10, "loss": "dlr"}, "t"),
                   x[:60], y[:60])
    assert int(dlr.robust.sum()) < int(dlr.clean_correct.sum())


# ---------------------------------------------------------------- 3. identity: factory source, attack revision
NETS = """import torch

def make_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, WIDTH), torch.nn.ReLU(),
                               torch.nn.Linear(WIDTH, 10))

def make_other():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
"""

FACTORY_SUITE = """
name: factories
seed: 0
data: {dataset: digits, test_limit: 60}
models:
  net: {factory: 'MODULE:make_net'}
  other: {factory: 'MODULE:make_other'}
attacks:
  clean: {type: clean}
  pgd: {type: pgd, norm: linf, eps: 0.05, steps: 3}
  fgsm: {type: fgsm, eps: 0.05}
transfer: {sources: all, attacks: [pgd, fgsm]}
"""


def _factory_suite(tmp_path: Path, module: str, width: int = 32) -> Path:
    (tmp_path / f"{module}.py").write_text(NETS.replace("WIDTH", str(width)))
    (tmp_path / "s.yaml").write_text(FACTORY_SUITE.replace("MODULE", module))
    return tmp_path / "s.yaml"


def _lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]


def test_editing_a_factory_file_reruns_its_cells_and_nothing_else(tmp_path):
    suite = _factory_suite(tmp_path, "t16_nets_edit")
    first = run_suite(suite, out=str(tmp_path / "o"), **QUIET)
    assert len(first) == 2 * 3 + 4
    again = run_suite(suite, out=str(tmp_path / "o"), **QUIET)
    assert len(_lines(tmp_path / "o")) == len(first)              # unchanged: nothing re-runs
    assert [r.to_dict() for r in again] == [r.to_dict() for r in first]
    _factory_suite(tmp_path, "t16_nets_edit", width=48)           # same file, another network
    log: list[str] = []
    edited = run_suite(suite, out=str(tmp_path / "o"), progress=False, log=log.append)
    new = _lines(tmp_path / "o")[len(first):]
    # the file defines both factories, so both models are new: every cell runs again
    assert len(new) == len(first) and {r["model"] for r in new} == {"net", "other"}
    key = {r.model: r.model_key for r in first}
    assert all(r.model_key != key[r.model] for r in edited)
    assert any("net" in line and "pgd" in line for line in log)
    # and the records are those of the edited network (reloaded, not the module imported before)
    net = next(r for r in edited if r.model == "net" and r.attack == "clean")
    old = next(r for r in first if r.model == "net" and r.attack == "clean")
    assert net.clean_mask != old.clean_mask or net.clean_accuracy != old.clean_accuracy


def test_a_factory_key_includes_its_checkpoint(tmp_path):
    suite = _factory_suite(tmp_path, "t16_nets_ckpt")
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    torch.save(net.state_dict(), tmp_path / "w.pt")
    text = suite.read_text().replace("make_other'}", "make_other', checkpoint: w.pt}")
    suite.write_text(text)
    first = {r.model: r.model_key for r in run_suite(suite, out=str(tmp_path / "o"), **QUIET)}
    torch.manual_seed(4)
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).state_dict(), tmp_path / "w.pt")
    second = {r.model: r.model_key for r in run_suite(suite, out=str(tmp_path / "o"), **QUIET)}
    assert first["net"] == second["net"] and first["other"] != second["other"]


def test_bumping_an_attacks_revision_reruns_only_its_cells(tmp_path, monkeypatch):
    suite = _factory_suite(tmp_path, "t16_nets_rev")
    first = run_suite(suite, out=str(tmp_path / "o"), **QUIET)
    monkeypatch.setattr(PGD, "revision", PGD.revision + 1)
    run_suite(suite, out=str(tmp_path / "o"), **QUIET)
    new = _lines(tmp_path / "o")[len(first):]
    # the pgd cells of both models, and the transfer cells crafted with pgd; clean, fgsm and fgsm transfer stay
    assert sorted((r["model"], r["attack"]) for r in new) == [
        ("net", "pgd"), ("net", "transfer:pgd"), ("other", "pgd"), ("other", "transfer:pgd")]


# ---------------------------------------------------------------- 4. randomized models
NOISY = """import torch

class Noisy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x + 0.05 * torch.randn_like(x))

def make_noisy():
    return Noisy()

def make_plain():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
"""


def test_a_randomized_model_is_warned_in_every_record_and_never_sharded(tmp_path):
    (tmp_path / "t16_noisy.py").write_text(NOISY)
    (tmp_path / "s.yaml").write_text(
        "name: noisy\nseed: 0\ndata: {dataset: digits, test_limit: 60}\nmodels:\n"
        "  noisy: {factory: 't16_noisy:make_noisy'}\n  plain: {factory: 't16_noisy:make_plain'}\n"
        "attacks:\n  clean: {type: clean}\n  pgd: {type: pgd, eps: 0.05, steps: 3}\n"
        "transfer: {sources: all, attacks: [pgd]}\n")
    records = run_suite(tmp_path / "s.yaml", out=str(tmp_path / "o"), **QUIET)
    assert {r.model for r in records} == {"noisy", "plain"} and len(records) == 6
    for rec in records:
        assert (RANDOMIZED in rec.warnings) == (rec.model == "noisy"), (rec.model, rec.attack, rec.warnings)
    # the predicate the runner shards by
    from rocl_bench.bench.models import prepare_models
    suite = load_suite(tmp_path / "s.yaml")
    models = prepare_models(suite, tmp_path / "o", torch.device("cpu"), ["noisy", "plain"], False, lambda s: None)
    x = torch.rand(16, 1, 8, 8)
    state = torch.random.get_rng_state()
    assert randomized(models["noisy"].module, x) and not randomized(models["plain"].module, x)
    assert torch.equal(torch.random.get_rng_state(), state)        # the caller's RNG did not move
    for m in models.values():
        m.randomized = randomized(m.module, x)
    pgd = build_attack({"type": "pgd", "eps": 0.05}, "t")
    assert can_shard(pgd, models["plain"]) and not can_shard(pgd, models["noisy"])
    assert not can_shard(pgd, models["plain"], models["noisy"])    # a transfer cell from or onto it


def test_a_smoothed_model_is_randomized_without_being_called():
    from rocl_bench.models.smoothing import SmoothedClassifier

    calls = []

    class Spy(nn.Module):
        def forward(self, x):
            calls.append(1)
            return x.flatten(1)[:, :10]

    smooth = SmoothedClassifier(Spy(), samples=2)
    assert randomized(smooth, torch.rand(4, 1, 8, 8)) and not calls
    assert not can_shard(build_attack({"type": "clean"}, "t"),
                         ReadyModel("s", "s", "s", "mlp", "k", None, None, smooth))
