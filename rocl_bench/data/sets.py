"""The dataset registry. Every set is decoded once into memory: uint8 (or float) N×C×H×W plus int64 labels."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import UserError
from ..registry import Registry


@dataclass(frozen=True)
class DatasetInfo:
    """What models and methods need to know about a dataset before loading it."""

    name: str
    channels: int
    image_size: int
    num_classes: int       # 0: read from the data (image folders)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str          # 'natural' (crop, flip, colour) or 'digit' (crop/affine only: labels survive)
    eps: float            # the field's customary ℓ∞ budget for this data (used when a method leaves ε unset)
    label: str = ""       # name written into records (cifar10-jpeg must never read cifar10)


@dataclass
class ImageSet:
    """Images in [0, 1] once divided by `scale`; kept compact (uint8) in memory and converted per batch."""

    images: torch.Tensor
    labels: torch.Tensor
    scale: float = 255.0

    def __len__(self) -> int:
        return int(self.labels.numel())

    def batch(self, idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images if idx is None else self.images[idx]
        y = self.labels if idx is None else self.labels[idx]
        return x.float().div_(self.scale) if x.dtype == torch.uint8 else x.float() / self.scale, y

    def subset(self, idx: torch.Tensor) -> "ImageSet":
        return ImageSet(self.images[idx], self.labels[idx], self.scale)


Loader = Callable[[Path, bool, bool], ImageSet]
DATASETS: Registry[tuple[DatasetInfo, Loader]] = Registry("dataset")

_CIFAR10_MEAN, _CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def register_dataset(info: DatasetInfo) -> Callable[[Loader], Loader]:
    def add(fn: Loader) -> Loader:
        DATASETS.register(info.name)((info, fn))
        return fn
    return add


def dataset_info(name: str, where: str = "dataset") -> DatasetInfo:
    return DATASETS.get(name, where)[0]


def resolve_data_root(root: str | os.PathLike | None) -> Path:
    """--data-root, else $ROCL_BENCH_DATA, else ./data."""
    return Path(root or os.environ.get("ROCL_BENCH_DATA") or "data").expanduser()


def load_dataset(name: str, train: bool, root: str | os.PathLike | None = None, download: bool = False,
                 limit: int | None = None, seed: int = 0, classes: list[int] | None = None,
                 image_size: int | None = None) -> ImageSet:
    """Load split `train` of dataset `name`: only `classes` (relabelled 0..k-1 in the order given), then a seeded
    class-stratified subset of `limit` points, then resized to `image_size` (robust transfer learning)."""
    _, loader = DATASETS.get(name, "dataset")
    data = loader(resolve_data_root(root), train, download)
    if classes is not None:
        data = select_classes(data, classes, name)
    if limit is not None and limit < len(data):
        data = data.subset(stratified_subset(data.labels, limit, seed))
    if image_size is not None and image_size != data.images.shape[-1]:
        data = resized(data, image_size)
    return data


def check_classes(classes: list[int] | None, num_classes: int, name: str, where: str) -> None:
    """A class subset names at least two distinct classes of the dataset (0-based label indices)."""
    if classes is None:
        return
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise UserError(f"{where}: expected at least two distinct class indices, got {list(classes)}")
    bad = [c for c in classes if c < 0 or (num_classes and c >= num_classes)]
    if bad:
        raise UserError(f"{where}: class {bad[0]} is not a class of '{name}' (its classes are 0-{num_classes - 1}); "
                        "list label indices of the dataset")


def select_classes(data: ImageSet, classes: list[int], name: str) -> ImageSet:
    """The points of `classes` only, relabelled by their position in the list (so heads have k outputs)."""
    present = int(data.labels.max()) + 1 if len(data) else 0
    check_classes(classes, present, name, f"{name}: classes")
    relabel = torch.full((max(present, max(classes) + 1),), -1, dtype=torch.int64)
    relabel[torch.as_tensor(classes)] = torch.arange(len(classes))
    keep = torch.nonzero(relabel[data.labels] >= 0).flatten()
    return ImageSet(data.images[keep], relabel[data.labels[keep]], data.scale)


def resized(data: ImageSet, size: int) -> ImageSet:
    """Images resized to size × size (bilinear, antialiased), stored as floats in [0, 1]."""
    import torch.nn.functional as F

    x, y = data.batch()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
    return ImageSet(x.contiguous(), y, scale=1.0)


def view_info(info: DatasetInfo, classes: list[int] | None = None, image_size: int | None = None) -> DatasetInfo:
    """What models see of a class subset / resized view of a dataset: k classes, the new size, and a label that
    says so in records (cifar10-jpeg[5,6,7,8,9] is not cifar10-jpeg)."""
    if classes is None and (image_size is None or image_size == info.image_size):
        return info
    import dataclasses

    label = info.label or info.name
    if classes is not None:
        label += "[" + ",".join(str(c) for c in classes) + "]"
    if image_size is not None and image_size != info.image_size:
        label += f"@{image_size}px"
    return dataclasses.replace(info, num_classes=len(classes) if classes is not None else info.num_classes,
                               image_size=image_size or info.image_size, label=label)


def stratified_subset(labels: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """Indices of `limit` points with class proportions kept (largest remainders), chosen by `seed`, sorted."""
    if limit <= 0:
        raise UserError(f"data limit must be a positive number of points, got {limit}")
    classes, counts = torch.unique(labels, return_counts=True)
    share = counts.double() * limit / labels.numel()
    take = share.floor().long()
    rest = limit - int(take.sum())
    if rest > 0:
        order = torch.argsort(share - take.double(), descending=True, stable=True)
        take[order[:rest]] += 1
    g = torch.Generator().manual_seed(seed)
    picked = []
    for c, k in zip(classes.tolist(), take.tolist()):
        members = torch.nonzero(labels == c).flatten()
        picked.append(members[torch.randperm(members.numel(), generator=g)[:k]])
    return torch.sort(torch.cat(picked)).values


def _missing(name: str, root: Path, looked_for: str, extra: str = "") -> UserError:
    return UserError(
        f"{name}: data not found under {root} (looked for {looked_for}); pass --data-root PATH "
        f"(or set ROCL_BENCH_DATA){extra}"
    )


def _not_fetched(name: str, root: Path, looked_for: str, download: bool, err: Exception) -> UserError:
    """Missing files, or (with --download) a failed download: torchvision raises RuntimeError for the first
    and RuntimeError or a bare URLError/OSError (no network) for the second."""
    if not download:
        return _missing(name, root, looked_for, " or add --download")
    reason = " ".join(str(err).split())
    reason = reason if len(reason) <= 200 else reason[:197] + "..."
    return _missing(name, root, looked_for, f"; --download failed ({reason})")


# ---------------------------------------------------------------- digits (embedded, no files)
@register_dataset(DatasetInfo("digits", 1, 8, 10, (0.3057,), (0.4065,), "digit", 0.1))
def _digits(root: Path, train: bool, download: bool) -> ImageSet:
    """scikit-learn's 8×8 digits with a fixed stratified 1,437 / 360 split, so numbers compare across runs."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    idx = torch.arange(len(d.target))
    tr, te = train_test_split(idx.numpy(), test_size=360, stratify=d.target, random_state=0)
    pick = torch.as_tensor(sorted(tr if train else te))
    images = torch.as_tensor(d.images, dtype=torch.float32)[pick].unsqueeze(1)
    labels = torch.as_tensor(d.target, dtype=torch.int64)[pick]
    return ImageSet(images, labels, scale=16.0)


