"""Evaluation attacks: budgets hold, our PGD is not weaker than the references, AutoAttack is reproduced exactly."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

from rocl_bench.attacks import project_l1_box
from rocl_bench.attacks.evaluate import AttackBoundsError, EvalResult, check_bounds, evaluate
from rocl_bench.attacks.projections import distance
from rocl_bench.attacks import Attack, build_attack, suite_attack_names
from rocl_bench.errors import UserError

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: extra intra-op threads only add overhead, and on a busy 2-core machine their
    spin-waiting made this file ~8x slower. Restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# One cheap configuration per attack type and norm (budgets on 8×8 digits in [0, 1]).
CHEAP = [
    {"type": "clean"},
    {"type": "pgd", "norm": "linf", "eps": 0.1, "steps": 10},
    {"type": "pgd", "norm": "linf", "eps": 0.1, "steps": 5, "loss": "cw", "restarts": 2},
    {"type": "pgd", "norm": "l2", "eps": 0.75, "steps": 10},
    {"type": "pgd", "norm": "l1", "eps": 2.0, "steps": 10},
    {"type": "pgd", "norm": "l1", "eps": 0.5, "steps": 10, "l1_sparsity": 0.9, "random_start": False},
    {"type": "eot-pgd", "norm": "linf", "eps": 0.1, "steps": 5, "eot_samples": 2},
    {"type": "eot-pgd", "norm": "l2", "eps": 0.75, "steps": 5, "eot_samples": 2},
    {"type": "fgsm", "eps": 0.1},
    {"type": "cw", "eps": 0.75, "steps": 20, "c": 10.0},
    {"type": "apgd", "norm": "Linf", "eps": 0.1, "steps": 10},
    {"type": "apgd", "norm": "L2", "eps": 0.75, "steps": 10, "loss": "dlr"},
    {"type": "apgd", "norm": "L1", "eps": 2.0, "steps": 10},
    {"type": "square", "norm": "Linf", "eps": 0.1, "queries": 50},
    {"type": "square", "norm": "L2", "eps": 0.75, "queries": 50},
    {"type": "autoattack", "norm": "Linf", "eps": 0.1, "version": "custom", "attacks": ["apgd-ce"]},
    {"type": "autoattack", "norm": "L2", "eps": 0.75, "version": "custom", "attacks": ["apgd-ce"]},
    {"type": "autoattack", "norm": "L1", "eps": 2.0, "version": "custom", "attacks": ["apgd-ce"]},
]


def _id(spec: dict) -> str:
    return "-".join(str(spec.get(k, "")) for k in ("type", "norm", "loss")).strip("-")


def robust_count(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor) -> int:
    """Clean-correct points whose adversarial version is still classified correctly (for reference attacks)."""
    with torch.no_grad():
        return int(((model(x).argmax(1) == y) & (model(x_adv).argmax(1) == y)).sum())


# ---------------------------------------------------------------- budgets and the box
def test_every_registered_type_is_covered() -> None:
    """Every fixed-ε type is here; the minimum-norm family (no ε-ball to check) is tests/test_min_norm.py's."""
    from rocl_bench.attacks import Family, family_of

    names = set(suite_attack_names())
    min_norm = {n for n in names if family_of(n) is Family.MIN_NORM}
    assert {s["type"] for s in CHEAP} == names - min_norm
    assert min_norm == {"fmn", "fab"}          # the types tests/test_min_norm.py runs


@pytest.mark.parametrize("spec", CHEAP, ids=_id)
def test_eps_ball_and_box_hold(spec: dict, madry_mlp: nn.Module, digits_test) -> None:
    attack = build_attack(spec, "test")
    x, y = digits_test
    g = torch.Generator().manual_seed(1)
    noise = torch.rand((24, *x.shape[1:]), generator=g)         # random images, labelled by the model
    with torch.no_grad():
        y_noise = madry_mlp(noise).argmax(1)
    n_real, n_noise = (12, 8) if spec["type"] == "autoattack" else (48, 24)   # its APGD runs 5 restarts
    for xs, ys in ((x[:n_real], y[:n_real]), (noise[:n_noise], y_noise[:n_noise])):
        res = evaluate(madry_mlp, attack, xs, ys, batch_size=16, return_adv=True)
        assert res.x_adv is not None and res.x_adv.shape == xs.shape
        assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
        if attack.norm is None:
            assert torch.equal(res.x_adv, xs)
        else:
            d = distance((res.x_adv - xs).double(), attack.norm)
            assert float(d.max()) <= attack.eps * (1 + 1e-5) + 1e-6
        assert not bool((res.robust & ~res.clean_correct).any())
        assert all(isinstance(f, str) for f in res.flags)


