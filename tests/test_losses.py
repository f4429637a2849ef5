"""NT-Xent (2- and 3-view, with masks) against a direct loop-based reference; TRADES KL."""
import math

import pytest
import torch
import torch.nn.functional as F

from rocl_bench.losses import nt_xent, nt_xent_anchor_rows, trades_kl
from rocl_bench.methods.false_negatives import FalseNegatives, keep_mask


def reference_nt_xent(z, views, tau, keep=None):
    """Loop over anchors and their positives, exactly as the official RoCL code defines the loss."""
    vn = z.shape[0]
    n = vn // views
    zn = [v / v.norm() for v in z.double()]
    total = 0.0
    for i in range(vn):
        denom = 0.0
        for j in range(vn):
            if j == i:
                continue
            positive = j % n == i % n
            if keep is not None and not keep[i, j] and not positive:
                continue
            denom += math.exp(float(zn[i] @ zn[j]) / tau)
        for j in range(vn):
            if j != i and j % n == i % n:
                total += -(float(zn[i] @ zn[j]) / tau - math.log(denom))
    return total / vn


@pytest.mark.parametrize("views", [2, 3])
@pytest.mark.parametrize("tau", [0.5, 0.1])
def test_nt_xent_matches_loop_reference(views, tau):
    g = torch.Generator().manual_seed(views)
    z = torch.randn(views * 6, 16, generator=g)
    got = nt_xent(z, views, tau).item()
    assert got == pytest.approx(reference_nt_xent(z, views, tau), abs=1e-6, rel=1e-6)


@pytest.mark.parametrize("views", [2, 3])
def test_nt_xent_with_oracle_mask_matches_reference(views):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(views * 8, 12, generator=g)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2])
    keep = keep_mask(FalseNegatives("oracle"), z, labels, views)
    got = nt_xent(z, views, 0.5, keep=keep).item()
    assert got == pytest.approx(reference_nt_xent(z, views, 0.5, keep), abs=1e-6, rel=1e-6)


def test_oracle_mask_removes_exactly_same_class_negatives():
    labels = torch.tensor([0, 1, 0, 2, 1])
    z = torch.randn(10, 4)
    keep = keep_mask(FalseNegatives("oracle"), z, labels, 2)
    lab = labels.repeat(2)
    n = 5
    for i in range(10):
        for j in range(10):
            same_instance = i % n == j % n
            same_class = bool(lab[i] == lab[j])
            assert bool(keep[i, j]) == (same_instance or not same_class), (i, j)


def test_similarity_mask_drops_top_k_nearest_non_positives():
    z = torch.randn(12, 8, generator=torch.Generator().manual_seed(3))
    keep = keep_mask(FalseNegatives("similarity", top_k=2), z, None, 2)
    n = 6
    zn = F.normalize(z, dim=1)
    sim = zn @ zn.T
    for i in range(12):
        candidates = [j for j in range(12) if j % n != i % n]
        dropped = {j for j in candidates if not keep[i, j]}
        top = set(sorted(candidates, key=lambda j: -float(sim[i, j]))[:2])
        assert dropped == top
        assert all(keep[i, j] for j in range(12) if j % n == i % n)


def test_no_removal_gives_no_mask():
    assert keep_mask(FalseNegatives("none"), torch.randn(4, 2), None, 2) is None


def test_anchor_rows_give_the_gradient_direction_of_the_full_loss():
    """The attack's cheap per-row loss has the same input gradient (up to 1/2N) as the 2N×2N loss."""
    g = torch.Generator().manual_seed(0)
    za = torch.randn(5, 7, generator=g, requires_grad=True)
    zo = torch.randn(5, 7, generator=g)
    full = nt_xent(torch.cat([za, zo]), 2, 0.5, detach_keys=True)
    g_full, = torch.autograd.grad(full, za)
    rows = nt_xent_anchor_rows(za, zo, 0.5).sum() / 10
    g_rows, = torch.autograd.grad(rows, za)
    assert torch.allclose(g_full, g_rows, atol=1e-6)


def test_detach_keys_changes_gradient_only_when_off():
    z = torch.randn(8, 5, requires_grad=True)
    a, = torch.autograd.grad(nt_xent(z, 2, 0.5, detach_keys=True), z)
    b, = torch.autograd.grad(nt_xent(z, 2, 0.5, detach_keys=False), z)
    assert not torch.allclose(a, b)
    assert nt_xent(z, 2, 0.5, detach_keys=True).item() == pytest.approx(nt_xent(z, 2, 0.5, detach_keys=False).item())


def test_trades_kl_is_zero_for_equal_logits_and_positive_otherwise():
    a = torch.randn(4, 10)
    assert torch.allclose(trades_kl(a, a), torch.zeros(4), atol=1e-6)
    assert (trades_kl(a + torch.randn(4, 10), a) > 0).all()
