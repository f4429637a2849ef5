"""ACL, AdvCL, DynACL(++) and the SLF / ALF / AFF protocols: each loss against a hand-written reference of the
official code's equation on fixed tensors, the schedules against the official formulas, dual BatchNorm, and a
digits suite where every method trains from the CLI and takes every protocol."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rocl_bench.cli import main
from rocl_bench.data import dataset_info, load_dataset
from rocl_bench.data.augment import AugmentSpec
from rocl_bench.methods import METHODS
from rocl_bench.methods.acl import ACL, ACLParams, acl_augment
from rocl_bench.methods.advcl import AdvCL, AdvCLParams, high_frequency
from rocl_bench.methods.dual_bn import batchnorm_branch, using_branch
from rocl_bench.methods.dynacl import DynACL, DynACLParams, annealed, dynacl_schedule
from rocl_bench.methods.pseudo_labels import assign, fit_centroids
from rocl_bench.models import ModelSpec, build_model
from rocl_bench.train.checkpoint import load_checkpoint

from util import quick_train

INFO = dataset_info("digits")


def official_nt_xent(x: torch.Tensor, t: float = 0.5) -> torch.Tensor:
    """ACL / DynACL utils.nt_xent as written there: rows 2k, 2k+1 are the two views of image k; the self term is
    removed from the denominator by subtracting exp(1/t); the mean over all 2N anchors."""
    x_norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    sim = torch.exp((x @ x.T) / (x_norm @ x_norm.T).clamp(min=1e-8) / t)
    idx = torch.arange(x.size(0))
    idx[::2] += 1
    idx[1::2] -= 1
    pos = sim[torch.arange(x.size(0)), idx]
    denom = sim.sum(0) - np.exp(1 / t)
    return -torch.log(pos / denom).mean()


def interleave(z: torch.Tensor) -> torch.Tensor:
    """View-major rows (all first views, then all second views) in the official interleaved order."""
    n = z.shape[0] // 2
    return torch.stack([z[:n], z[n:]], 1).reshape(2 * n, -1)


def official_supcon(features: torch.Tensor, temperature: float = 0.5, base_temperature: float = 0.07) -> torch.Tensor:
    """AdvCL losses.SupConLoss with labels=None: features [N, views, d], already L2-normalised."""
    n, views = features.shape[:2]
    mask = torch.eye(n).repeat(views, views)
    contrast = torch.cat(torch.unbind(features, dim=1), dim=0)
    logits = contrast @ contrast.T / temperature
    logits = logits - logits.max(1, keepdim=True).values.detach()
    logits_mask = 1 - torch.eye(n * views)
    mask = mask * logits_mask
    log_prob = logits - torch.log((torch.exp(logits) * logits_mask).sum(1, keepdim=True))
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    return (-(temperature / base_temperature) * mean_log_prob_pos).view(views, n).mean()


def mlp_model(projector=(32, 16)):
    torch.manual_seed(0)
    return build_model(ModelSpec("mlp", 10, 1, 8, INFO.mean, INFO.std, projector))


def cnn_model(projector=(32, 16)):
    torch.manual_seed(0)
    return build_model(ModelSpec("cnn-small", 10, 1, 8, INFO.mean, INFO.std, projector))


def batch(n=24):
    x, y = load_dataset("digits", True).batch(torch.arange(n))
    return x, y


# ---------------------------------------------------------------- ACL
def test_acl_pair_loss_equals_the_official_nt_xent():
    torch.manual_seed(1)
    z = torch.randn(2 * 12, 16)
    method = ACL(ACLParams(), INFO)
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    ours, ref = method.pair_loss(z1), official_nt_xent(interleave(z2))
    assert torch.allclose(ours, ref, atol=1e-5)
    ours.backward()
    ref.backward()
    assert torch.allclose(z1.grad, z2.grad, atol=1e-6)        # nothing detached: the gradients agree too


def test_acl_ds_loss_is_the_mean_of_the_clean_and_adversarial_pair_losses():
    model, (x, y) = mlp_model(), batch()
    method = ACL(ACLParams(steps=3), INFO)
    method.setup(model)
    g = torch.Generator().manual_seed(3)
    ref_g = copy.deepcopy(g)
    out = method.loss(model, x, y, g)
    t1, t2 = method.views(x, ref_g)
    pair = torch.cat([t1, t2])
    adv = method.attack_pair(model, pair, ref_g)
    clean = official_nt_xent(interleave(model.project(pair)))
    robust = official_nt_xent(interleave(model.project(adv)))
    assert robust > clean + 0.01                 # the attack raised the pair's loss
    assert torch.allclose(out.loss, (clean + robust) / 2, atol=1e-5)
    assert (adv - pair).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1


def test_acl_a2s_attacks_only_the_first_view():
    model, (x, _) = mlp_model(), batch()
    method = ACL(ACLParams(variant="a2s", steps=2), INFO)
    method.setup(model)
    pair = torch.cat([x, x.flip(0)])
    adv = method.attack_pair(model, pair, torch.Generator().manual_seed(0), first_only=True)
    assert torch.equal(adv[len(x):], pair[len(x):]) and not torch.equal(adv[:len(x)], pair[:len(x)])


def test_dual_batchnorm_branch_takes_the_statistics_and_the_gradient():
    model, (x, _) = cnn_model(), batch()
    branch = batchnorm_branch(model)
    own_mean = model.encoder[1].running_mean.clone()
    model.train()
    with using_branch(model, branch):
        model.project(x).sum().backward()
    key = next(iter(branch))
    assert not torch.equal(branch[key].running_mean, own_mean)       # the branch saw the batch
    assert torch.equal(model.encoder[1].running_mean, own_mean)       # the model's own did not
    assert branch[key].weight.grad is not None and model.encoder[1].weight.grad is None
    assert model.encoder[1] is not branch[key]                       # swapped back


def test_acl_augmentation_is_simclrs_with_crop_scale_from_0_1():
    spec = acl_augment("natural")
    assert spec.crop_scale == (0.1, 1.0) and spec.jitter == (0.4, 0.4, 0.4, 0.1) and spec.gray_p == 0.2


# ---------------------------------------------------------------- DynACL
def test_dynacl_schedule_matches_the_official_loop():
    """train_DynACL.py: data reloaded at 1-based epochs ep % K == 1 with s = 1 − (ep − 1)/E; the adversarial
    weight min(1 + (ep // K)·(K/E)·λ, 2)."""
    E, K, lam = 1000, 50, 2 / 3
    s = None
    for ep in range(1, E + 1):
        if ep % K == 1:
            s = 1 - (ep - 1) / E
        w = min(1 + (ep // K) * (K / E) * lam, 2)
        ours = dynacl_schedule(ep - 1, E, K, lam)
        assert ours == pytest.approx((s, w)), ep
    assert dynacl_schedule(999, E, K, lam) == pytest.approx((0.05, 1 + 20 * 0.05 * lam))


def test_dynacl_annealed_augmentation_scales_every_operation():
    base = acl_augment("natural")
    a = annealed(base, 0.3)
    assert a.crop_scale == pytest.approx((1 - 0.9 * 0.3, 1.0))
    assert a.jitter == pytest.approx((0.12, 0.12, 0.12, 0.03)) and a.jitter_p == pytest.approx(0.24)
    assert a.gray_p == pytest.approx(0.06) and a.flip                      # the flip is not annealed
    assert annealed(base, 1.0) == base


def test_dynacl_loss_weights_the_two_streams_and_updates_the_momentum_network():
    model, (x, y) = mlp_model(), batch()
    method = DynACL(DynACLParams(steps=2, reload_frequency=1), INFO)
    method.epochs = 4
    method.setup(model)
    method.on_epoch_start(2)
    s, w = dynacl_schedule(2, 4, 1, 2 / 3)
    assert method.weight == pytest.approx(w) and w > 1
    key = method.modules["key"]
    with torch.no_grad():                         # the key network differs from the trained one
        for p in key.parameters():
            p.add_(0.01)
    key_before = [p.clone() for p in key.parameters()]
    g = torch.Generator().manual_seed(5)
    ref_g = copy.deepcopy(g)
    t1, t2 = method.views(x, ref_g)
    pair = torch.cat([t1, t2])
    proj = lambda xa: torch.cat([model.project(xa[:len(x)]), key.project(xa[len(x):])])  # noqa: E731
    adv = method.attack_pair(model, pair, ref_g, project=proj)
    clean, robust = official_nt_xent(interleave(proj(pair))), official_nt_xent(interleave(proj(adv)))
    out = method.loss(model, x, y, g)
    assert torch.allclose(out.loss, ((2 - w) * clean + w * robust) / 2, atol=1e-5)
    for pk, old, pq in zip(key.parameters(), key_before, model.parameters()):
        assert torch.allclose(pk, 0.99 * old + 0.01 * pq, atol=1e-6)


def test_dynacl_yields_its_momentum_network(tmp_path):
    ck = quick_train(tmp_path / "d", method="dynacl", epochs=1, batch_size=256, params={"steps": 1})
    saved = load_checkpoint(tmp_path / "d" / "checkpoint.pt", "test")
    key = {k[len("key."):]: v for k, v in saved["method_state"]["modules"].items() if k.startswith("key.")}
    assert key and all(torch.equal(saved["state_dict"][k], v) for k, v in key.items())
    assert ck["metrics"][0]["adv_loss"] > 0


# ---------------------------------------------------------------- AdvCL
def test_advcl_contrastive_loss_equals_the_official_supcon():
    torch.manual_seed(2)
    n = 10
    z = torch.randn(4 * n, 16)
    method = AdvCL(AdvCLParams(), INFO)
    ours = method.supcon(z, torch.zeros(n, dtype=torch.long))
    feats = F.normalize(torch.stack(torch.split(z, n), 1), dim=2)         # [N, 4, d] from view-major rows
    assert torch.allclose(ours, official_supcon(feats), atol=1e-4)


def test_advcl_high_frequency_view_equals_the_official_filter():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    r = 8
    ref = np.zeros(x.shape)
    for b in range(2):
        for c in range(3):
            spec = np.fft.fftshift(np.fft.fftn(x[b, c].numpy()))
            i, j = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
            mask = (np.sqrt((i - 16) ** 2 + (j - 16) ** 2) < r).astype(float)
            ref[b, c] = np.fft.ifftn(np.fft.ifftshift(spec * (1 - mask))).real
    ours = high_frequency(x, r)
    assert np.allclose(ours.numpy(), ref, atol=1e-5)
    assert float(ours.min()) < 0                   # unclamped, as the official view


def test_pseudo_labels_are_the_kmeans_labels_of_the_training_set():
    from sklearn.cluster import KMeans

    data = load_dataset("digits", True, limit=300)
    enc = mlp_model()
    encoder = torch.nn.Sequential(enc.normalize, enc.encoder)
    (centroids,) = fit_centroids(encoder, data, [10])
    with torch.no_grad():
        feats = encoder(data.batch()[0])
    km = KMeans(n_clusters=10, n_init=3, random_state=0).fit(feats.double().numpy())
    assert (assign(feats, centroids).numpy() == km.labels_).mean() > 0.99


def test_advcl_trains_on_its_teachers_clusters(tmp_path):
    quick_train(tmp_path / "t", method="simclr", epochs=1, batch_size=256)
    ck = quick_train(tmp_path / "a", method="advcl", epochs=1, batch_size=256, encoder=str(tmp_path / "t" /
                     "checkpoint.pt"), params={"clusters": [2, 10], "steps": 1})
    saved = load_checkpoint(tmp_path / "a" / "checkpoint.pt", "test")
    assert [tuple(c.shape) for c in saved["method_state"]["state"]["centroids"]] == [(2, 256), (10, 256)]
    assert ck["metrics"][0]["pseudo_ce"] > 0


# ---------------------------------------------------------------- DynACL++ and the protocols
def test_dynacl_pp_probes_first_then_fine_tunes(tmp_path):
    quick_train(tmp_path / "d", method="dynacl", epochs=1, batch_size=256, params={"steps": 1})
    enc = str(tmp_path / "d" / "checkpoint.pt")
    start = load_checkpoint(enc, "test")["state_dict"]
    quick_train(tmp_path / "p", method="dynacl++", epochs=1, batch_size=256, encoder=enc)   # probe epoch only
    probed = load_checkpoint(tmp_path / "p" / "checkpoint.pt", "test")["state_dict"]
    assert all(torch.equal(probed[k], start[k]) for k in probed if k.startswith("encoder."))
    method = METHODS.get("dynacl++")(METHODS.get("dynacl++").Params(), INFO)
    assert method.lr_scale(0) == 0.1 and method.lr_scale(10) == 1.0


def test_protocols_carry_the_robustssl_benchmarks_settings():
    slf, alf, aff = (METHODS.get(n) for n in ("slf", "alf", "aff"))
    for cls in (slf, alf):
        d = cls.train_defaults
        assert (d["lr"], d["batch_size"], d["epochs"], d["milestones"], d["weight_decay"]) == \
            (0.01, 512, 25, [10, 20], 2e-4)
    d = aff.train_defaults
    assert (d["lr"], d["batch_size"], d["epochs"], d["milestones"]) == (0.1, 128, 25, [15, 20])
    p = aff.Params()
    assert (p.objective, p.beta, p.steps, p.step_ratio, p.batchnorm) == ("trades", 6.0, 10, 0.25, "train")
    assert alf.step_ratio == 0.25 and alf.Params().steps == 10
    assert {"linear", "robust-linear", "finetune"} <= set(METHODS.names())    # the old names stay


SUITE = """
name: rs
data: {dataset: digits, test_limit: 60}
models:
  simclr: {method: simclr, model: cnn-small, epochs: 1, batch_size: 256}
  acl: {method: acl, model: cnn-small, epochs: 1, batch_size: 256, params: {steps: 2}}
  advcl: {method: advcl, model: cnn-small, encoder: simclr, epochs: 1, batch_size: 256, params: {clusters: [2, 10], steps: 2}}
  dynacl: {method: dynacl, model: cnn-small, epochs: 2, batch_size: 256, params: {steps: 2}}
  dynaclpp: {method: dynacl++, encoder: dynacl, epochs: 2, batch_size: 256, params: {probe_epochs: 1, steps: 2}}
%s
attacks:
  clean: {type: clean}
  pgd: {type: pgd, norm: linf, eps: 0.1, steps: 5}
"""


def test_every_method_takes_every_protocol_through_the_cli(tmp_path):
    rows = "\n".join(f"  {m}_{p}: {{method: {p}, encoder: {m}, epochs: 2, batch_size: 128, lr: 0.05}}"
                     for m in ("acl", "advcl", "dynacl", "dynaclpp") for p in ("slf", "alf", "aff"))
    (tmp_path / "s.yaml").write_text(SUITE % rows)
    assert main(["run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    recs = [json.loads(line) for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    cells = {(r["model"], r["attack"]) for r in recs}
    assert len(cells) == 24 and {r["method"] for r in recs} == {"slf", "alf", "aff"}
    aff = [r for r in recs if r["method"] == "aff" and r["attack"] == "clean"]
    assert all(r["clean_accuracy"] > 0.5 for r in aff)                    # fine-tuning learns the task


def test_robust_transfer_pretrains_on_other_classes_at_the_suites_size(tmp_path):
    (tmp_path / "t.yaml").write_text("""
name: tr
data: {dataset: digits, classes: [5, 6, 7, 8, 9], image_size: 16}
models:
  enc: {method: simclr, model: mlp, epochs: 1, batch_size: 256, pretrain_data: {dataset: digits, classes: [0, 1, 2, 3, 4]}}
  le: {method: slf, encoder: enc, epochs: 3, batch_size: 128, lr: 0.1}
attacks:
  clean: {type: clean}
""")
    assert main(["run", str(tmp_path / "t.yaml"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    (enc_dir,) = (tmp_path / "out" / "models").glob("enc-*")
    enc = load_checkpoint(enc_dir / "checkpoint.pt", "test")
    assert enc["dataset"] == "digits[0,1,2,3,4]@16px" and enc["model_spec"]["image_size"] == 16
    assert enc["train_config"]["classes"] == [0, 1, 2, 3, 4]
    (rec,) = [json.loads(line) for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert rec["dataset"] == "digits[5,6,7,8,9]@16px" and rec["n"] == 180      # 36 test digits per class
    assert rec["clean_accuracy"] > 0.5                                          # a 5-way head on the new classes


def test_class_subset_relabels_in_the_order_given_and_resizes():
    full = load_dataset("digits", False)
    sub = load_dataset("digits", False, classes=[7, 2], image_size=12)
    assert sorted(set(sub.labels.tolist())) == [0, 1] and len(sub) == int(((full.labels == 7) | (full.labels == 2)).sum())
    x, _ = sub.batch()
    assert x.shape[-2:] == (12, 12) and 0 <= float(x.min()) and float(x.max()) <= 1
    first7 = int(torch.nonzero(full.labels == 7)[0])
    first2 = int(torch.nonzero(full.labels == 2)[0])
    assert int(sub.labels[0]) == (0 if first7 < first2 else 1)


def test_the_paper_suite_has_every_method_under_every_protocol_and_the_leaderboards_labels():
    from rocl_bench.bench.suite import load_suite
    from rocl_bench.report.check import load_baseline

    root = Path(__file__).resolve().parent.parent
    suite = load_suite(root / "suites" / "robust_ssl.yaml", data_root="/nonexistent")
    labels = {m.label for m in suite.models.values() if m.label}
    wanted = {f"{m} + {p}" for m in ("RoCL", "ACL", "AdvCL", "DynACL", "DynACL++") for p in ("SLF", "ALF", "AFF")}
    assert labels == wanted
    doc = json.loads((root / "baselines" / "paper" / "robustssl_cifar10.json").read_text())
    assert {c["label"] for c in doc["cells"]} == wanted and len(doc["cells"]) == 30
    load_baseline(root / "baselines" / "paper" / "robustssl_cifar10.json")
    assert {a.attack.name for a in suite.attacks.values()} >= {"autoattack", "pgd"}
    methods = {m.train.method for m in suite.models.values()}
    assert methods >= {"rocl", "acl", "advcl", "dynacl", "dynacl++", "slf", "alf", "aff"}
    assert all(m.train.model == "resnet18-official" for m in suite.models.values())


def test_trades_loss_is_ce_plus_beta_times_the_kl_it_reports():
    from rocl_bench.methods.supervised import TradesParams, trades_loss

    model, (x, y) = mlp_model(), batch()
    g = torch.Generator().manual_seed(0)
    out = trades_loss(model, (model,), x, y, TradesParams(steps=2, beta=3.0), 0.1, 0.025, g)
    ce = F.cross_entropy(model(x), y)
    assert out.extras["kl"] > 0
    assert torch.allclose(out.loss, ce + 3.0 * out.extras["kl"], atol=1e-5)
    zero = trades_loss(model, (model,), x, y, TradesParams(steps=2, beta=0.0), 0.1, 0.025, g)
    assert torch.allclose(zero.loss, ce, atol=1e-6) and zero.correct == int((model(x).argmax(1) == y).sum())
