"""torch.distributed under torchrun: 2 gloo processes on the CPU against one process.

(a) the global-batch NT-Xent and its gradients, 2 processes × batch b against 1 process × 2b (to 1e-6);
(b) training under torchrun: every kind of method, `--nproc`, resume with another number of processes, and a
    deterministic method that must follow the single-process run;
(c) a sharded evaluation of a digits suite gives the single-process records, mask for mask.

The worker is this file run as a script by torchrun (`python -m torch.distributed.run ... test_distributed.py
FOLDER`). Process starts cost seconds, so one torchrun launch runs every phase; each phase's outcome is written
to a file, so one failing phase does not hide the others.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve()

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"       # what torchrun would set anyway (and it then prints no banner)
    return env


def torchrun(*args: str, nproc: int = 2, timeout: int = 120) -> subprocess.CompletedProcess:
    """torchrun with a free port (--standalone), failing the test with the workers' output on error."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=HERE.parent)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout[-4000:]}\n{r.stderr[-6000:]}"
    return r


def quiet(line: str) -> None:
    pass


def train_config(**fields):
    from rocl_bench.train import make_train_config

    return make_train_config({"dataset": "digits", "model": "mlp", "seed": 0, **fields}, "test")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Single-process references, then one torchrun launch of every phase."""
    from rocl_bench.bench.runner import run_suite
    from rocl_bench.train import load_checkpoint, train

    root = tmp_path_factory.mktemp("dist")
    # (b) a deterministic run to follow, and a run cut after epoch 1 to resume with 2 processes
    train(train_config(**STANDARD), root / "standard-1", progress=False, log=quiet)

    def cut(line):
        if line.startswith("epoch 1/2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(train_config(**MADRY), root / "madry", progress=False, log=cut)
    assert load_checkpoint(root / "madry" / "last.pt")["epoch"] == 1
    (root / "madry-epoch1.json").write_text((root / "madry" / "metrics.jsonl").read_text().splitlines()[0])
    # (c) the single-process records; the sharded run gets the same trained models
    (root / "suite.yaml").write_text(SUITE)
    (root / "fresh.yaml").write_text(FRESH)
    run_suite(root / "suite.yaml", out=str(root / "single"), progress=False, log=quiet)
    shutil.copytree(root / "single" / "models", root / "dist" / "models")
    # (b) the CLI hands over to torchrun: a RoCL encoder (global-batch NT-Xent) for the workers' linear protocol
    r = subprocess.run([sys.executable, "-m", "rocl_bench", "train", "--method", "rocl", "--epochs", "1",
                        "--batch-size", "128", "--train-limit", "256", "--out", str(root / "rocl"), "--quiet",
                        "--nproc", "2"], capture_output=True, text=True, timeout=180, env=_env())
    (root / "cli.json").write_text(json.dumps({"rc": r.returncode, "stdout": r.stdout[-3000:],
                                               "stderr": r.stderr[-5000:]}))
    torchrun(str(HERE), str(root), timeout=240)
    # (b) the linear protocol, with one process, on the encoder the CLI trained (its test reports a failure)
    if (root / "rocl" / "checkpoint.pt").exists():
        train(train_config(**linear(root)), root / "linear-1", progress=False, log=quiet)
    return root


STANDARD = dict(method="standard", epochs=1, batch_size=128, train_limit=640)
MADRY = dict(method="madry", epochs=2, batch_size=64, train_limit=256)


def linear(root: Path) -> dict:
    return dict(method="linear", encoder=str(root / "rocl" / "checkpoint.pt"), epochs=1, batch_size=128,
                train_limit=640)


def phase(root: Path, name: str) -> list[dict]:
    """Both ranks' outcome of one worker phase (failing with the worker's traceback)."""
    out = []
    for rank in (0, 1):
        got = json.loads((root / f"{name}-{rank}.json").read_text())
        assert "error" not in got, f"rank {rank}, phase {name}:\n{got.get('error')}"
        out.append(got)
    return out


# ---------------------------------------------------------------- (a) the loss and its gradients
def test_global_nt_xent_and_gradients_equal_one_process_with_the_whole_batch(runs):
    for rank, cases in enumerate(phase(runs, "loss")):
        assert len(cases) == 12
        for case, err in cases.items():
            assert err["grad_scale"] > 1e-3, case                    # the comparison is not of zeros
            assert err["loss"] <= 1e-6, (rank, case, err)
            assert err["params"] <= 1e-6, (rank, case, err)          # after DDP's average over ranks
            assert err["inputs"] <= 1e-6, (rank, case, err)          # world × the true one before averaging


def _worker_loss(out: Path) -> dict:
    import copy

    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    from rocl_bench import distributed as dist
    from rocl_bench.data import dataset_info
    from rocl_bench.losses import nt_xent
    from rocl_bench.methods.contrastive import SimCLR, SimCLRParams
    from rocl_bench.methods.false_negatives import FalseNegatives, keep_mask

    rank, world = dist.rank(), dist.world()
    b, d = 5, 12
    errors = {}
    for views in (2, 3):
        for detach in (True, False):
            for fn in (FalseNegatives(), FalseNegatives("oracle"), FalseNegatives("similarity", top_k=2)):
                g = torch.Generator().manual_seed(10 * views + detach)
                x = torch.rand(views, world * b, d, generator=g)           # view v of instance i, all ranks'
                y = torch.randint(0, 3, (world * b,), generator=g)
                torch.manual_seed(0)
                proj = nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, 8))
                params = SimCLRParams(detach_keys=detach, false_negatives=fn)
                # one process with the whole batch (world·b instances), view-major
                ref = copy.deepcopy(proj)
                x_ref = x.reshape(-1, d).clone().requires_grad_(True)
                z_ref = ref(x_ref)
                ref_loss = nt_xent(z_ref, views, params.temperature, detach, keep_mask(fn, z_ref, y, views))
                ref_loss.backward()
                # this rank's b instances through DDP and the method's (gathering) loss
                ddp = DistributedDataParallel(copy.deepcopy(proj))
                mine = slice(rank * b, (rank + 1) * b)
                x_loc = x[:, mine].reshape(-1, d).clone().requires_grad_(True)
                loss = SimCLR(params, dataset_info("digits")).contrast(ddp(x_loc), views, y[mine])
                loss.backward()
                ref_inputs = x_ref.grad.view(views, world * b, d)[:, mine].reshape(-1, d)
                errors[f"views={views} detach_keys={detach} false_negatives={fn.mode}"] = {
                    "loss": abs(loss.item() - ref_loss.item()),
                    "params": max(float((p.grad - q.grad).abs().max())
                                  for p, q in zip(ddp.module.parameters(), ref.parameters())),
                    "inputs": float((x_loc.grad - world * ref_inputs).abs().max()),
                    "grad_scale": max(float(q.grad.abs().max()) for q in ref.parameters()),
                }
    return errors


# ---------------------------------------------------------------- (b) training
def test_training_under_torchrun(runs):
    from rocl_bench.models.loading import classifier_from_checkpoint
    from rocl_bench.train import load_checkpoint

    cli = json.loads((runs / "cli.json").read_text())
    assert cli["rc"] == 0, cli["stdout"] + cli["stderr"]
    assert cli["stdout"].count("wrote ") == 1                       # rank 0 alone reports
    returned = phase(runs, "train")
    assert returned[0] == returned[1]                               # every rank returns rank 0's checkpoint
    rocl = load_checkpoint(runs / "rocl" / "checkpoint.pt")
    assert rocl["world_size"] == 2 and rocl["epoch"] == 1 and rocl["metrics"][0]["loss"] > 0
    assert not any(k.startswith(("module.", "model.")) for k in rocl["state_dict"])
    for name in ("rocl", "linear-2", "simclr-cnn", "standard-2", "madry"):
        ck = load_checkpoint(runs / name / "checkpoint.pt")
        model = classifier_from_checkpoint(ck, name)                # loads anywhere, no DDP prefixes
        assert model(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    # resumed with 2 processes after 1 epoch with 1
    madry = load_checkpoint(runs / "madry" / "checkpoint.pt")
    lines = (runs / "madry" / "metrics.jsonl").read_text().splitlines()
    assert madry["epoch"] == 2 and len(lines) == 2 and lines[0] == (runs / "madry-epoch1.json").read_text()
    # methods without randomness: 2 processes × 64 follow 1 process × 128 step for step, the whole network
    # (standard) and a head on a frozen encoder (linear: the encoder's parameters are out of DDP)
    for name in ("standard", "linear"):
        one = load_checkpoint(runs / f"{name}-1" / "checkpoint.pt")
        two = load_checkpoint(runs / f"{name}-2" / "checkpoint.pt")
        m1, m2 = one["metrics"][0], two["metrics"][0]
        assert m1["train_accuracy"] == m2["train_accuracy"] and m1["lr"] == m2["lr"], name
        assert m2["loss"] == pytest.approx(m1["loss"], rel=1e-5), name
        assert one["final_metrics"] == two["final_metrics"], name
        for k, v in one["state_dict"].items():
            assert torch.allclose(v, two["state_dict"][k], atol=1e-5), (name, k)
            if k.startswith("encoder.") and name == "linear":
                assert torch.equal(v, rocl["state_dict"][k]), k      # the frozen encoder stayed frozen


def test_nproc_hands_over_to_torchrun(monkeypatch):
    from rocl_bench import cli

    argv = ["train", "--method", "rocl", "--nproc", "2", "--out", "runs/r", "--set", "eps=8/255"]
    seen = []
    monkeypatch.setattr(sys, "argv", ["rocl-bench", *argv])
    monkeypatch.setattr(os, "execv", lambda path, args: seen.append(args) or sys.exit(0))
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert seen == [[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                     "-m", "rocl_bench", "train", "--method", "rocl", "--out", "runs/r", "--set", "eps=8/255"]]
    seen.clear()
    argv = ["run", "suites/ci.yaml", "--nproc=4", "--quiet"]
    monkeypatch.setattr(sys, "argv", ["rocl-bench", *argv])
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert seen[0][4:] == ["--nproc_per_node", "4", "-m", "rocl_bench", "run", "suites/ci.yaml", "--quiet"]


def _worker_train(out: Path) -> dict:
    from rocl_bench.train import train

    def run(name, **fields):
        ck = train(train_config(**fields), out / name, resume=True, progress=False, log=quiet)
        return [ck["epoch"], ck["final_metrics"], ck["metrics"]]

    return {"standard": run("standard-2", **STANDARD),
            "madry": run("madry", **MADRY),                                  # resumes a 1-process run
            "linear": run("linear-2", **linear(out)),
            "simclr": run("simclr-cnn", method="simclr", model="cnn-small", epochs=1, batch_size=128,
                          train_limit=256, params={"false_negatives": {"mode": "oracle"}})}


# ---------------------------------------------------------------- (c) sharded evaluation
SUITE = """
name: shard
seed: 0
data: {dataset: digits, train_limit: 300, test_limit: 96}
output: {batch_size: 24}
models:
  standard: {label: Standard, method: standard, epochs: 2, batch_size: 64}
  madry: {label: Madry AT, method: madry, epochs: 2, batch_size: 64}
