"""The dataset layer: registered sets, on-disk formats (made tiny here), stratified subsets, batch order."""
from __future__ import annotations

import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rocl_bench.data import dataset_info, epoch_batches, load_dataset, resolve_data_root, stratified_subset
from rocl_bench.errors import UserError

SHARED = Path("/work/shared/data")

# torchvision 0.29 warns on every torchvision.io decode that its image codecs are deprecated (see report)
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _rows(images: torch.Tensor) -> set[bytes]:
    return {img.numpy().tobytes() for img in images}


# ---------------------------------------------------------------- digits (scikit-learn, embedded)
def test_digits_split_sizes_range_and_labels():
    tr, te = load_dataset("digits", True), load_dataset("digits", False)
    assert (len(tr), len(te)) == (1437, 360)
    for d, n in ((tr, 1437), (te, 360)):
        x, y = d.batch()
        assert x.shape == (n, 1, 8, 8) and x.dtype == torch.float32
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        assert y.dtype == torch.int64 and set(y.tolist()) == set(range(10))
    info = dataset_info("digits")
    assert (info.channels, info.image_size, info.num_classes, info.augment) == (1, 8, 10, "digit")


def test_digits_split_is_stratified_fixed_and_disjoint():
    tr, te = load_dataset("digits", True), load_dataset("digits", False)
    tr2, te2 = load_dataset("digits", True), load_dataset("digits", False)
    assert torch.equal(tr.images, tr2.images) and torch.equal(tr.labels, tr2.labels)
    assert torch.equal(te.images, te2.images) and torch.equal(te.labels, te2.labels)
    every = torch.bincount(torch.cat([tr.labels, te.labels]), minlength=10).double()
    expect = every * 360 / every.sum()
    assert (torch.bincount(te.labels, minlength=10) - expect).abs().max() <= 1
    # the 1,797 digits images are pairwise distinct, so bytes identify them
    a, b = _rows(tr.images), _rows(te.images)
    assert len(a) == 1437 and len(b) == 360 and not (a & b)


# ---------------------------------------------------------------- mnist (IDX files as torchvision reads them)
def _write_idx(path: Path, magic: int, data: np.ndarray) -> None:
    header = struct.pack(">II", magic, data.shape[0]) + b"".join(struct.pack(">I", d) for d in data.shape[1:])
    path.write_bytes(header + data.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path):
    """20 train / 10 test random 28×28 digits in MNIST/raw/. torchvision 0.29's MNIST._check_exists wants all
    four uncompressed files (no md5 for them: it checks existence only), whichever split is loaded."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = _rng(1)
    data = {}
    for split, n in (("train", 20), ("t10k", 10)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        _write_idx(raw / f"{split}-images-idx3-ubyte", 2051, images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", 2049, labels)
        data[split] = images, labels
    return tmp_path, data


@pytest.mark.parametrize("train", [True, False])
def test_mnist_round_trip(mnist_root, train):
    root, data = mnist_root
    images, labels = data["train" if train else "t10k"]
    d = load_dataset("mnist", train, root)
    assert d.images.dtype == torch.uint8 and d.images.shape == (len(labels), 1, 28, 28)
    assert np.array_equal(d.images[:, 0].numpy(), images)
    assert d.labels.dtype == torch.int64 and d.labels.tolist() == labels.tolist()
    x, y = d.batch(torch.tensor([3, 1]))
    assert x.dtype == torch.float32 and x.shape == (2, 1, 28, 28)
    assert torch.equal(x[:, 0], torch.as_tensor(images[[3, 1]]).float() / 255) and y.tolist() == labels[[3, 1]].tolist()


def test_mnist_needs_all_four_files(mnist_root):
    root, _ = mnist_root
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match="--data-root"):
        load_dataset("mnist", True, root)


# ---------------------------------------------------------------- cifar10 / cifar100 (torchvision pickles)
def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _trust_written_files(monkeypatch, cls, folder: Path) -> None:
    """torchvision checks each file against the md5 of the real CIFAR download, which files made here can never
    match. We patch ONLY those expected checksums, to the md5s of the files just written: the loading code and
    torchvision's own integrity check still run unchanged (so a file altered afterwards is still refused)."""
    monkeypatch.setattr(cls, "train_list", [[name, _md5(folder / name)] for name, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[name, _md5(folder / name)] for name, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(folder / cls.meta["filename"])})


