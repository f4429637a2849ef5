"""`rocl-bench run`: records, resume, changed cells, transfer, lock, API, CLI."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rocl_bench
from rocl_bench.bench.runner import run_suite
from rocl_bench.errors import UserError
from rocl_bench.record import SCHEMA, decode_mask

SUITE = """
name: tiny
seed: 0
data: {dataset: digits, train_limit: 300, test_limit: 120}
models:
  standard: {label: Standard, method: standard, epochs: 3, batch_size: 64}
  madry: {label: Madry AT, method: madry, epochs: 3, batch_size: 64}
attacks:
  clean: {type: clean}
  pgd_small: {type: pgd, norm: linf, eps: 0.05, steps: 10, seen: true}
  pgd_large: {type: pgd, norm: linf, eps: 0.15, steps: 10}
  pgd_l1: {type: pgd, norm: l1, eps: 2.0, steps: 10}
transfer: {sources: all, attacks: [pgd_small]}
"""

QUIET = dict(progress=False, log=lambda s: None)
REQUIRED = ("suite", "model", "method", "dataset", "split", "n", "attack", "attack_spec", "clean_accuracy",
            "robust_accuracy", "seconds", "seed", "config_hash", "checkpoint_sha256", "versions", "git_commit",
            "device", "timestamp", "robust_mask", "peak_memory_mb", "train_seconds", "warnings", "flags")


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    (root / "tiny.yaml").write_text(SUITE)
    records = [r.to_dict() for r in run_suite(root / "tiny.yaml", out=str(root / "out"), **QUIET)]
    return root, records


def test_records_hold_every_cell_with_provenance(first_run):
    root, records = first_run
    assert len(records) == 2 * 4 + 2              # 8 white-box cells, 2 transfer cells
    lines = (root / "out" / "records.jsonl").read_text().splitlines()
    assert len(lines) == len(records)
    for rec in map(json.loads, lines):
        for key in REQUIRED:
            assert key in rec, key
        assert rec["n"] == 120 and rec["dataset"] == "digits" and rec["schema"] == SCHEMA
        assert 0 <= rec["robust_accuracy"] <= rec["clean_accuracy"] <= 1
        for lib in ("torch", "torchattacks", "pyautoattack", "rocl_bench"):
            assert lib in rec["versions"]
    assert (root / "out" / "test_indices.json").exists()


def test_robust_mask_matches_accuracy_and_implies_clean_correct(first_run):
    _, records = first_run
    for rec in records:
        robust = decode_mask(rec["robust_mask"], rec["n"])
        clean = decode_mask(rec["clean_mask"], rec["n"])
        assert robust.mean() == pytest.approx(rec["robust_accuracy"])
        assert not (robust & ~clean).any()


def test_madry_beats_standard_and_accuracy_falls_with_eps(first_run):
    _, records = first_run
    acc = {(r["model"], r["attack"]): r["robust_accuracy"] for r in records}
    assert acc[("madry", "pgd_small")] > acc[("standard", "pgd_small")]
    for m in ("standard", "madry"):
        assert acc[(m, "pgd_large")] <= acc[(m, "pgd_small")] <= acc[(m, "clean")]
    assert all(not r["warnings"] for r in records if r["attack_spec"]["type"] != "transfer")


def test_rerun_reuses_every_cell_and_model(first_run):
    root, records = first_run
    before = (root / "out" / "records.jsonl").read_bytes()
    again = run_suite(root / "tiny.yaml", out=str(root / "out"), **QUIET)
    assert (root / "out" / "records.jsonl").read_bytes() == before
    assert [r.to_dict() for r in again] == records              # the reused cells, read back from the file


def test_changed_attack_reruns_only_its_cells(first_run, tmp_path):
    root, _ = first_run
    import shutil
    shutil.copytree(root / "out", tmp_path / "out")
    (tmp_path / "tiny.yaml").write_text(SUITE.replace("eps: 0.15", "eps: 0.2"))
    before = len((tmp_path / "out" / "records.jsonl").read_text().splitlines())
    log = []
    run_suite(tmp_path / "tiny.yaml", out=str(tmp_path / "out"), progress=False, log=log.append)
    after = (tmp_path / "out" / "records.jsonl").read_text().splitlines()
    assert len(after) == before + 2
    assert {json.loads(x)["attack"] for x in after[before:]} == {"pgd_large"}
    assert not any(line.startswith("training") for line in log)


def test_a_record_without_clean_accuracy_is_rerun_not_a_crash(first_run, tmp_path):
    """Issue 17: a record lacking clean_accuracy passed the record check, and once another cell of the same model
    was missing every `run` raised KeyError in the alarms. Now it fails the run's schema: reported, re-run."""
    import shutil
    shutil.copytree(first_run[0] / "out", tmp_path / "out")
    lines = (tmp_path / "out" / "records.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    broken = next(i for i, r in enumerate(recs) if r["model"] == "standard" and r["attack"] == "clean")
    gone = next(i for i, r in enumerate(recs) if r["model"] == "standard" and r["attack"] == "pgd_large")
    del recs[broken]["clean_accuracy"]
    kept = [json.dumps(r) for i, r in enumerate(recs) if i != gone]
    (tmp_path / "out" / "records.jsonl").write_text("\n".join(kept) + "\n")
    log: list[str] = []
    again = run_suite(first_run[0] / "tiny.yaml", out=str(tmp_path / "out"), progress=False, log=log.append)
    assert any(f"records.jsonl:{broken + 1}: cannot be reused (missing field(s) clean_accuracy)" in line
               for line in log), log
    after = [json.loads(x) for x in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert {(r["model"], r["attack"]) for r in after[len(kept):]} == {("standard", "clean"), ("standard", "pgd_large")}
    assert len(again) == len(first_run[1]) and all(r.clean_accuracy is not None for r in again)


def test_a_model_at_chance_level_is_warned_in_its_records(tmp_path):
    """Zero weights predict one class for every input: its accuracy is the share of that class, and every record
    of the model says so (a broken or untrained model's robust accuracy means nothing)."""
    from rocl_bench.data import dataset_info
    from rocl_bench.models import ModelSpec, build_model
    from rocl_bench.train.checkpoint import save_checkpoint

    info = dataset_info("digits")
    spec = ModelSpec("mlp", 10, info.channels, info.image_size, tuple(info.mean), tuple(info.std))
    state = {k: torch.zeros_like(v) for k, v in build_model(spec).state_dict().items()}
    save_checkpoint(tmp_path / "zero.pt", {"model_spec": spec.to_dict(), "method": "standard", "epoch": 1,
                                           "config_hash": "zero", "state_dict": state})
    (tmp_path / "s.yaml").write_text("name: chance\ndata: {dataset: digits, test_limit: 100}\nmodels:\n"
                                     "  zero: {checkpoint: zero.pt}\nattacks:\n  clean: {type: clean}\n"
                                     "  pgd: {type: pgd, norm: linf, eps: 0.05, steps: 2}\n")
    records = run_suite(tmp_path / "s.yaml", out=str(tmp_path / "out"), **QUIET)
    assert len(records) == 2
    for rec in records:
        assert rec.clean_accuracy <= 0.11
        assert any("at chance level" in w for w in rec.warnings), rec.warnings


def test_transfer_uses_only_the_source_gradients(first_run, tmp_path):
    """The target is wrapped in a spy that logs every call it gets: the transfer cell judges with it, and
    crafting never differentiates it; the cell it computes is the one the suite recorded."""
    _, records = first_run
    transfer = [r for r in records if r["attack_spec"]["type"] == "transfer"]
    assert {(r["source"], r["model"]) for r in transfer} == {("standard", "madry"), ("madry", "standard")}
    from rocl_bench.bench.models import ReadyModel
    from rocl_bench.bench.runner import Runner
    from rocl_bench.bench.suite import load_suite
    from rocl_bench.models.loading import classifier_from_checkpoint
    from rocl_bench.train import load_checkpoint

    with_gradients: list[bool] = []

    class Spy(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            with_gradients.append(torch.is_grad_enabled() and x.requires_grad)
            return self.inner(x)

    root = first_run[0]
    suite = load_suite(root / "tiny.yaml")
    runner = Runner(suite, tmp_path / "out", torch.device("cpu"), False, lambda s: None)
    runner.load_test_set()

    def ready(name, wrap=lambda m: m):
        ck = next((root / "out" / "models").glob(f"{name}-*")) / "checkpoint.pt"
        module = wrap(classifier_from_checkpoint(load_checkpoint(ck), ck))
        return ReadyModel(name, name, name, "mlp", name, ck, None, module)

    source, target = ready("madry"), ready("standard", Spy)
    runner.transfer_cell(source, suite.attacks["pgd_small"], target, {})
    assert with_gradients and not any(with_gradients), with_gradients
    (rec,) = runner.new
    (stored,) = [r for r in transfer if (r["source"], r["model"]) == ("madry", "standard")]
    assert rec.robust_mask == stored["robust_mask"] and rec.clean_mask == stored["clean_mask"]
    # and the cell's verdict is the target's own on the source's adversarial examples
    x_adv = runner.craft(source, suite.attacks["pgd_small"])
    with torch.no_grad():
        tgt = target.module.inner
        expected = (tgt(runner.x).argmax(1) == runner.y) & (tgt(x_adv).argmax(1) == runner.y)
    assert torch.equal(torch.from_numpy(decode_mask(rec.robust_mask, rec.n)), expected)


def test_lock_refuses_a_second_writer_and_takes_over_a_stale_one(first_run):
    root, _ = first_run
    lock = root / "out" / ".lock"
    lock.write_text(str(os.getppid()))          # a live process that is not us
    with pytest.raises(UserError, match="another rocl-bench run"):
        run_suite(root / "tiny.yaml", out=str(root / "out"), **QUIET)
    lock.write_text("999999")                     # no such process: stale
    run_suite(root / "tiny.yaml", out=str(root / "out"), **QUIET)
    assert not lock.exists()


def test_only_and_limit_select_models_and_points(first_run, tmp_path):
    root, _ = first_run
    recs = run_suite(root / "tiny.yaml", out=str(tmp_path / "o"), only=["standard"], limit=60, **QUIET)
    assert {r.model for r in recs} == {"standard"} and all(r.n == 60 for r in recs)
    with pytest.raises(UserError, match="did you mean 'madry'"):
        run_suite(root / "tiny.yaml", out=str(tmp_path / "o"), only=["madri"], **QUIET)


def test_python_api_evaluates_a_users_own_module():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    df = rocl_bench.evaluate(net, {"clean": {"type": "clean"}, "pgd": {"type": "pgd", "norm": "linf", "eps": 0.1,
                                                                       "steps": 5}}, "digits", limit=50)
    assert list(df["attack"]) == ["clean", "pgd"] and (df["n"] == 50).all()
    assert df.loc[1, "robust_accuracy"] <= df.loc[0, "robust_accuracy"]


def test_factory_model_in_a_suite(tmp_path):
    pkg = tmp_path / "mynets.py"
    pkg.write_text("import torch\n\ndef make_net():\n    torch.manual_seed(0)\n"
                   "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))\n")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    torch.save(net.state_dict(), tmp_path / "mine.pt")
    (tmp_path / "s.yaml").write_text("name: mine\ndata: {dataset: digits, test_limit: 40}\n"
                                     "models:\n  mine: {factory: 'mynets:make_net', checkpoint: mine.pt}\n"
                                     "attacks:\n  clean: {type: clean}\n")
    sys.path.insert(0, str(tmp_path))
    try:
        recs = run_suite(tmp_path / "s.yaml", out=str(tmp_path / "o"), **QUIET)
    finally:
        sys.path.remove(str(tmp_path))
    assert recs[0].model == "mine" and recs[0].n == 40


def test_cli_run_prints_the_plan_and_a_summary(first_run):
    root, _ = first_run
    r = subprocess.run([sys.executable, "-m", "rocl_bench", "run", str(root / "tiny.yaml"), "--out",
                        str(root / "out"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "suite tiny" in r.stdout and "| Madry AT |" in r.stdout and "pgd_l1" in r.stdout


def test_a_suite_changed_and_changed_back_shows_the_current_configuration(tmp_path):
    """Reports read the last record of a cell; when the suite goes back to an earlier spec, the run reuses the
    earlier record and must append it again, or the table would show the other configuration's number."""
    from rocl_bench.bench.runner import run_suite
    from rocl_bench.record import load

    ckpt = Path(__file__).resolve().parents[1] / "baselines" / "ci_models" / "madry.pt"

    def run(steps: int) -> None:
        suite = tmp_path / "s.yaml"
        suite.write_text(f"name: back\nseed: 0\ndevice: cpu\ndata: {{dataset: digits, test_limit: 60}}\n"
                         f"models:\n  m: {{checkpoint: {ckpt}}}\nattacks:\n"
                         f"  p: {{type: pgd, norm: linf, eps: 0.2, steps: {steps}}}\n")
        run_suite(suite, out=str(tmp_path / "out"), progress=False, log=lambda s: None)

    def shown() -> tuple[int, float]:
        (rec,) = [r for r in load(tmp_path / "out").latest() if r.attack == "p"]
        return rec.attack_spec["steps"], rec.robust_accuracy

    run(20)
    first = shown()
    run(1)
    assert shown()[0] == 1
    run(20)                      # reused, not re-run: and the table shows it again
    assert shown() == first