attacks:
  clean: {type: clean}
  pgd: {type: pgd, norm: linf, eps: 0.1, steps: 5, seen: true}
  pgd_l2: {type: pgd, norm: l2, eps: 0.75, steps: 5}
  pgd_l1: {type: pgd, norm: l1, eps: 2.0, steps: 5}
  pgd_restarts: {type: pgd, norm: linf, eps: 0.1, steps: 3, restarts: 2}
  fgsm: {type: fgsm, eps: 0.1}
  apgd: {type: apgd, norm: Linf, eps: 0.1, steps: 5}
transfer: {sources: all, attacks: [pgd]}
"""

FRESH = """
name: fresh
seed: 0
data: {dataset: digits, train_limit: 256, test_limit: 60}
models:
  standard: {method: standard, epochs: 1, batch_size: 64}
attacks:
  clean: {type: clean}
  pgd: {type: pgd, norm: linf, eps: 0.1, steps: 3}
"""

SAME = ("clean_mask", "robust_mask", "clean_accuracy", "robust_accuracy", "flags", "n", "config_hash",
        "checkpoint_sha256", "test_indices_hash", "warnings")


def test_sharded_evaluation_gives_the_single_process_records(runs):
    calls = phase(runs, "run")
    single = [json.loads(x) for x in (runs / "single" / "records.jsonl").read_text().splitlines()]
    lines = (runs / "dist" / "records.jsonl").read_text().splitlines()
    assert len(lines) == len(single) == 2 * 7 + 2                   # rank 0 alone wrote, once per cell
    sharded = {(r["model"], r["attack"], r["source"]): r for r in map(json.loads, lines)}
    for rec in single:
        other = sharded[(rec["model"], rec["attack"], rec["source"])]
        for key in SAME:
            assert other[key] == rec[key], (rec["model"], rec["attack"], key)
        assert other["world_size"] == 2 and rec["world_size"] == 1
    assert calls[1]["PGD"] > 0 and calls[1]["FGSM"] > 0 and calls[1]["APGD"] > 0    # rank 1 attacked its share
    # restarts draw according to the outcome: such cells (and AutoAttack's) run whole on rank 0
    assert calls[0]["restarts"] > 0 and calls[1]["restarts"] == 0
    assert calls[0]["returned"] == calls[1]["returned"]            # every rank returns the same records
    assert calls[0]["locked"] == calls[1]["locked"] == "UserError"  # rank 0's refusal, on every rank
    # missing models are trained under torchrun (distributed), then evaluated
    fresh = [json.loads(x) for x in (runs / "fresh" / "records.jsonl").read_text().splitlines()]
    assert len(fresh) == 2 and all(r["n"] == 60 and r["world_size"] == 2 for r in fresh)
    (ck,) = (runs / "fresh" / "models").glob("standard-*/checkpoint.pt")
    assert torch.load(ck, weights_only=True)["world_size"] == 2


def _worker_run(out: Path) -> dict:
    from rocl_bench import distributed as dist
    from rocl_bench.attacks.iterative import PGD
    from rocl_bench.attacks.pyautoattack_adapters import APGD
    from rocl_bench.attacks.torchattacks_adapters import FGSM
    from rocl_bench.bench.runner import run_suite
    from rocl_bench.errors import UserError

    calls: dict[str, object] = {"restarts": 0}
    for cls in (PGD, FGSM, APGD):
        calls[cls.__name__] = 0

        def counted(self, *args, _orig=cls.run_with_flags, _name=cls.__name__, **kw):
            calls["restarts" if getattr(self, "restarts", 1) > 1 and _name == "PGD" else _name] += 1
            return _orig(self, *args, **kw)

        cls.run_with_flags = counted
    records = run_suite(out / "suite.yaml", out=str(out / "dist"), progress=False, log=quiet)
    keep = ("model", "attack", "source", "clean_mask", "robust_mask", "clean_accuracy", "robust_accuracy", "flags")
    calls["returned"] = [{k: r.to_dict()[k] for k in keep} for r in records]
    if dist.is_main():                   # a live process holds the lock: rank 0 refuses, and so must rank 1
        (out / "dist" / ".lock").write_text(str(os.getppid()))
    dist.barrier()
    try:
        run_suite(out / "suite.yaml", out=str(out / "dist"), progress=False, log=quiet)
        calls["locked"] = "ran"
    except UserError:
        calls["locked"] = "UserError"
    dist.barrier()
    if dist.is_main():
        (out / "dist" / ".lock").unlink()
    run_suite(out / "fresh.yaml", out=str(out / "fresh"), progress=False, log=quiet)
    return calls


def _worker(out: Path) -> None:
    """Every phase in one launch; each rank writes PHASE-RANK.json with the phase's result or its error."""
    import traceback

    from rocl_bench import distributed as dist

    dist.setup(torch.device("cpu"))
    for name, fn in (("loss", _worker_loss), ("train", _worker_train), ("run", _worker_run)):
        try:
            result = fn(out)
        except Exception:                # noqa: BLE001 - reported to the test through the file
            result = {"error": traceback.format_exc()}
        (out / f"{name}-{dist.rank()}.json").write_text(json.dumps(result))
        dist.barrier()


