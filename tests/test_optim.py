"""LARS against a hand computation; the warm-up/cosine/step schedule."""
import pytest
import torch

from rocl_bench.train.optim import LARS, learning_rate


def test_lars_matches_hand_computation():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))          # ‖w‖ = 5
    opt = LARS([w], lr=1.0, momentum=0.9, weight_decay=0.1, trust_coef=0.001, eps=1e-8)
    w.grad = torch.tensor([0.6, 0.8])                           # ‖g‖ = 1
    opt.step()
    scale = 0.001 * 5 / (1 + 5 * 0.1 + 1e-8)
    d1 = (torch.tensor([0.6, 0.8]) + 0.1 * torch.tensor([3.0, 4.0])) * scale
    expected = torch.tensor([3.0, 4.0]) - d1
    assert torch.allclose(w.detach(), expected, atol=1e-7)
    # second step: momentum buffer = 0.9·d1 + d2
    w.grad = torch.tensor([0.0, 1.0])
    wn = expected.norm()
    scale2 = 0.001 * wn / (1 + wn * 0.1 + 1e-8)
    d2 = (torch.tensor([0.0, 1.0]) + 0.1 * expected) * scale2
    opt.step()
    assert torch.allclose(w.detach(), expected - (0.9 * d1 + d2), atol=1e-7)


def test_lars_leaves_zero_weights_to_plain_sgd():
    w = torch.nn.Parameter(torch.zeros(3))
    opt = LARS([w], lr=0.5, momentum=0.0, weight_decay=0.0)
    w.grad = torch.ones(3)
    opt.step()
    assert torch.allclose(w.detach(), torch.full((3,), -0.5))


def _lr(t, **kw):
    base = dict(total=100, schedule="cosine", warmup_epochs=0, warmup_multiplier=1.0, milestones=[], gamma=0.1,
                schedule_epochs=None)
    base.update(kw)
    return learning_rate(0.1, t, **base)


def test_gradual_warmup_multiplier_then_cosine():
    kw = dict(warmup_epochs=10, warmup_multiplier=15.0, schedule_epochs=1000, total=1000)
    assert _lr(0, **kw) == pytest.approx(0.1)
    assert _lr(5, **kw) == pytest.approx(0.1 * 8)
    assert _lr(10, **kw) == pytest.approx(1.5)
    assert _lr(505, **kw) == pytest.approx(0.75)
    assert _lr(1000, **kw) == pytest.approx(0.0, abs=1e-12)


def test_step_schedule_divides_at_milestones():
    kw = dict(schedule="step", milestones=[30, 50, 100])
    assert [_lr(t, **kw) for t in (0, 30, 50, 100)] == pytest.approx([0.1, 0.01, 0.001, 0.0001])


def test_plain_warmup_starts_from_zero():
    assert _lr(0, warmup_epochs=2) == 0.0
    assert _lr(1, warmup_epochs=2) == pytest.approx(0.05)
