"""Pseudo labels for label-free robust pre-training (AdvCL, DynACL++): k-means of a frozen encoder's features.

Centroids are fitted once on the un-augmented training set (scikit-learn's KMeans, seeded); during training a
batch's pseudo labels are its nearest centroids under the same frozen encoder, which is the label k-means gave
each training image, without the loop having to pass image indices.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data import epoch_batches
from ..runtime import eval_mode


@torch.no_grad()
def features_of(encoder: nn.Module, data: Any, batch_size: int = 512) -> torch.Tensor:
    """Features of every image of `data` (an ImageSet), in order, on the encoder's device, in eval mode."""
    device = next(encoder.parameters()).device
    out = []
    with eval_mode(encoder):
        for idx in epoch_batches(len(data), batch_size, torch.Generator(), shuffle=False, drop_last=False):
            x, _ = data.batch(idx)
            out.append(encoder(x.to(device)).float())
    return torch.cat(out)


def fit_centroids(encoder: nn.Module, data: Any, ks: list[int], seed: int = 0) -> list[torch.Tensor]:
    """One k-means fit per cluster count (Euclidean, as kmeans_pytorch in DynACL's assign_label.py)."""
    from sklearn.cluster import KMeans

    feats = features_of(encoder, data)
    points = feats.cpu().double().numpy()
    centroids = []
    for k in ks:
        k = min(k, len(points))
        km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(points)
        centroids.append(torch.as_tensor(km.cluster_centers_, dtype=torch.float32, device=feats.device))
    return centroids


def assign(features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """The nearest centroid of each feature row (its pseudo label)."""
    return torch.cdist(features.float(), centroids.to(features.device)).argmin(1)
