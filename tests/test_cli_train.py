"""`rocl-bench train` through the real command: the documented commands work, user errors are one line, exit 2."""
import json
import subprocess
import sys

import pytest
import torch


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "rocl_bench", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def assert_user_error(result, *needles):
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_help_lists_the_commands():
    out = cli("--help")
    assert out.returncode == 0
    for name in ("train", "run", "table", "check"):
        assert name in out.stdout


def test_train_madry_on_digits_as_documented(tmp_path):
    out = tmp_path / "digits-madry"
    r = cli("train", "--method", "madry", "--dataset", "digits", "--model", "mlp", "--epochs", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "epoch 2/2" in r.stdout and "loss" in r.stdout and "train acc" in r.stdout
    for name in ("checkpoint.pt", "last.pt", "metrics.jsonl"):
        assert (out / name).is_file()
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["method"] == "madry" and ck["epoch"] == 2


def test_train_from_yaml_equals_flags(tmp_path):
    (tmp_path / "train.yaml").write_text("method: trades\ndataset: digits\nmodel: mlp\nepochs: 1\nseed: 3\n"
                                         "params: {beta: 3.0, eps: 8/255}\n")
    assert cli("train", str(tmp_path / "train.yaml"), "--out", str(tmp_path / "a")).returncode == 0
    r = cli("train", "--method", "trades", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--seed", "3",
            "--set", "beta=3.0", "--set", "eps=8/255", "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a" / "metrics.jsonl").read_bytes() == (tmp_path / "b" / "metrics.jsonl").read_bytes()


@pytest.mark.parametrize("args,needles", [
    (["--method", "madyr"], ["unknown method 'madyr'", "did you mean 'madry'", "standard"]),
    (["--model", "resnet19"], ["unknown model 'resnet19'", "resnet18"]),
    (["--dataset", "mnits"], ["unknown dataset", "mnist"]),
    (["--set", "epz=0.1", "--method", "madry"], ["unknown key 'epz'", "eps"]),
    (["--set", "eps=-0.5", "--method", "madry"], ["eps", "(0, 1]"]),
    (["--epochs", "0"], ["epochs"]),
    (["--method", "linear"], ["encoder", "--encoder"]),
    (["--method", "linear", "--encoder", "nowhere.pt"], ["nowhere.pt", "not found"]),
    (["--dataset", "mnist", "--data-root", "/nonexistent"], ["/nonexistent", "--data-root"]),
])
def test_bad_flags_are_one_line_user_errors(tmp_path, args, needles):
    r = cli("train", "--epochs", "1", *args, "--out", str(tmp_path / "o")) if "--epochs" not in args else \
        cli("train", *args, "--out", str(tmp_path / "o"))
    assert_user_error(r, *needles)


def test_bad_yaml_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: madry\nepochs: [1, 2\n")
    assert_user_error(cli("train", str(bad), "--out", str(tmp_path / "o")), "bad.yaml", "line")
    typed = tmp_path / "typed.yaml"
    typed.write_text("method: madry\nepochs: two\n")
    assert_user_error(cli("train", str(typed), "--out", str(tmp_path / "o")), "typed.yaml", "epochs")


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    assert_user_error(cli("train", "--epochs", "1", "--out", str(tmp_path / "file")), "is a file")


def test_python_yaml_tags_are_refused(tmp_path):
    evil = tmp_path / "evil.yaml"
    marker = tmp_path / "pwned"
    evil.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    r = cli("train", str(evil), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert not marker.exists()
