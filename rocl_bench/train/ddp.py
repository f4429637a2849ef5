"""Training under torchrun: the model and the method's extra modules wrapped in DistributedDataParallel."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..methods import Method
from ..models import Classifier

Call = Callable[[Classifier, torch.Tensor], torch.Tensor]


def _logits(model: Classifier, x: torch.Tensor) -> torch.Tensor:
    return model(x)


class _Wrapped(nn.Module):
    """What DistributedDataParallel holds: the classifier and the method's extra modules (so the gradients of
    every trained parameter are averaged over ranks), entered through one forward that runs `call`."""

    def __init__(self, model: Classifier, extras: nn.ModuleDict) -> None:
        super().__init__()
        self.model = model
        self.extras = extras

    def forward(self, call: Call, x: torch.Tensor) -> torch.Tensor:
        return call(self.model, x)


class DistributedModel(nn.Module):
    """The Net a method's loss sees under torchrun: the Classifier's four calls (logits, features, head,
    project), each run through DistributedDataParallel's forward so that backward averages the gradients.

    A trained extra module must run inside one of these calls (e.g. a BatchNorm branch swapped into the
    encoder for the call); a frozen one (a teacher) may run anywhere."""

    def __init__(self, wrapped: _Wrapped, device: torch.device) -> None:
        super().__init__()
        from torch.nn.parallel import DistributedDataParallel

        self.spec = wrapped.model.spec
        self.ddp = DistributedDataParallel(wrapped, device_ids=[device.index] if device.type == "cuda" else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ddp(_logits, x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.ddp(Classifier.features, x)

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.ddp(_head, f)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.ddp(Classifier.project, x)


def _head(model: Classifier, f: torch.Tensor) -> torch.Tensor:
    return model.head(f)


def distribute(model: Classifier, method: Method, device: torch.device) -> tuple[Classifier, DistributedModel]:
    """Wrap for torchrun once frozen parameters no longer require gradients (DDP waits for every parameter
    that does). A method declaring sync_batchnorm gets SyncBatchNorm on CUDA, in its extra modules too.
    Returns the (possibly converted) classifier, whose state_dict the checkpoints save, and the wrapper."""
    wrapped = _Wrapped(model, method.modules)
    if method.sync_batchnorm and device.type == "cuda":
        wrapped = nn.SyncBatchNorm.convert_sync_batchnorm(wrapped)
    return wrapped.model, DistributedModel(wrapped, device)
