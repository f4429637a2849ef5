"""Process and module state that every layer below the CLI shares: the device, CPU math flags, eval mode, RNG.

Each helper changes state only for as long as it says: `eval_mode` and `forked_rng` restore what they found
(in `finally`, so an exception cannot leave a model in eval mode or torch's global RNG advanced);
`fast_cpu_math` is the one process-global switch and says so.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from .errors import UserError


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without one is a user error, not a crash."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device: 'cuda' was asked for but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def fast_cpu_math() -> None:
    """Flush denormal floats to zero on the CPU, for the whole process (not undone: every entry point wants it).

    Attacks drive logits' gradients into the denormal range, where every CPU op slows down many times
    (AutoAttack on a digits MLP: 115 s -> 8 s). Values below 1e-38 become 0."""
    torch.set_flush_denormal(True)


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Run the block with `modules` in eval mode; afterwards every submodule gets back its own training flag.

    Attacks and evaluation must not update BatchNorm statistics or draw dropout masks, and must leave the
    model as they found it, even when they raise (a frozen encoder inside a training model stays frozen).
    """
    saved = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, mode in saved:
            m.training = mode


@contextlib.contextmanager
def forked_rng(device: torch.device, seed: int | None = None) -> Iterator[None]:
    """Run with torch's global RNG forked (restored afterwards), optionally seeded: the attack libraries and
    randomized models draw from it, and a caller's own stream must not move because an evaluation ran."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def full_precision(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast off for a training attack: the official attacks of RoCL, ACL, AdvCL and DynACL run in fp32, and
    bf16 gradients move the sign of many pixels' steps."""
    return torch.autocast(device_type=x.device.type, enabled=False)