# ---------------------------------------------------------------- helpers without processes
def test_one_process_is_untouched():
    from rocl_bench import distributed as dist

    assert not dist.active() and dist.world() == 1 and dist.rank() == 0 and dist.is_main()
    z = torch.randn(6, 3)
    assert dist.gather_with_grad(z) is z and dist.gather_views(z, 2) is z and dist.all_reduce_sum(z) is z
    assert dist.on_main(lambda: 7) == 7 and dist.all_gather_object("x") == ["x"]


def test_which_cells_are_sharded():
    """Sharded cells move the generator past other ranks' batches with the exact draws of the attack."""
    from rocl_bench.attacks.evaluate import evaluate
    from rocl_bench.attacks import build_attack
    from rocl_bench.bench.runner import deterministic
    from rocl_bench.models.smoothing import SmoothedClassifier

    sharded = [{"type": "clean"}, {"type": "pgd", "eps": 0.1}, {"type": "pgd", "norm": "l2", "eps": 0.5},
               {"type": "pgd", "norm": "l1", "eps": 2.0}, {"type": "pgd", "eps": 0.1, "random_start": False},
               {"type": "fgsm", "eps": 0.1}, {"type": "cw", "eps": 0.5}, {"type": "apgd", "eps": 0.1},
               {"type": "square", "eps": 0.1}]
    whole = [{"type": "autoattack", "eps": 0.1}, {"type": "pgd", "eps": 0.1, "restarts": 3},
             {"type": "eot-pgd", "eps": 0.1}]
    assert all(build_attack(a).skip_draws() is not None for a in sharded)
    assert all(build_attack(a).skip_draws() is None for a in whole)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    assert deterministic(net) and not deterministic(SmoothedClassifier(net, samples=2))
    # the skipper draws what attacking the batch draws: a batch skipped, then the next one attacked, gives
    # the same next batch as attacking both
    torch.manual_seed(0)
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    for spec in sharded[1:5] + sharded[5:7]:
        attack = build_attack(spec)
        g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        attack.run(net, x[:4], y[:4], g1)
        attack.skip_draws()(x[:4], g2)
        assert torch.equal(g1.get_state(), g2.get_state()), spec
    assert evaluate(net, build_attack(sharded[1]), x, y).n == 8


def test_nproc_flag_errors(monkeypatch, capsys):
    from rocl_bench.cli import main

    assert main(["train", "--method", "standard", "--out", "x", "--nproc", "0"]) == 2
    assert "--nproc" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["run", "suite.yaml", "--nproc", "2"]) == 2
    assert "already runs under torchrun" in capsys.readouterr().err


if __name__ == "__main__":               # the torchrun worker: test_distributed.py FOLDER
    _worker(Path(sys.argv[1]))
