"""The training loop: supervised baselines, determinism, resume, divergence, checkpoint format."""
import json
import pickle

import pytest
import torch

from rocl_bench.errors import DivergedError, UserError
from rocl_bench.methods.supervised import Standard
from rocl_bench.models.loading import classifier_from_checkpoint
from rocl_bench.train import load_checkpoint

from util import pgd_accuracy, quick_train

EPS = 0.1   # digits' default ℓ∞ budget


@pytest.fixture(scope="module")
def standard_and_madry(tmp_path_factory):
    root = tmp_path_factory.mktemp("sup")
    std = quick_train(root / "std", method="standard", epochs=8, batch_size=64)
    madry = quick_train(root / "madry", method="madry", epochs=8, batch_size=64)
    return std, madry


def test_madry_is_clearly_more_robust_than_standard(standard_and_madry):
    std, madry = standard_and_madry
    std_clean, std_rob = pgd_accuracy(std, EPS)
    mad_clean, mad_rob = pgd_accuracy(madry, EPS)
    assert std_clean > 0.85 and mad_clean > 0.8
    assert mad_rob > std_rob + 0.2, (std_rob, mad_rob)


def test_checkpoint_holds_the_documented_fields(standard_and_madry):
    _, madry = standard_and_madry
    for key in ("format_version", "model_spec", "method", "method_config", "train_config", "dataset", "epoch",
                "metrics", "package_version", "state_dict", "config_hash"):
        assert key in madry, key
    assert madry["method"] == "madry" and madry["dataset"] == "digits" and madry["epoch"] == 8
    assert madry["model_spec"]["arch"] == "mlp" and madry["model_spec"]["num_classes"] == 10


def test_checkpoint_file_loads_with_weights_only(tmp_path):
    quick_train(tmp_path / "run", method="standard", epochs=1)
    raw = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert raw["epoch"] == 1
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1
    assert (tmp_path / "run" / "last.pt").exists()


def test_same_seed_gives_bit_identical_metrics(tmp_path):
    for name in ("a", "b"):
        quick_train(tmp_path / name, method="trades", epochs=2, batch_size=128)
    a = (tmp_path / "a" / "metrics.jsonl").read_bytes()
    assert a == (tmp_path / "b" / "metrics.jsonl").read_bytes()
    other = quick_train(tmp_path / "c", method="trades", epochs=2, batch_size=128, seed=1)
    assert (tmp_path / "c" / "metrics.jsonl").read_bytes() != a


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
    from rocl_bench.train import make_train_config, train

    cfg = make_train_config({"method": "madry", "dataset": "digits", "model": "mlp", "epochs": 3,
                             "batch_size": 128}, "test")
    full = train(cfg, tmp_path / "full", progress=False, log=lambda s: None)

    def interrupt(line):
        if line.startswith("epoch 2/3"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "cut", progress=False, log=interrupt)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 2
    with pytest.raises(UserError, match="--resume"):
        train(cfg, tmp_path / "cut", progress=False, log=lambda s: None)
    resumed = train(cfg, tmp_path / "cut", resume=True, progress=False, log=lambda s: None)
    assert (tmp_path / "cut" / "metrics.jsonl").read_bytes() == (tmp_path / "full" / "metrics.jsonl").read_bytes()
    for k, v in full["state_dict"].items():
        assert torch.equal(v, resumed["state_dict"][k]), k


def test_non_finite_loss_stops_and_keeps_last_good_epoch(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = Standard.loss

    def poisoned(self, model, x, y, g):
        calls["n"] += 1
        out = original(self, model, x, y, g)
        if calls["n"] == 6:               # epoch 2 (5 steps per epoch at batch 256), step 1
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Standard, "loss", poisoned)
    with pytest.raises(DivergedError, match=r"epoch 2, step 1"):
        quick_train(tmp_path / "run", method="standard", epochs=3, batch_size=256)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_plain_state_dict_loads_with_a_model_name(tmp_path, standard_and_madry):
    std, _ = standard_and_madry
    torch.save(std["state_dict"], tmp_path / "plain.pt")
    from rocl_bench.data import dataset_info

    ck = load_checkpoint(tmp_path / "plain.pt")
    model = classifier_from_checkpoint(ck, tmp_path / "plain.pt", "mlp", dataset_info("digits"))
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(UserError, match="--model"):
        classifier_from_checkpoint(ck, tmp_path / "plain.pt")
    with pytest.raises(UserError, match="do not fit"):
        classifier_from_checkpoint(ck, tmp_path / "plain.pt", "cnn-small", dataset_info("digits"))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format_version": 1, "x": _Payload(str(marker))}, f)
    torch.save({"format_version": 1, "x": _Payload(str(marker))}, tmp_path / "evil2.pt")
    marker.unlink(missing_ok=True)
    for name in ("evil.pt", "evil2.pt"):
        with pytest.raises(UserError, match="refused|not a readable"):
            load_checkpoint(tmp_path / name)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated"])
def test_empty_or_truncated_checkpoint_is_a_user_error(tmp_path, content):
    (tmp_path / "bad.pt").write_bytes(content)
    with pytest.raises(UserError):
        load_checkpoint(tmp_path / "bad.pt")