@dataclass(frozen=True)
class _Overshoot(Attack):
    """A deliberately buggy attack for the bounds checker."""

    name: ClassVar[str] = "overshoot"
    norm: str = "l1"
    eps: float = 1.0
    box: bool = False

    def run(self, model, x, y, generator):
        if self.box:
            return (x + 0.5).clamp(max=1.5)
        room = torch.where(x < 0.5, 1.0, -1.0)            # every pixel has room of 0.5 one way
        return x + room * (1.01 * self.eps / x[0].numel())   # inside the box, 1 % over the ℓ1 budget


def test_bounds_checker_catches_a_buggy_attack(madry_mlp: nn.Module, digits_test) -> None:
    x, y = digits_test
    x = x[:20]
    with pytest.raises(AttackBoundsError, match="outside the l1 ball"):
        evaluate(madry_mlp, _Overshoot(), x, y[:20])
    with pytest.raises(AttackBoundsError, match=r"outside the \[0, 1\] box"):
        evaluate(madry_mlp, _Overshoot(box=True), x, y[:20])
    with pytest.raises(AttackBoundsError, match="non-finite"):
        check_bounds(build_attack({"type": "pgd", "eps": 0.1}, "t"), x, torch.full_like(x, float("nan")))
    assert issubclass(AttackBoundsError, AssertionError)


@pytest.mark.parametrize("mode", [True, False])
def test_evaluate_restores_mode_and_global_rng(mode: bool, digits_test) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Dropout(0.5), nn.ReLU(), nn.Linear(32, 10))
    model.train(mode)
    seen = []
    model.register_forward_pre_hook(lambda m, inp: seen.append(m.training))
    x, y = digits_test
    before = torch.get_rng_state()
    evaluate(model, build_attack({"type": "pgd", "eps": 0.1, "steps": 3}, "t"), x[:32], y[:32])
    evaluate(model, build_attack({"type": "fgsm", "eps": 0.1}, "t"), x[:32], y[:32])
    assert model.training is mode
    assert seen and not any(seen)               # every forward of the evaluation ran in eval mode
    assert torch.equal(torch.get_rng_state(), before)


def test_evaluate_is_deterministic_for_a_seed(standard_mlp: nn.Module, digits_test) -> None:
    x, y = digits_test
    attack = build_attack({"type": "pgd", "norm": "l2", "eps": 0.5, "steps": 5}, "t")
    a = evaluate(standard_mlp, attack, x, y, seed=3, return_adv=True)
    b = evaluate(standard_mlp, attack, x, y, seed=3, return_adv=True)
    c = evaluate(standard_mlp, attack, x, y, seed=4, return_adv=True)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.robust, b.robust)
    assert not torch.equal(a.x_adv, c.x_adv)


