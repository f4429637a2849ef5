"""Pure representation metrics on normalised features (Wang & Isola 2020, and the margins Gupta et al. discuss)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> float:
    """E‖f(x) − f(x⁺)‖^α over positive pairs (two views of one image), features normalised: lower = more aligned."""
    return float((F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).norm(dim=1).pow(alpha).mean())


def uniformity(z: torch.Tensor, t: float = 2.0) -> float:
    """log E exp(−t‖f(x) − f(y)‖²) over distinct pairs: lower = more uniform on the sphere."""
    zn = F.normalize(z, dim=1)
    sq = torch.pdist(zn, p=2).pow(2)
    return float(torch.log(torch.exp(-t * sq).mean()))


def class_margin(z: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over points of (distance to the nearest other-class centroid − distance to its own centroid), divided
    by the mean within-class spread (distance to own centroid): > 0 means classes are separated."""
    zn = F.normalize(z, dim=1)
    classes = torch.unique(labels)
    centroids = torch.stack([zn[labels == c].mean(0) for c in classes])
    d = torch.cdist(zn, centroids)
    own_idx = torch.searchsorted(classes, labels)
    own = d.gather(1, own_idx[:, None]).squeeze(1)
    other = d.scatter(1, own_idx[:, None], float("inf")).amin(1)
    spread = own.mean().clamp(min=1e-12)
    return float(((other - own) / spread).mean())


def false_negative_fraction(labels: torch.Tensor, batches: list[torch.Tensor]) -> float:
    """Share of a contrastive batch's negative pairs (distinct instances) that are in fact the same class."""
    same = total = 0
    for idx in batches:
        lab = labels[idx]
        eq = (lab[:, None] == lab[None, :]).sum().item() - len(lab)
        same += eq
        total += len(lab) * (len(lab) - 1)
    return same / max(total, 1)


def relative_change(f_clean: torch.Tensor, f_pert: torch.Tensor) -> float:
    """Mean ‖f(x + δ) − f(x)‖ / ‖f(x)‖: how far a perturbation moves the representation, relative to its size."""
    return float(((f_pert - f_clean).norm(dim=1) / f_clean.norm(dim=1).clamp(min=1e-12)).mean())
