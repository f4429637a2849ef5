"""Architectures and the one wrapper (normalize → encoder → head, plus an optional contrastive projector)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import UserError
from ..registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model from a checkpoint without guessing."""

    arch: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    projector: tuple[int, int] | None = None     # (hidden, out) of the contrastive projector, if any

    def to_dict(self) -> dict:
        return {"arch": self.arch, "num_classes": self.num_classes, "in_channels": self.in_channels,
                "image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
                "projector": list(self.projector) if self.projector else None}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        proj = d.get("projector")
        return cls(d["arch"], int(d["num_classes"]), int(d["in_channels"]), int(d["image_size"]),
                   tuple(d["mean"]), tuple(d["std"]), tuple(proj) if proj else None)


Encoder = Callable[[int, int], tuple[nn.Module, int]]   # (in_channels, image_size) -> (encoder, feature_dim)
MODELS: Registry[Encoder] = Registry("model")
RAW_INPUT: set[str] = set()     # archs fed the [0, 1] image unnormalised (their official code has no Normalize)


class Normalize(nn.Module):
    """Per-channel standardization inside the model, so attacks see the raw [0, 1] image."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """normalize → encoder → linear head; `project` feeds the contrastive projector instead of the head."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.normalize = nn.Identity() if spec.arch in RAW_INPUT else Normalize(spec.mean, spec.std)
        self.encoder, self.feature_dim = MODELS.get(spec.arch, "model")(spec.in_channels, spec.image_size)
        self.head = nn.Linear(self.feature_dim, spec.num_classes)
        self.projector = None
        if spec.projector:
            hidden, out = spec.projector
            self.projector = nn.Sequential(nn.Linear(self.feature_dim, hidden), nn.ReLU(inplace=True),
                                           nn.Linear(hidden, out))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        if self.projector is None:
            raise RuntimeError("this model was built without a contrastive projector")
        return self.projector(self.features(x))


def build_model(spec: ModelSpec) -> Classifier:
    return Classifier(spec)


# ---------------------------------------------------------------- encoders
@MODELS.register("mlp")
def _mlp(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    """Two hidden layers, no BatchNorm: small, fast, and batch-size agnostic (digits)."""
    d = in_channels * image_size * image_size
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 256), nn.ReLU(inplace=True),
                         nn.Linear(256, 256), nn.ReLU(inplace=True)), 256


def _conv_bn(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@MODELS.register("cnn-small")
def _cnn_small(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    """Four conv-BN-ReLU blocks and global pooling: CPU-sized runs on MNIST / CIFAR-sized data."""
    layers = [*_conv_bn(in_channels, 32, 1), *_conv_bn(32, 64, 2), *_conv_bn(64, 128, 2), *_conv_bn(128, 128, 2),
              nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), 128


def _cifar_resnet(builder: Callable[..., nn.Module], dim: int) -> Encoder:
    """torchvision's ResNet with the CIFAR stem of the official RoCL code: 3×3 conv, stride 1, no max-pool."""
    def make(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
        net = builder(num_classes=10)
        net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        return net, dim
    return make


class _OfficialBlock(nn.Module):
    """kuangliu's BasicBlock (the official RoCL models/resnet.py): conv-BN-ReLU, conv-BN, + shortcut, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class OfficialResNet18(nn.Module):
    """The official RoCL ResNet18 (kuangliu layout, contrastive_learning=True): 3×3 stem conv + BN + ReLU, no
    max-pool, BasicBlocks [2, 2, 2, 2], avg_pool2d(4), flattened; PyTorch's default initialisation, the same
    parameter names (an official state_dict loads after its 'module.' prefix is dropped), no normalisation."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin, layers = 64, []
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(_OfficialBlock(cin, planes, stride), _OfficialBlock(planes, planes, 1)))
            cin = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return torch.flatten(nn.functional.avg_pool2d(out, 4), 1)


@MODELS.register("resnet18-official")
def _resnet18_official(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    side = image_size
    for _ in range(3):                      # layer2..4 halve the side (3×3, stride 2, padding 1)
        side = (side + 1) // 2
    if side < 4:
        raise UserError(f"resnet18-official: images of {image_size} px leave {side} px before its 4×4 average "
                         "pool; it needs at least 25 px (CIFAR: 32)")
    return OfficialResNet18(in_channels), 512 * (side // 4) ** 2


RAW_INPUT.add("resnet18-official")


def _register_resnets() -> None:
    from torchvision.models import resnet18, resnet50

    MODELS.register("resnet18")(_cifar_resnet(resnet18, 512))
    MODELS.register("resnet50")(_cifar_resnet(resnet50, 2048))


_register_resnets()
