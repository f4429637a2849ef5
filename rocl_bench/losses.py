"""Pure loss functions: NT-Xent over any number of views (with a negative mask), and TRADES' KL."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def similarity_logits(z: torch.Tensor, temperature: float, detach_keys: bool = True) -> torch.Tensor:
    """Cosine similarities / τ of every row of z against every row (keys detached as in the official RoCL code)."""
    zn = F.normalize(z.float(), dim=1, eps=1e-8)
    keys = zn.detach() if detach_keys else zn
    return zn @ keys.T / temperature


def nt_xent(z: torch.Tensor, views: int, temperature: float = 0.5, detach_keys: bool = True,
            keep: torch.Tensor | None = None) -> torch.Tensor:
    """NT-Xent over `views` stacked views of N instances (z is (views·N) × d, view-major).

    Each anchor's denominator holds every other row (only the self-similarity is masked); each anchor has
    views−1 positives (its other views). The sum of −log p over all (anchor, positive) pairs is divided by the
    number of anchors, which is exactly the official RoCL normalisation (1/2N for two views, 1/3N for three).
    `keep` (views·N × views·N, bool) drops entries from the denominators, e.g. false negatives; positives are
    always kept.
    """
    vn = z.shape[0]
    n = vn // views
    logits = similarity_logits(z, temperature, detach_keys)
    inst = torch.arange(vn, device=z.device) % n
    positive = (inst[:, None] == inst[None, :])
    positive.fill_diagonal_(False)
    drop = torch.eye(vn, dtype=torch.bool, device=z.device)
    if keep is not None:
        drop = drop | (~keep & ~positive)
    logits = logits.masked_fill(drop, float("-inf"))
    log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return -(log_p[positive]).sum() / vn


def nt_xent_anchor_rows(z_anchor: torch.Tensor, z_other: torch.Tensor, temperature: float = 0.5,
                        keep: torch.Tensor | None = None) -> torch.Tensor:
    """Per-instance NT-Xent of anchors z_anchor[i] against the 2-view batch (z_anchor ∪ z_other), keys detached.

    With detached keys, the gradient of the two-view loss with respect to the anchor view flows only through
    the anchor's own rows, so the instance-wise attack needs these N rows alone (times 1/2N): no second
    forward of the fixed view per attack step.
    """
    za = F.normalize(z_anchor.float(), dim=1, eps=1e-8)
    keys = torch.cat([za, F.normalize(z_other.float(), dim=1, eps=1e-8)]).detach()
    n = za.shape[0]
    logits = za @ keys.T / temperature
    idx = torch.arange(n, device=za.device)
    drop = torch.zeros_like(logits, dtype=torch.bool)
    drop[idx, idx] = True
    if keep is not None:
        pos = torch.zeros_like(drop)
        pos[idx, idx + n] = True
        drop = drop | (~keep[:n] & ~pos)
    logits = logits.masked_fill(drop, float("-inf"))
    log_p = logits[idx, idx + n] - torch.logsumexp(logits, dim=1)
    return -log_p


def trades_kl(logits_adv: torch.Tensor, logits_clean: torch.Tensor) -> torch.Tensor:
    """Per-example KL(p_clean ‖ p_adv), the robustness term of TRADES (Zhang et al. 2019)."""
    return F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_clean, dim=1), reduction="none").sum(1)