# ---------------------------------------------------------------- torchvision's own classes
@register_dataset(DatasetInfo("mnist", 1, 28, 10, (0.1307,), (0.3081,), "digit", 0.3))
def _mnist(root: Path, train: bool, download: bool) -> ImageSet:
    from torchvision.datasets import MNIST

    try:
        ds = MNIST(str(root), train=train, download=download)
    except (RuntimeError, OSError) as e:
        if not download and not isinstance(e, RuntimeError):
            raise
        raise _not_fetched("mnist", root, f"{root / 'MNIST' / 'raw'}/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte",
                           download, e) from None
    return ImageSet(ds.data.unsqueeze(1).contiguous(), ds.targets.long())


def _cifar(cls_name: str, folder: str) -> Loader:
    def load(root: Path, train: bool, download: bool) -> ImageSet:
        import torchvision.datasets as tvd

        try:
            ds = getattr(tvd, cls_name)(str(root), train=train, download=download)
        except (RuntimeError, OSError) as e:
            if not download and not isinstance(e, RuntimeError):
                raise
            raise _not_fetched(cls_name.lower(), root, f"{root / folder} with its pickle batches (md5-checked)",
                               download, e) from None
        images = torch.as_tensor(ds.data).permute(0, 3, 1, 2).contiguous()
        return ImageSet(images, torch.as_tensor(ds.targets, dtype=torch.int64))
    return load