@pytest.fixture
def cifar10_root(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = _rng(2)
    parts = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)   # N, C, H, W
        labels = rng.integers(0, 10, size=3).tolist()
        _pickle(folder / name, {"batch_label": name, "labels": labels, "data": images.reshape(3, -1),
                                "filenames": [f"{name}_{i}.png" for i in range(3)]})
        parts[name] = images, labels
    _pickle(folder / "batches.meta", {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                                      "frog", "horse", "ship", "truck"], "num_vis": 3072})
    _trust_written_files(monkeypatch, CIFAR10, folder)
    train = [parts[f"data_batch_{i}"] for i in range(1, 6)]
    return tmp_path, {True: (np.concatenate([p[0] for p in train]), sum((p[1] for p in train), [])),
                      False: parts["test_batch"]}


@pytest.fixture
def cifar100_root(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR100

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = _rng(3)
    parts = {}
    for name, n in (("train", 6), ("test", 4)):
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        fine = rng.integers(0, 100, size=n).tolist()
        coarse = [f // 5 for f in fine]   # distinct from `fine`, so reading the wrong key shows
        _pickle(folder / name, {"filenames": [f"{i}.png" for i in range(n)], "batch_label": name,
                                "fine_labels": fine, "coarse_labels": coarse, "data": images.reshape(n, -1)})
        parts[name == "train"] = images, fine
    _pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                              "coarse_label_names": [f"c{i}" for i in range(20)]})
    _trust_written_files(monkeypatch, CIFAR100, folder)
    return tmp_path, parts


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("train", [True, False])
def test_cifar_round_trip(name, train, request):
    root, parts = request.getfixturevalue(f"{name}_root")
    images, labels = parts[train]
    d = load_dataset(name, train, root)
    assert d.images.dtype == torch.uint8 and d.images.shape == (len(labels), 3, 32, 32)
    assert np.array_equal(d.images.numpy(), images)
    assert d.labels.dtype == torch.int64 and d.labels.tolist() == labels
    x, _ = d.batch()
    assert x.dtype == torch.float32 and torch.equal(x, torch.as_tensor(images).float() / 255)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_cifar10_altered_file_is_refused(cifar10_root):
    root, _ = cifar10_root
    path = root / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        load_dataset("cifar10", False, root)


# ---------------------------------------------------------------- missing data
@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "cifar10-jpeg", "imagefolder"])
def test_missing_data_is_a_user_error(tmp_path, name):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(UserError) as err:
        load_dataset(name, True, root)
    msg = str(err.value)
    assert str(root) in msg and "--data-root" in msg and "\n" not in msg
    if name in ("mnist", "cifar10", "cifar100"):
        assert "--download" in msg


@pytest.mark.parametrize("name,module", [("mnist", "mnist"), ("cifar10", "cifar")])
def test_failed_download_is_a_user_error(tmp_path, monkeypatch, name, module):
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("no network in this test")

    # torchvision's download helper, as each dataset module imported it: nothing here touches the network
    monkeypatch.setattr(f"torchvision.datasets.{module}.download_and_extract_archive", offline)
    with pytest.raises(UserError) as err:
        load_dataset(name, True, tmp_path, download=True)
    msg = str(err.value)
    assert str(tmp_path) in msg and "--download failed" in msg and "no network" in msg and "\n" not in msg


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("ROCL_BENCH_DATA", raising=False)
    assert resolve_data_root(None) == Path("data")
    monkeypatch.setenv("ROCL_BENCH_DATA", str(tmp_path))
    assert resolve_data_root(None) == tmp_path
    assert resolve_data_root(tmp_path / "x") == tmp_path / "x"


# ---------------------------------------------------------------- image folders
def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def folder_root(tmp_path):
    """3 classes × 4 images (32×32 RGB PNG) per split; classes made in unsorted order."""
    rng = _rng(4)
    expected = {}
    for split in ("train", "test"):
        imgs, labels = [], []
        for c in ("zebra", "apple", "mango"):
            for i in range(4):
                a = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                _png(tmp_path / split / c / f"{i:02d}.png", a)
                imgs.append((c, i, a))
        imgs.sort(key=lambda t: (t[0], t[1]))               # ImageFolder order: classes sorted, files sorted
        classes = sorted({c for c, _, _ in imgs})
        labels = [classes.index(c) for c, _, _ in imgs]
        expected[split == "train"] = np.stack([a.transpose(2, 0, 1) for _, _, a in imgs]), labels
    return tmp_path, expected


