"""Small shared helpers for tests: train a digits model quietly, measure PGD robust accuracy with our engine."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rocl_bench.attacks import pgd
from rocl_bench.data import load_dataset
from rocl_bench.models.loading import classifier_from_checkpoint
from rocl_bench.train import make_train_config, train


def quick_train(out: Path, **fields: Any) -> dict:
    cfg = make_train_config({"dataset": "digits", "model": "mlp", "seed": 0, **fields}, "test")
    return train(cfg, out, progress=False, log=lambda s: None)


def pgd_accuracy(ckpt: dict, eps: float, steps: int = 20) -> tuple[float, float]:
    """(clean, robust) accuracy on the digits test set under ℓ∞ PGD-`steps` with a random start."""
    model = classifier_from_checkpoint(ckpt, "test")
    x, y = load_dataset("digits", False).batch()
    with torch.no_grad():
        clean = model(x).argmax(1) == y

    def loss_fn(xa: torch.Tensor, idx: torch.Tensor):
        logits = model(xa)
        return F.cross_entropy(logits, y[idx], reduction="none"), logits.argmax(1) != y[idx]

    x_adv = pgd(loss_fn, x, norm="linf", eps=eps, step=eps / 4, steps=steps, rand_init=True,
                generator=torch.Generator().manual_seed(0), track_success=True)
    with torch.no_grad():
        robust = clean & (model(x_adv).argmax(1) == y)
    return clean.float().mean().item(), robust.float().mean().item()