register_dataset(DatasetInfo("cifar10", 3, 32, 10, _CIFAR10_MEAN, _CIFAR10_STD, "natural", 8 / 255))(
    _cifar("CIFAR10", "cifar-10-batches-py"))
register_dataset(DatasetInfo("cifar100", 3, 32, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                             "natural", 8 / 255))(_cifar("CIFAR100", "cifar-100-python"))


# ---------------------------------------------------------------- image folders
def _decode_file(path: str) -> torch.Tensor:
    """One image as uint8 3×H×W. torchvision.io reads jpeg/png/webp/gif; the other extensions ImageFolder
    accepts (bmp, ppm, pgm, tif) go through PIL; 16-bit PNGs are scaled down, never wrapped modulo 256."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        img = decode_image(read_file(path), mode=ImageReadMode.RGB)
    except RuntimeError:
        import numpy as np
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                img = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous()
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise UserError(f"{path}: cannot decode this image ({e}); re-encode or remove it") from None
    if img.dtype == torch.uint16:
        img = (img.to(torch.int32) >> 8).to(torch.uint8)
    return img


def _decode_folder(split_dir: Path, classes: tuple[str, ...] | None = None) -> ImageSet:
    """Decode every image once into one uint8 tensor (ImageFolder order: classes sorted, files sorted).

    `classes` (the train split's class folders) fixes the label of each class, so a test split that lacks
    a class keeps the train split's indices instead of shifting every later class down by one.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    found = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    if not found:
        raise UserError(f"{split_dir}: no class folders found; expected <class>/<image> files inside")
    if classes is not None:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise UserError(f"{split_dir}: class folder(s) {', '.join(extra)} not in the train split "
                            f"({', '.join(classes)}); use the same class folders in train/ and test/")
    names = tuple(found) if classes is None else classes
    try:
        samples = make_dataset(str(split_dir), {c: i for i, c in enumerate(names)}, extensions=IMG_EXTENSIONS,
                               allow_empty=classes is not None)
    except FileNotFoundError as e:
        raise UserError(f"{split_dir}: {e}".rstrip()) from None
    if not samples:
        raise UserError(f"{split_dir}: no images found; expected <class>/<image> files inside "
                        f"({', '.join(IMG_EXTENSIONS)})")
    first = _decode_file(samples[0][0])
    images = torch.empty((len(samples), *first.shape), dtype=torch.uint8)
    for i, (path, _) in enumerate(samples):
        img = first if i == 0 else _decode_file(path)
        if img.shape != first.shape:
            raise UserError(f"{path}: image size {tuple(img.shape[1:])} differs from {tuple(first.shape[1:])}; "
                            "resize the folder's images to one size")
        images[i] = img
    return ImageSet(images, torch.as_tensor([t for _, t in samples], dtype=torch.int64))


def _folder_loader(sub: str, name: str) -> Loader:
    def load(root: Path, train: bool, download: bool) -> ImageSet:
        base = root / sub if sub else root
        split_dir = base / ("train" if train else "test")
        if not split_dir.is_dir():
            raise _missing(name, root, f"{split_dir}/<class>/<image>")
        classes = None
        if not train and (base / "train").is_dir():
            classes = tuple(sorted(e.name for e in os.scandir(base / "train") if e.is_dir())) or None
        return _cached((split_dir.resolve(), classes), lambda: _decode_folder(split_dir, classes))
    return load


_DECODED: dict[tuple, ImageSet] = {}


def _cached(key: tuple, decode: Callable[[], ImageSet]) -> ImageSet:
    """Decode a folder at most once per process (a suite loads the same split for many models)."""
    if key not in _DECODED:
        _DECODED[key] = decode()
    return _DECODED[key]


register_dataset(DatasetInfo("cifar10-jpeg", 3, 32, 10, _CIFAR10_MEAN, _CIFAR10_STD, "natural", 8 / 255,
                             label="cifar10-jpeg"))(_folder_loader("cifar10-jpeg", "cifar10-jpeg"))
register_dataset(DatasetInfo("imagefolder", 3, 32, 0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "natural", 8 / 255))(
    _folder_loader("", "imagefolder"))
