"""Dual BatchNorm (ACL, AdvCL, DynACL): convolutions and linear layers shared, one set of BatchNorm statistics and
affine parameters per stream, so clean and adversarial images are normalised by their own statistics.

The model's own BatchNorm layers are the adversarial ('pgd') stream: it is what the official code hands to the
protocols (the RobustSSL benchmark loads the pgd branch for SLF / ALF / AFF), so the saved encoder is the one the
field evaluates. Other streams are copies kept in the method's `modules` (checkpointed, trained, wrapped under
torchrun with the model) and swapped into the model for one call.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Iterator

from torch import nn

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm)


def _key(name: str) -> str:
    return name.replace(".", "__")         # ModuleDict keys may not hold dots


def batchnorm_branch(model: nn.Module) -> nn.ModuleDict:
    """A copy of every BatchNorm layer of `model` (parameters and running statistics), keyed by its path."""
    return nn.ModuleDict({_key(n): copy.deepcopy(m) for n, m in model.named_modules() if isinstance(m, BN_TYPES)})


def branch(modules: nn.ModuleDict, name: str) -> nn.ModuleDict | None:
    """The method's branch `name`, or None where it has none (dual BatchNorm off, or an encoder without BatchNorm
    layers): using_branch then runs the model's own."""
    return modules[name] if name in modules else None


@contextlib.contextmanager
def using_branch(model: nn.Module, branch: nn.ModuleDict | None) -> Iterator[None]:
    """Run the block with `branch`'s BatchNorm layers in place of the model's own (None: the model's own).

    Modules are swapped, not tensors: autograd keeps the branch's parameters for backward, and BatchNorm in
    train mode updates the branch's running statistics."""
    if branch is None or len(branch) == 0:
        yield
        return
    swapped = []
    for name, m in list(model.named_modules()):
        if isinstance(m, BN_TYPES) and _key(name) in branch:
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            swapped.append((parent, attr, m))
            setattr(parent, attr, branch[_key(name)])
    try:
        yield
    finally:
        for parent, attr, m in swapped:
            setattr(parent, attr, m)
