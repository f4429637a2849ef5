"""Shared fixtures: digits models trained once per test session (a couple of seconds each)."""
from __future__ import annotations

import pytest
import torch

from rocl_bench.data import load_dataset
from rocl_bench.models.loading import classifier_from_checkpoint
from rocl_bench.train import make_train_config, train


def _trained_mlp(tmp_path_factory: pytest.TempPathFactory, method: str) -> torch.nn.Module:
    out = tmp_path_factory.mktemp(f"digits-{method}")
    cfg = make_train_config({"method": method, "dataset": "digits", "model": "mlp", "epochs": 15, "seed": 0,
                             "batch_size": 64}, "test")
    ckpt = train(cfg, out, progress=False, log=lambda s: None)
    return classifier_from_checkpoint(ckpt, out)


@pytest.fixture(scope="session")
def digits_test() -> tuple[torch.Tensor, torch.Tensor]:
    """The 360-image digits test set: floats in [0, 1] (N×1×8×8) and labels."""
    return load_dataset("digits", False).batch()


@pytest.fixture(scope="session")
def madry_mlp(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    """A Madry (ℓ∞ PGD, ε = 0.1) adversarially trained digits MLP, in eval mode. Do not train it further."""
    return _trained_mlp(tmp_path_factory, "madry")


@pytest.fixture(scope="session")
def standard_mlp(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    """A standard (cross-entropy) digits MLP, in eval mode. Do not train it further."""
    return _trained_mlp(tmp_path_factory, "standard")
