"""Seeded mini-batch order over an in-memory set: no DataLoader workers, so CPU runs are reproducible."""
from __future__ import annotations

from typing import Iterator

import torch


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, shuffle: bool = True,
                  drop_last: bool = True, rank: int = 0, world: int = 1) -> Iterator[torch.Tensor]:
    """Index batches for one epoch. Dropping the ragged tail keeps BatchNorm and contrastive batches full.

    With world > 1 each rank takes an equal, disjoint share of the same permutation (the global batch is
    world * batch_size), which is what a DistributedSampler with a per-epoch seed does.
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} is outside world size {world}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    per_rank = n // world
    order = order[: per_rank * world].view(per_rank, world)[:, rank] if world > 1 else order
    m = order.numel()
    if m == 0:  # nothing to give (n < world): no empty batch
        return
    if m < batch_size:
        yield order
        return
    stop = (m // batch_size) * batch_size if drop_last else m
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]