@pytest.mark.parametrize("train", [True, False])
def test_imagefolder_round_trip(folder_root, train):
    root, expected = folder_root
    images, labels = expected[train]
    d = load_dataset("imagefolder", train, root)
    assert d.images.dtype == torch.uint8 and d.images.shape == (12, 3, 32, 32)
    assert np.array_equal(d.images.numpy(), images)                # PNG is lossless
    assert d.labels.tolist() == labels == [0] * 4 + [1] * 4 + [2] * 4   # apple, mango, zebra
    sub = load_dataset("imagefolder", train, root, limit=6, seed=1)
    assert torch.bincount(sub.labels).tolist() == [2, 2, 2]


def test_imagefolder_test_split_keeps_train_class_indices(folder_root):
    root, expected = folder_root
    for p in (root / "test" / "apple").iterdir():
        p.unlink()
    (root / "test" / "apple").rmdir()
    d = load_dataset("imagefolder", False, root)
    assert d.labels.tolist() == [1] * 4 + [2] * 4                 # mango stays 1, zebra stays 2
    assert np.array_equal(d.images.numpy(), expected[False][0][4:])


def test_imagefolder_test_class_unknown_to_train(folder_root):
    root, _ = folder_root
    _png(root / "test" / "kiwi" / "0.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(UserError, match="kiwi"):
        load_dataset("imagefolder", False, root)


def test_imagefolder_mixed_sizes(tmp_path):
    _png(tmp_path / "train" / "a" / "0.png", np.zeros((32, 32, 3), np.uint8))
    _png(tmp_path / "train" / "a" / "1.png", np.zeros((16, 32, 3), np.uint8))
    with pytest.raises(UserError, match="1.png"):
        load_dataset("imagefolder", True, tmp_path)


@pytest.mark.parametrize("layout", ["no class folders", "empty class folder", "no image files"])
def test_imagefolder_empty(tmp_path, layout):
    (tmp_path / "train").mkdir()
    if layout != "no class folders":
        (tmp_path / "train" / "a").mkdir()
    if layout == "no image files":
        (tmp_path / "train" / "a" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=str(tmp_path / "train")):
        load_dataset("imagefolder", True, tmp_path)


def test_imagefolder_other_formats(tmp_path):
    """ImageFolder also lists .bmp (torchvision.io cannot decode it) and 16-bit PNG (decoded as uint16)."""
    rgb = _rng(5).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    _png(tmp_path / "train" / "a" / "0.bmp", rgb)
    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(deep).save(tmp_path / "train" / "a" / "1.png")    # mode I;16
    d = load_dataset("imagefolder", True, tmp_path)
    assert np.array_equal(d.images[0].numpy(), rgb.transpose(2, 0, 1))
    assert np.array_equal(d.images[1].numpy(), np.broadcast_to(deep >> 8, (3, 8, 8)))


def test_imagefolder_undecodable_file(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "0.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match="0.jpg"):
        load_dataset("imagefolder", True, tmp_path)


# ---------------------------------------------------------------- stratified subsets
LABELS = torch.tensor([0] * 50 + [1] * 30 + [2] * 15 + [3] * 5)[torch.randperm(100, generator=torch.Generator()
                                                                               .manual_seed(0))]


@pytest.mark.parametrize("limit", [1, 4, 10, 37, 63, 99, 100])
def test_stratified_subset_size_and_proportions(limit):
    idx = stratified_subset(LABELS, limit, seed=0)
    assert idx.numel() == limit and idx.dtype == torch.int64
    assert torch.equal(idx, torch.unique(idx)) and 0 <= int(idx.min()) and int(idx.max()) < 100   # sorted, unique
    share = torch.bincount(LABELS, minlength=4).double() * limit / 100
    assert (torch.bincount(LABELS[idx], minlength=4) - share).abs().max() < 1


def test_stratified_subset_seeded():
    a, b = stratified_subset(LABELS, 40, seed=3), stratified_subset(LABELS, 40, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, stratified_subset(LABELS, 40, seed=4))


def test_stratified_subset_rejects_nonpositive():
    with pytest.raises(UserError):
        stratified_subset(LABELS, 0, seed=0)


def test_load_dataset_limit():
    full = load_dataset("digits", False)
    sub = load_dataset("digits", False, limit=50, seed=1)
    idx = stratified_subset(full.labels, 50, 1)
    assert len(sub) == 50 and torch.equal(sub.images, full.images[idx]) and torch.equal(sub.labels, full.labels[idx])
    assert torch.bincount(sub.labels).tolist() == [5] * 10
    for limit in (360, 10_000):
        whole = load_dataset("digits", False, limit=limit)
        assert torch.equal(whole.images, full.images) and torch.equal(whole.labels, full.labels)


# ---------------------------------------------------------------- epoch batches
def _batches(*args, **kw) -> list[torch.Tensor]:
    return list(epoch_batches(*args, **kw))


def test_epoch_batches_cover_each_index_once():
    g = torch.Generator().manual_seed(0)
    full = _batches(103, 10, g)
    assert [b.numel() for b in full] == [10] * 10                   # ragged tail of 3 dropped
    seen = torch.cat(full)
    assert seen.unique().numel() == 100 and int(seen.max()) < 103
    tail = _batches(103, 10, torch.Generator().manual_seed(0), drop_last=False)
    assert [b.numel() for b in tail] == [10] * 10 + [3]
    assert sorted(torch.cat(tail).tolist()) == list(range(103))
    assert torch.equal(torch.cat(tail)[:100], seen)                 # same permutation for the same seed


def test_epoch_batches_order():
    assert torch.equal(torch.cat(_batches(25, 5, torch.Generator(), shuffle=False)), torch.arange(25))
    g = torch.Generator().manual_seed(1)
    first, second = torch.cat(_batches(50, 10, g)), torch.cat(_batches(50, 10, g))
    assert not torch.equal(first, second)                           # a new order each epoch


def test_epoch_batches_small_set_is_one_batch():
    # fewer points than a batch: one batch of all of them (else a tiny --limit would train on nothing)
    for drop_last in (True, False):
        (only,) = _batches(7, 32, torch.Generator().manual_seed(0), drop_last=drop_last)
        assert sorted(only.tolist()) == list(range(7))
    assert _batches(0, 8, torch.Generator()) == []
    assert _batches(3, 8, torch.Generator(), rank=3, world=4) == []   # no empty batch


@pytest.mark.parametrize("batch_size,drop_last", [(5, True), (6, True), (6, False)])
def test_epoch_batches_sharding(batch_size, drop_last):
    n, world, seed = 103, 4, 7
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    shares = [_batches(n, batch_size, torch.Generator().manual_seed(seed), drop_last=drop_last, rank=r, world=world)
              for r in range(world)]
    steps = {len(s) for s in shares}
    assert len(steps) == 1                                          # every rank takes the same number of steps
    flat = [torch.cat(s) for s in shares]
    union = torch.cat(flat)
    assert union.unique().numel() == union.numel()                  # disjoint
    assert set(union.tolist()) == set(perm[: union.numel()].tolist())   # a prefix of one process's permutation
    done = 0
    for step in zip(*shares):                                       # each global batch is the next slice of it
        k = sum(b.numel() for b in step)
        assert set(torch.cat(step).tolist()) == set(perm[done:done + k].tolist())
        done += k


def test_epoch_batches_bad_rank():
    with pytest.raises(ValueError):
        _batches(10, 2, torch.Generator(), rank=2, world=2)


# ---------------------------------------------------------------- the real data, where this machine has it
needs_shared = pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir() or not (SHARED / "cifar10-jpeg").is_dir(),
                                  reason=f"real data not under {SHARED}")


@needs_shared
def test_real_mnist():
    tr, te = load_dataset("mnist", True, SHARED), load_dataset("mnist", False, SHARED)
    assert tr.images.shape == (60_000, 1, 28, 28) and te.images.shape == (10_000, 1, 28, 28)
    counts = torch.bincount(te.labels, minlength=10)
    assert counts.numel() == 10 and int(counts.sum()) == 10_000 and int(counts.min()) > 800
    assert te.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]   # the canonical start of the test set
    assert tr.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


@needs_shared
def test_real_cifar10_jpeg_test_split():
    # the test split only: 10,000 JPEGs decode in a few seconds; the 50,000 of train take far longer
    d = load_dataset("cifar10-jpeg", False, SHARED)
    assert d.images.shape == (10_000, 3, 32, 32) and d.images.dtype == torch.uint8
    assert torch.bincount(d.labels).tolist() == [1000] * 10
    assert dataset_info("cifar10-jpeg").label == "cifar10-jpeg"
