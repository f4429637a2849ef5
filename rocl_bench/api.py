"""Python entry points: evaluate your own nn.Module, run a suite, list what is registered (numbers out, no CLI)."""
from __future__ import annotations

import time
from typing import Any, Mapping

import torch
from torch import nn


def evaluate(model: nn.Module, attacks: Mapping[str, Any], data: str | tuple[torch.Tensor, torch.Tensor] = "digits",
             *, limit: int | None = None, data_root: str | None = None, batch_size: int = 256, seed: int = 0,
             device: str = "auto", name: str = "model") -> "Any":
    """Attack `model` (inputs in [0, 1], normalising inside) with each named attack spec; one row per attack.

    `data` is a dataset name (its test split, optionally a seeded stratified subset of `limit` points) or an
    (images, labels) pair. Rows hold clean and robust accuracy, the per-point robust mask, seconds and the
    attack libraries' flags, the same quantities as a suite's records.
    """
    import pandas as pd

    from .attacks.evaluate import evaluate as run_attack, evaluate_min_norm
    from .attacks import Family, build_attack
    from .distances import encode_distances, median_distance
    from .data import load_dataset
    from .record import encode_mask
    from .runtime import fast_cpu_math, resolve_device

    fast_cpu_math()
    dev = resolve_device(device)
    if isinstance(data, str):
        x, y = load_dataset(data, False, data_root, False, limit, seed).batch()
    else:
        x, y = data
    x, y = x.to(dev), y.to(dev)
    model = model.to(dev)
    rows = []
    for attack_id, spec in attacks.items():
        attack = build_attack(spec, f"attacks.{attack_id}")
        t0 = time.perf_counter()
        min_norm = attack.family is Family.MIN_NORM
        res = (evaluate_min_norm if min_norm else run_attack)(model, attack, x, y, batch_size=batch_size, seed=seed)
        row = {"model": name, "attack": attack_id, "attack_spec": attack.describe(), "n": res.n,
               "clean_accuracy": res.clean_accuracy, "robust_accuracy": res.robust_accuracy,
               "robust_mask": encode_mask(res.robust.cpu().numpy()), "seconds": time.perf_counter() - t0,
               "flags": res.flags}
        if min_norm:
            d = res.distances.cpu().numpy()
            row.update(distances=encode_distances(d), median_distance=median_distance(d))
        rows.append(row)
    return pd.DataFrame(rows)


def run_suite(path: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Run a YAML suite (see `rocl-bench run`); returns its records."""
    from .bench.runner import run_suite as _run

    return _run(path, **kwargs)


def list_models() -> list[str]:
    from .models import MODELS
    return MODELS.names()


def list_methods() -> list[str]:
    from .methods import METHODS
    return METHODS.names()


def list_attacks() -> list[str]:
    from .attacks import suite_attack_names
    return suite_attack_names()


def list_datasets() -> list[str]:
    from .data import DATASETS
    return DATASETS.names()
