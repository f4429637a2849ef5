"""RoCL core: the instance-wise attack, RoCL vs SimCLR robustness on digits, protocols, smoothing."""
import dataclasses
import subprocess
import sys

import pytest
import torch

from rocl_bench.attacks.instance import instance_attack
from rocl_bench.attacks.projections import distance
from rocl_bench.data import dataset_info, load_dataset
from rocl_bench.data.augment import AugmentSpec, augment
from rocl_bench.losses import nt_xent
from rocl_bench.methods.contrastive import RoCL, RoCLParams
from rocl_bench.methods.false_negatives import FalseNegatives
from rocl_bench.models import ModelSpec, build_model
from rocl_bench.models.loading import classifier_from_checkpoint
from rocl_bench.models.smoothing import SmoothedClassifier

from util import pgd_accuracy, quick_train

EPS = 0.1


def _contrastive_model(arch="mlp"):
    torch.manual_seed(0)
    return build_model(ModelSpec(arch, 10, 1, 8, (0.3,), (0.4,), (64, 32)))


@pytest.mark.parametrize("arch", ["mlp", "cnn-small"])
def test_instance_attack_raises_its_loss_and_stays_in_the_ball(arch):
    model = _contrastive_model(arch).train()
    x, _ = load_dataset("digits", True, limit=64).batch()
    g = torch.Generator().manual_seed(0)
    spec = AugmentSpec.for_kind("digit")
    t1, t2 = augment(x, spec, g), augment(x, spec, g)
    x_adv = instance_attack(model, t1, t2, eps=EPS, step=EPS / 4, steps=7, rand_init=True, generator=g)
    assert model.training, "the attack must restore train mode"
    assert (distance(x_adv - t1, "linf") <= EPS + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    model.eval()
    with torch.no_grad():
        before = nt_xent(model.project(torch.cat([t1, t2])), 2).item()
        after = nt_xent(model.project(torch.cat([x_adv, t2])), 2).item()
        noise = (t1 + (torch.rand_like(t1) * 2 - 1) * EPS).clamp(0, 1)
        random = nt_xent(model.project(torch.cat([noise, t2])), 2).item()
    assert after > before and after > random, (before, random, after)


def test_instance_attack_is_seeded():
    model = _contrastive_model().train()
    x, _ = load_dataset("digits", True, limit=32).batch()
    runs = [instance_attack(model, x, x.flip(0), eps=EPS, step=0.02, steps=3, rand_init=True,
                            generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


def _rocl_step(params, x, labels):
    """One RoCL loss (attack included) and its parameter gradients, from the same model and random draws."""
    model = _contrastive_model().train()
    out = RoCL(params, dataset_info("digits")).loss(model, x, labels, torch.Generator().manual_seed(3))
    out.loss.backward()
    return out.loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_rocl_reads_no_labels():
    """Permuted labels, or none at all, give bit-identical losses and gradients: neither the instance-wise
    attack nor the loss reads y. The same check does see labels where they are read (oracle removal)."""
    x, y = load_dataset("digits", True, limit=64).batch()
    permuted = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    assert not torch.equal(permuted, y)
    base = RoCLParams(steps=3)
    loss, grads = _rocl_step(base, x, y)
    assert grads and max(float(g.abs().max()) for g in grads) > 0
    for labels in (permuted, None):
        other_loss, other_grads = _rocl_step(base, x, labels)
        assert torch.equal(other_loss, loss)
        assert all(torch.equal(a, b) for a, b in zip(other_grads, grads))
    oracle = dataclasses.replace(base, false_negatives=FalseNegatives("oracle"))
    assert not torch.equal(_rocl_step(oracle, x, y)[0], _rocl_step(oracle, x, permuted)[0])


def test_false_negative_removal_drops_negatives_from_the_loss_and_the_attack():
    """Dropping negatives from the denominators lowers the loss at the same adversarial view; applied inside
    the attack too, it changes the adversarial view."""
    x, y = load_dataset("digits", True, limit=64).batch()
    base = RoCLParams(steps=3)
    plain = _rocl_step(base, x, y)[0]
    for fn in (FalseNegatives("oracle"), FalseNegatives("similarity", top_k=4)):
        removed = dataclasses.replace(base, false_negatives=fn)
        lower = _rocl_step(removed, x, y)[0]
        assert lower < plain, (fn.mode, float(lower), float(plain))
        in_attack = _rocl_step(dataclasses.replace(removed, attack_false_negatives=True), x, y)[0]
        assert torch.isfinite(in_attack) and not torch.equal(in_attack, lower), fn.mode


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("enc")
    common = dict(epochs=10, batch_size=256, lr=0.5, warmup_epochs=0, schedule_epochs=None)
    quick_train(root / "simclr", method="simclr", **common)
    quick_train(root / "rocl", method="rocl", **common)
    return root


def test_rocl_rle_is_clearly_more_robust_than_simclr_le(encoders, tmp_path):
    le = quick_train(tmp_path / "le", method="linear", encoder=str(encoders / "simclr" / "checkpoint.pt"),
                     epochs=10, milestones=[], batch_size=128)      # the pre-1024 default these numbers had
    rle = quick_train(tmp_path / "rle", method="robust-linear", encoder=str(encoders / "rocl" / "checkpoint.pt"),
                      epochs=10, milestones=[], batch_size=128)
    le_clean, le_rob = pgd_accuracy(le, EPS)
    rle_clean, rle_rob = pgd_accuracy(rle, EPS)
    assert le_clean > 0.8 and rle_clean > 0.8
    assert rle_rob > le_rob + 0.1, (le_rob, rle_rob)


def test_linear_protocol_keeps_the_encoder_frozen(encoders, tmp_path):
    enc = torch.load(encoders / "rocl" / "checkpoint.pt", weights_only=True)
    le = quick_train(tmp_path / "le", method="linear", encoder=str(encoders / "rocl" / "checkpoint.pt"), epochs=2)
    for k, v in le["state_dict"].items():
        if k.startswith("encoder."):
            assert torch.equal(v, enc["state_dict"][k]), k
    assert not any(k.startswith("projector.") for k in le["state_dict"])
    assert le["method"] == "linear" and le["model_spec"]["projector"] is None


def test_finetune_trains_the_whole_network(encoders, tmp_path):
    enc = torch.load(encoders / "rocl" / "checkpoint.pt", weights_only=True)
    ft = quick_train(tmp_path / "ft", method="finetune", encoder=str(encoders / "rocl" / "checkpoint.pt"), epochs=1,
                     params={"objective": "trades"})
    changed = [k for k, v in ft["state_dict"].items() if k.startswith("encoder.") and not torch.equal(v, enc["state_dict"][k])]
    assert changed


def test_reuse_projections_option_changes_the_step_but_trains(tmp_path):
    a = quick_train(tmp_path / "a", method="rocl", epochs=1, batch_size=128)
    b = quick_train(tmp_path / "b", method="rocl", epochs=1, batch_size=128, params={"reuse_projections": True})
    assert a["metrics"][0]["loss"] != b["metrics"][0]["loss"]


def test_smoothed_classifier_averages_views_and_repeats_with_a_seed(encoders, tmp_path):
    rle = quick_train(tmp_path / "rle", method="robust-linear", encoder=str(encoders / "rocl" / "checkpoint.pt"),
                      epochs=2, batch_size=128)
    model = classifier_from_checkpoint(rle, "t")
    smooth = SmoothedClassifier(model, samples=4, spec=AugmentSpec.for_kind("digit"), seed=1)
    x, y = load_dataset("digits", False, limit=50).batch()
    with torch.no_grad():
        a = smooth(x)
        smooth.reseed(1)
        b = smooth(x)
    assert torch.equal(a, b) and a.shape == (50, 10)
    assert (a.argmax(1) == y).float().mean() > 0.5


def test_cli_rocl_then_robust_linear(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "rocl_bench", "train", *args, "--quiet"], capture_output=True,
                              text=True, timeout=300)
    r = run("--method", "rocl", "--dataset", "digits", "--model", "mlp", "--epochs", "2", "--out", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr
    r = run("--method", "robust-linear", "--encoder", str(tmp_path / "r" / "checkpoint.pt"), "--epochs", "2",
            "--batch-size", "128", "--out", str(tmp_path / "r-rle"))
    assert r.returncode == 0, r.stderr
    ck = torch.load(tmp_path / "r-rle" / "checkpoint.pt", weights_only=True)
    assert ck["method"] == "robust-linear" and ck["final_metrics"]["test_accuracy"] > 0.3