# ---------------------------------------------------------------- robust masks
class _FlakyModel(nn.Module):
    """Wrong on the odd points during the clean pass (its first n inputs) only, right afterwards.

    The label is written in pixel 0 (as y/9) and 'odd' in pixel 1, so subsets and batches work.
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.seen = n, 0
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clean_pass = self.seen < self.n
        self.seen += len(x)
        y = (x.flatten(1)[:, 0] * 9).round().long().clamp(0, 9)
        logits = torch.nn.functional.one_hot(y, 10).float() * 5 + self.w
        if clean_pass:
            odd = x.flatten(1)[:, 1] > 0.5
            logits = torch.where(odd[:, None], logits.roll(1, 1), logits)
        return logits


class _Spy(Attack):
    name = "spy"
    norm = "linf"
    eps = 0.1

    def __init__(self) -> None:
        self.seen = 0

    def run(self, model, x, y, generator):
        self.seen += len(x)
        return x.clone()


def test_clean_wrong_points_are_never_robust_nor_attacked() -> None:
    n = 40
    y = torch.arange(n) % 10
    x = torch.zeros(n, 1, 8, 8)
    x.view(n, -1)[:, 0] = y / 9
    x.view(n, -1)[:, 1] = (torch.arange(n) % 2).float()     # odd points: wrong in the clean pass only
    spy = _Spy()
    res = evaluate(_FlakyModel(n), spy, x, y, batch_size=7)
    assert int(res.clean_correct.sum()) == n // 2
    assert spy.seen == n // 2                              # the attack only ever saw clean-correct points
    assert torch.equal(res.robust, res.clean_correct)       # odd points are right now, yet not robust
    res = evaluate(_FlakyModel(n), build_attack("clean", "t"), x, y, batch_size=7)
    assert torch.equal(res.robust, res.clean_correct)


# ---------------------------------------------------------------- strength against the references
@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.5)])
@pytest.mark.parametrize("which", ["madry", "standard"])
def test_our_pgd_is_not_weaker_than_torchattacks(norm: str, eps: float, which: str, request, digits_test) -> None:
    """Same eps, steps and step size. Without a random start both are deterministic and ours (which keeps a
    point's first fooling iterate) can only be stronger; with one, compare the mean over three seeds."""
    import torchattacks

    model = request.getfixturevalue(f"{which}_mlp")
    x, y = digits_test
    steps = 10
    ref_cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    for random_start, seeds in ((False, [0]), (True, [0, 1, 2])):
        ours = build_attack({"type": "pgd", "norm": norm, "eps": eps, "steps": steps,
                             "random_start": random_start}, "t")
        mine, theirs = [], []
        for seed in seeds:
            res = evaluate(model, ours, x, y, seed=seed)
            mine.append(int(res.robust.sum()))
            torch.manual_seed(seed)
            ref = ref_cls(model, eps=eps, alpha=ours.step, steps=steps, random_start=random_start)
            theirs.append(robust_count(model, x, y, ref(x, y)))
        assert sum(mine) / len(seeds) <= sum(theirs) / len(seeds) + 1, (random_start, mine, theirs)
        assert max(mine) < int(res.clean_correct.sum())


def test_pgd_margin_loss_is_a_real_attack(madry_mlp: nn.Module, digits_test) -> None:
    # torchattacks has no PGD on the CW margin loss, so no direct comparison: check it is at least as strong
    # as FGSM and close to CE-PGD on the Madry model.
    x, y = digits_test
    cw = evaluate(madry_mlp, build_attack({"type": "pgd", "eps": 0.1, "loss": "cw"}, "t"), x, y)
    ce = evaluate(madry_mlp, build_attack({"type": "pgd", "eps": 0.1}, "t"), x, y)
    fgsm = evaluate(madry_mlp, build_attack({"type": "fgsm", "eps": 0.1}, "t"), x, y)
    assert int(cw.robust.sum()) <= int(fgsm.robust.sum())
    assert abs(int(cw.robust.sum()) - int(ce.robust.sum())) <= 0.03 * len(y)


@pytest.mark.parametrize("eps", [1.0, 2.0])
def test_our_l1_pgd_matches_apgd_l1(eps: float, madry_mlp: nn.Module, digits_test) -> None:
    x, y = digits_test
    ours = evaluate(madry_mlp, build_attack({"type": "pgd", "norm": "l1", "eps": eps}, "t"), x, y)
    apgd = evaluate(madry_mlp, build_attack({"type": "apgd", "norm": "L1", "eps": eps, "steps": 50}, "t"), x, y)
    assert int(ours.robust.sum()) <= int(apgd.robust.sum()) + 0.03 * len(y)
    assert int(ours.robust.sum()) < int(ours.clean_correct.sum())


def _project_l1_box_reference(v: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Slow reference: bisection on λ for d_i = sign(v_i)·clip(|v_i| − λ, 0, c_i), in float64."""
    v, x = v.double().flatten(1), x.double().flatten(1)
    cap = torch.where(v > 0, 1 - x, x).clamp(min=0)
    out = []
    for vi, ci in zip(v, cap):
        def shrink(lam: float) -> torch.Tensor:
            return torch.minimum((vi.abs() - lam).clamp(min=0), ci)
        if float(shrink(0.0).sum()) <= eps:
            out.append(torch.sign(vi) * shrink(0.0))
            continue
        lo, hi = 0.0, float(vi.abs().max())
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if float(shrink(mid).sum()) > eps else (lo, mid)
        out.append(torch.sign(vi) * shrink(hi))
    return torch.stack(out)


@pytest.mark.parametrize("eps", [0.3, 2.0, 10.0, 1000.0])
def test_l1_projection_matches_bisection(eps: float) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 8, 8, generator=g)
    x[:10] = (x[:10] > 0.5).float()                                     # images with pixels on the box faces
    v = torch.randn(40, 1, 8, 8, generator=g) * torch.rand(40, 1, 1, 1, generator=g) * 2
    v[20:25] = 0.0
    d = project_l1_box(v, x, eps)
    ref = _project_l1_box_reference(v, x, eps)
    assert torch.allclose(d.double().flatten(1), ref, atol=1e-5, rtol=0)
    assert float(d.abs().flatten(1).sum(1).max()) <= eps + 1e-5
    assert float((x + d).min()) >= 0 and float((x + d).max()) <= 1


@pytest.mark.parametrize("norm,eps_list", [("linf", [0.03, 0.1, 0.2]), ("l2", [0.25, 0.5, 1.0]),
                                           ("l1", [0.5, 1.0, 2.0])])
def test_robust_accuracy_falls_with_eps(norm: str, eps_list: list[float], madry_mlp: nn.Module,
                                        digits_test) -> None:
    x, y = digits_test
    counts = [int(evaluate(madry_mlp, build_attack({"type": "pgd", "norm": norm, "eps": e}, "t"), x, y)
                  .robust.sum()) for e in eps_list]
    assert counts == sorted(counts, reverse=True), counts
    assert counts[0] > counts[-1]


# ---------------------------------------------------------------- AutoAttack, exactly as pyautoattack
def _direct_autoattack(model, x, y, *, batch_size: int, **kw) -> torch.Tensor:
    from pyautoattack import AutoAttack

    aa = AutoAttack(model, seed=0, device=x.device, **kw)
    x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    return x_adv


@pytest.mark.parametrize("version,n,bs", [("custom", 360, 100), ("standard", 40, 64)])
def test_autoattack_wrapper_equals_pyautoattack(version: str, n: int, bs: int, madry_mlp: nn.Module,
                                                digits_test) -> None:
    x, y = digits_test
    x, y = x[:n], y[:n]
    extra = {"attacks": ["apgd-ce", "apgd-t"]} if version == "custom" else {}
    spec = {"type": "autoattack", "norm": "Linf", "eps": 0.1, "version": version, **extra}
    ours = evaluate(madry_mlp, build_attack(spec, "t"), x, y, batch_size=bs, seed=0, return_adv=True)
    direct = _direct_autoattack(madry_mlp, x, y, batch_size=bs, norm="Linf", eps=0.1, version=version, **extra)
    with torch.no_grad():
        direct_robust = madry_mlp(direct).argmax(1) == y
    assert torch.equal(ours.robust, direct_robust)
    assert torch.equal(ours.x_adv, direct)
    assert 0 < int(ours.robust.sum()) < int(ours.clean_correct.sum())


class _Softmax(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).softmax(1)


def test_autoattack_checks_become_flags_and_nothing_is_printed(madry_mlp: nn.Module, digits_test, capsys,
                                                              caplog) -> None:
    x, y = digits_test
    caplog.set_level(logging.DEBUG)
    spec = {"type": "autoattack", "eps": 0.1, "version": "custom", "attacks": ["apgd-ce"]}
    res = evaluate(_Softmax(madry_mlp), build_attack(spec, "t"), x[:20], y[:20])
    assert any("probability distribution" in f for f in res.flags), res.flags
    assert all(f.startswith("pyautoattack: ") for f in res.flags)
    assert capsys.readouterr().out == ""
    assert not [r for r in caplog.records if r.name == "auto-attack"]
    assert evaluate(madry_mlp, build_attack(spec, "t"), x[:20], y[:20]).flags == []


# ---------------------------------------------------------------- configuration mistakes
@pytest.mark.parametrize("mapping,match", [
    ({"type": "pdg", "eps": 0.1}, r"unknown attack 'pdg' \(did you mean 'pgd'\?\); choose from: .*autoattack"),
    ({"eps": 0.1}, "missing required key 'type'; choose from"),
    ({"type": "pgd", "eps": 0.1, "stpes": 10}, r"test: unknown key 'stpes' \(did you mean 'steps'\?\)"),
    ({"type": "pgd", "eps": -0.1}, r"test\.eps: must be positive"),
    ({"type": "pgd", "eps": 0.1, "steps": 0}, r"test\.steps: must be between 1"),
    ({"type": "pgd", "eps": 2.0}, r"test\.eps: an linf budget"),
    ({"type": "pgd", "eps": 0.1, "steps": "ten"}, r"test\.steps: expected int"),
    ({"type": "pgd", "eps": 0.1, "norm": "l3"}, r"test\.norm: 'l3' is not allowed"),
    ({"type": "pgd", "eps": 0.1, "loss": "dlr"}, r"test\.loss: 'dlr' is not allowed"),
    ({"type": "pgd", "eps": 0.1, "restarts": 3, "random_start": False}, r"test\.restarts"),
    ({"type": "pgd"}, "missing required key 'eps'"),
    ({"type": "eot-pgd", "eps": 0.1, "norm": "l1"}, r"test\.norm: 'l1' is not allowed"),
    ({"type": "square", "eps": 0.1, "norm": "L1"}, r"test\.norm: 'L1' is not allowed"),
    ({"type": "autoattack", "eps": 0.1, "attacks": ["apgd-ce"]}, r"test\.attacks: only allowed with version"),
    ({"type": "autoattack", "eps": 0.1, "version": "custom"}, r"test\.attacks: version 'custom' needs"),
    ({"type": "autoattack", "eps": 0.1, "version": "custom", "attacks": ["apgd"]}, r"test\.attacks\[0\]"),
    ({"type": "cw", "c": 1.0}, "missing required key 'eps'"),
    ("nope", "unknown attack 'nope'"),
    (["pgd"], "expected a mapping"),
])
def test_config_mistakes_are_one_line_user_errors(mapping, match: str) -> None:
    with pytest.raises(UserError, match=match) as e:
        build_attack(mapping, "test")
    assert "\n" not in str(e.value)


def test_config_accepts_fractions_and_either_norm_spelling() -> None:
    a = build_attack({"type": "apgd", "eps": "8/255", "norm": "Linf"}, "t")
    assert a.norm == "linf" and a.eps == pytest.approx(8 / 255)
    assert build_attack({"type": "pgd", "eps": 1, "norm": "L2"}, "t").norm == "l2"
    p = build_attack({"type": "pgd", "eps": 0.1, "steps": 10}, "t")
    assert p.step == pytest.approx(0.025)
    assert p.describe()["type"] == "pgd" and p.describe()["eps"] == 0.1
    assert build_attack("clean", "t").norm is None


def test_budget_larger_than_the_image_is_a_user_error(madry_mlp: nn.Module, digits_test) -> None:
    x, y = digits_test
    with pytest.raises(UserError, match=r"l1 eps=65 is larger .* 64 values .* use eps <= 64"):
        evaluate(madry_mlp, build_attack({"type": "pgd", "norm": "l1", "eps": 65}, "t"), x[:4], y[:4])
    with pytest.raises(UserError, match=r"l2 eps=9 is larger"):
        evaluate(madry_mlp, build_attack({"type": "apgd", "norm": "L2", "eps": 9}, "t"), x[:4], y[:4])
    evaluate(madry_mlp, build_attack({"type": "pgd", "norm": "l1", "eps": 64, "steps": 2}, "t"), x[:4], y[:4])


def test_eval_result_accuracies() -> None:
    r = EvalResult(torch.tensor([True, True, False, True]), torch.tensor([True, False, False, False]))
    assert r.clean_accuracy == 0.75 and r.robust_accuracy == 0.25 and r.n == 4


# ---------------------------------------------------------------- randomized models
class _Noisy(nn.Module):
    """Gaussian input noise drawn from torch's global RNG (what a smoothed classifier does)."""

    def __init__(self, inner: nn.Module, sigma: float) -> None:
        super().__init__()
        self.inner, self.sigma = inner, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner((x + self.sigma * torch.randn_like(x)).clamp(0, 1))


def test_eot_pgd_on_a_randomized_model(madry_mlp: nn.Module, digits_test) -> None:
    x, y = digits_test
    noisy = _Noisy(madry_mlp, 0.1)
    eot = build_attack({"type": "eot-pgd", "eps": 0.1, "steps": 10, "eot_samples": 4}, "t")
    a = evaluate(noisy, eot, x[:120], y[:120], seed=1, return_adv=True)
    b = evaluate(noisy, eot, x[:120], y[:120], seed=1, return_adv=True)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.robust, b.robust)      # seeded, randomness included
    assert int(a.robust.sum()) < int(a.clean_correct.sum())
    # with one sample and a deterministic model, EOT-PGD is plain PGD without early stopping
    det = evaluate(madry_mlp, build_attack({"type": "eot-pgd", "eps": 0.1, "eot_samples": 1}, "t"), x, y)
    pgd = evaluate(madry_mlp, build_attack({"type": "pgd", "eps": 0.1}, "t"), x, y)
    assert abs(int(det.robust.sum()) - int(pgd.robust.sum())) <= 3
