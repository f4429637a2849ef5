"""Seeded mini-batch order over an in-memory set: no DataLoader workers, so CPU runs are reproducible."""
from __future__ import annotations

from typing import Iterator

import torch


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, shuffle: bool = True,
                  drop_last: bool = True, rank: int = 0, world: int = 1) -> Iterator[torch.Tensor]:
    """Index batches for one epoch. Dropping the ragged tail keeps BatchNorm and contrastive batches full.

    With world > 1 each rank takes an equal, disjoint share of the same permutation, as a DistributedSampler
    with a per-epoch seed does, and `batch_size` is the per-rank batch: step k's global batch (world ×
    batch_size points) is the k-th slice of the permutation, and rank r holds the r-th block of it. So the
    ranks' batches concatenated in rank order are exactly one process's batch of world × batch_size points.
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} is outside world size {world}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if world > 1:
        per_rank = n // world
        full = per_rank // batch_size if per_rank >= batch_size else 0
        if not drop_last or full == 0:          # no full batch: one batch of the share, like one process
            tail = per_rank - full * batch_size
        else:
            tail = 0
        head = order[: full * batch_size * world].view(full, world, batch_size)[:, rank].reshape(-1)
        rest = order[full * batch_size * world: (full * batch_size + tail) * world].view(world, tail)[rank]
        order = torch.cat([head, rest])
    m = order.numel()
    if m == 0:  # nothing to give (n < world): no empty batch
        return
    if m < batch_size:
        yield order
        return
    stop = (m // batch_size) * batch_size if drop_last else m
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]
