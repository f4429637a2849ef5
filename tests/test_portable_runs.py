"""A run's identity is what it computes, not where its files live: another spelling of --out, a moved results
folder, a moved data folder or a moved encoder file still finds the trained models and the evaluated cells."""
import shutil
import subprocess
import sys

from rocl_bench.bench.runner import run_suite
from rocl_bench.bench.suite import load_suite
from rocl_bench.train import identity_hash, make_train_config, train

SUITE = """
name: portable
seed: 0
data: {dataset: digits, train_limit: 200, test_limit: 60}
models:
  simclr: {method: simclr, model: mlp, epochs: 1, batch_size: 64}
  simclr_le: {label: SimCLR + LE, method: linear, encoder: simclr, epochs: 1, batch_size: 64}
attacks:
  clean: {type: clean}
  pgd: {type: pgd, norm: linf, eps: 0.05, steps: 3}
"""


def _run(suite, out):
    logs: list[str] = []
    records = run_suite(suite, out=str(out), progress=False, log=logs.append)
    return [r.to_dict() for r in records], logs


def _trained(logs):
    return [line for line in logs if line.startswith("training")]


def test_relative_absolute_and_moved_out_reuse_models_and_cells(tmp_path, monkeypatch):
    (tmp_path / "portable.yaml").write_text(SUITE)
    monkeypatch.chdir(tmp_path)
    first, logs = _run("portable.yaml", "results")
    assert len(_trained(logs)) == 2 and len(first) == 2     # the encoder is not evaluated
    again, logs = _run(str(tmp_path / "portable.yaml"), tmp_path / "results")
    assert _trained(logs) == []
    assert [r["robust_mask"] for r in again] == [r["robust_mask"] for r in first]
    shutil.copytree(tmp_path / "results", tmp_path / "moved" / "results")
    shutil.rmtree(tmp_path / "results")
    moved, logs = _run("portable.yaml", tmp_path / "moved" / "results")
    assert _trained(logs) == []
    assert [r["timestamp"] for r in moved] == [r["timestamp"] for r in first]     # cells reused, not re-run


def test_model_keys_do_not_depend_on_the_data_folder(tmp_path):
    (tmp_path / "portable.yaml").write_text(SUITE)
    a = load_suite(tmp_path / "portable.yaml", str(tmp_path / "data-a"))
    b = load_suite(tmp_path / "portable.yaml", str(tmp_path / "elsewhere" / "data-b"))
    assert a.models["simclr"].train.data_root != b.models["simclr"].train.data_root
    assert identity_hash(a.models["simclr"].train) == identity_hash(b.models["simclr"].train)


def test_data_root_on_the_command_line_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "portable.yaml").write_text(SUITE)
    monkeypatch.chdir(tmp_path)
    suite = load_suite("suites/portable.yaml", "shared/data")
    assert suite.data.root == str((tmp_path / "shared" / "data").resolve())
    assert suite.models["simclr"].train.data_root == suite.data.root


def test_a_moved_encoder_resumes_and_a_changed_one_is_refused(tmp_path):
    enc = tmp_path / "enc"
    train(make_train_config({"dataset": "digits", "model": "mlp", "method": "standard", "epochs": 1,
                             "train_limit": 200}, "test"), enc, progress=False, log=lambda s: None)
    probe = {"dataset": "digits", "method": "linear", "epochs": 1, "train_limit": 200}
    out = tmp_path / "probe"
    train(make_train_config({**probe, "encoder": str(enc / "checkpoint.pt")}, "test"), out,
          progress=False, log=lambda s: None)
    shutil.move(enc, tmp_path / "moved-enc")
    logs: list[str] = []
    train(make_train_config({**probe, "encoder": str(tmp_path / "moved-enc" / "checkpoint.pt")}, "test"), out,
          resume=True, progress=False, log=logs.append)
    assert any("already finished" in line for line in logs)
    other = tmp_path / "other-enc"
    train(make_train_config({"dataset": "digits", "model": "mlp", "method": "standard", "epochs": 1,
                             "train_limit": 200, "seed": 1}, "test"), other, progress=False, log=lambda s: None)
    r = subprocess.run([sys.executable, "-m", "rocl_bench", "train", "--method", "linear", "--dataset", "digits",
                        "--epochs", "1", "--train-limit", "200", "--encoder", str(other / "checkpoint.pt"),
                        "--out", str(out), "--resume"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "another configuration" in r.stderr and "Traceback" not in r.stderr
