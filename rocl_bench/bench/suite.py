"""YAML suites, validated before anything runs: every error names the file, the key path and the fix."""
from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from ..attacks import Attack, build_attack
from ..config import (check_seed, coerce, config_hash, exists, from_mapping, hidden_char, load_yaml, path_text,
                      require, safe_name, segment, shown, to_dict)
from ..data import DATASETS, DatasetInfo, check_classes, dataset_info, view_info
from ..data.augment import AugmentSpec
from ..errors import UserError, suggest
from ..methods import METHODS
from ..models import MODELS
from ..train.checkpoint import file_sha256
from ..train.folder import identity_hash
from ..train.spec import TrainConfig, make_train_config

EMBEDDED = ("digits",)      # datasets that need no files, so data.root does not matter
TOP_KEYS = ("name", "seed", "device", "data", "models", "attacks", "transfer", "output", "description")


@dataclass(frozen=True)
class DataSection:
    dataset: str = "digits"
    root: str | None = None
    download: bool = False
    train_limit: int | None = None
    test_limit: int | None = None
    classes: list[int] | None = None      # a class subset, relabelled 0..k-1 in this order
    image_size: int | None = None         # resize every image (pre-training data follows this size)

    def validate(self, where: str) -> None:
        _check_data(self, where)
        require(self.image_size is None or 4 <= self.image_size <= 1024, f"{where}.image_size",
                f"must be between 4 and 1024 pixels, got {self.image_size}")

    def info(self) -> DatasetInfo:
        """What the suite's models see: the dataset, its class subset and size."""
        return view_info(dataset_info(self.dataset), self.classes, self.image_size)

    def identity(self) -> dict[str, Any]:
        """What of the data changes a number (not where it lives); fields at their neutral default are left
        out, so suites written before they existed keep their hash."""
        out = {k: v for k, v in to_dict(self).items() if k not in ("root", "download")}
        return {k: v for k, v in out.items() if not (k in ("classes", "image_size") and v is None)}


@dataclass(frozen=True)
class PretrainData:
    """Robust transfer learning: an encoder pre-trained on other data than the suite evaluates. Root defaults to
    the suite's; images are resized to the suite's resolution (one resolution per suite, so ε means one thing)."""

    dataset: str = "digits"
    classes: list[int] | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    root: str | None = None

    def validate(self, where: str) -> None:
        _check_data(self, where)


def _check_data(section: DataSection | PretrainData, where: str) -> None:
    """A known dataset, positive limits, a class subset of its classes."""
    _name(section.dataset, f"{where}.dataset")
    DATASETS.get(section.dataset, f"{where}.dataset")
    for key in ("train_limit", "test_limit"):
        v = getattr(section, key)
        require(v is None or v > 0, f"{where}.{key}", f"must be a positive number of points, got {v}")
    check_classes(section.classes, dataset_info(section.dataset).num_classes, section.dataset, f"{where}.classes")


@dataclass(frozen=True)
class Smoothing:
    samples: int = 8
    augment: Literal["natural", "digit"] | None = None    # default: the dataset's augmentation family

    def validate(self, where: str) -> None:
        require(1 <= self.samples <= 1000, f"{where}.samples", f"must be between 1 and 1000, got {self.samples}")


@dataclass(frozen=True)
class OutputSection:
    dir: str | None = None
    batch_size: int = 256

    def validate(self, where: str) -> None:
        require(self.batch_size >= 1, f"{where}.batch_size", f"must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class TransferSection:
    sources: list[str] | str = "all"
    targets: list[str] | str = "all"
    attacks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ModelEntry:
    """A model of the suite: trained from `train` (a TrainConfig), or loaded from a checkpoint / factory."""

    name: str
    label: str | None
    train: TrainConfig | None = None
    encoder_ref: str | None = None        # another model of the suite whose checkpoint is the encoder
    checkpoint: str | None = None
    factory: str | None = None
    arch: str | None = None
    smoothing: Smoothing | None = None
    written_arch: str | None = None       # the model the suite wrote for it (a protocol must match its encoder's)


@dataclass(frozen=True)
class AttackEntry:
    id: str
    attack: Attack
    seen: bool = False


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    seed: int
    device: str
    data: DataSection
    models: dict[str, ModelEntry]
    attacks: dict[str, AttackEntry]
    transfer: TransferSection | None
    output: OutputSection

    def hash(self) -> str:
        """Identity of everything in the suite that changes a number, so `check` can tell a changed suite.

        Each model's identity (its training configuration as the run key hashes it, or its checkpoint's
        content, and its smoothing), every attack's spec and `seen`, the data subset, seed, transfer matrix
        and the evaluation batch size (library attacks draw once per batch). Not where things run or live
        (device, data root, output folder) nor labels."""
        models = {n: self.model_identity(n) for n in self.models}
        return config_hash({"name": self.name, "seed": self.seed, "models": models,
                            "data": self.data.identity(),
                            "attacks": {k: {**a.attack.describe(), "seen": a.seen} for k, a in self.attacks.items()},
                            "transfer": to_dict(self.transfer), "batch_size": self.output.batch_size})

    def model_identity(self, name: str) -> dict[str, Any]:
        """What produces model `name`: its training run's key (an encoder counted by its own identity or its
        file's content), or its checkpoint's content and factory; plus the smoothing it is wrapped in."""
        m = self.models[name]
        smoothing = to_dict(m.smoothing) if m.smoothing else None
        if m.train is None:
            return {"checkpoint": _content(m.checkpoint), "factory": m.factory, "arch": m.arch, "smoothing": smoothing,
                    **({"factory_source": factory_source(import_factory(m.factory, self.path.resolve().parent,
                                                                        f"{self.path}: models.{name}.factory"))}
                       if m.factory else {})}
        encoder = (config_hash(self.model_identity(m.encoder_ref)) if m.encoder_ref
                   else _content(m.train.encoder))
        return {"train": identity_hash(m.train, encoder), "smoothing": smoothing}

    def transfer_pairs(self) -> list[tuple[str, str, str]]:
        """(source, attack id, target) triples of the transfer matrix, in suite order."""
        if not self.transfer:
            return []
        names = list(self.models)
        sources = names if self.transfer.sources == "all" else list(self.transfer.sources)
        targets = names if self.transfer.targets == "all" else list(self.transfer.targets)
        return [(s, a, t) for s in sources for a in self.transfer.attacks for t in targets if s != t]


MODEL_KEYS = ("label", "checkpoint", "factory", "smoothing")


def _content(path: str | None) -> str | None:
    """A file's SHA-256 (cached while its size and mtime stay), so a moved file is the same file."""
    if not path:
        return None
    st = os.stat(path)
    return _digest(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))


def _model_entry(name: str, raw: Any, suite_dir: Path, data: DataSection, seed: int, device: str,
                 names: list[str], where: str) -> ModelEntry:
    if not isinstance(raw, Mapping):
        raise UserError(f"{where}: expected a mapping (training fields, or checkpoint: PATH), got {shown(raw)}")
    raw = dict(raw)
    for key in ("method", "model"):
        _name(raw.get(key), f"{where}.{key}")
    label = coerce(raw.pop("label", None), str | None, f"{where}.label")
    if label is not None and (hidden_char(label) or len(label) > 200):
        raise UserError(f"{where}.label: {shown(label, 60)} cannot be shown in a table "
                        f"({hidden_char(label) or 'over 200 characters'}); write it on one line")
    smoothing = from_mapping(Smoothing, raw.pop("smoothing"), f"{where}.smoothing") if "smoothing" in raw else None
    if "checkpoint" in raw or "factory" in raw:
        ckpt = coerce(raw.pop("checkpoint", None), str | None, f"{where}.checkpoint")
        factory = coerce(raw.pop("factory", None), str | None, f"{where}.factory")
        arch = coerce(raw.pop("model", None), str | None, f"{where}.model")
        if arch:
            MODELS.get(arch, f"{where}.model")
        if raw:
            key = str(next(iter(raw)))
            raise UserError(f"{where}: unknown key {shown(key)} for a loaded model"
                            f"{suggest(key, ('model',) + MODEL_KEYS)};"
                            f" valid keys: model, {', '.join(MODEL_KEYS)}")
        if not ckpt and not factory:
            raise UserError(f"{where}: name a checkpoint (checkpoint: PATH) or a factory (factory: module:function)")
        if factory:
            import_factory(factory, suite_dir, f"{where}.factory")
        path = _suite_path(ckpt, suite_dir, f"{where}.checkpoint") if ckpt else None
        if path:
            _check_checkpoint(path, arch, None if factory else data, f"{where}.checkpoint")
        return ModelEntry(name, label, checkpoint=path, factory=factory, arch=arch, smoothing=smoothing)
    for key in ("dataset", "data_root", "download", "train_limit", "test_limit", "device", "classes", "image_size"):
        if key in raw:
            raise UserError(f"{where}.{key}: set in the suite's 'data'/'device' section, not per model (an encoder "
                            "pre-trained on other data takes pretrain_data: {dataset: ..., classes: [...]})")
    data_fields = _data_fields(raw.pop("pretrain_data", None), raw.get("method", "standard"), data, suite_dir, where)
    written_arch = raw.get("model") if isinstance(raw.get("model"), str) else None
    encoder_ref = None
    enc = raw.get("encoder")
    if isinstance(enc, str) and enc in names:
        if enc == name:
            raise UserError(f"{where}.encoder: a model cannot be its own encoder; name an earlier model or a "
                            "checkpoint file")
        encoder_ref = enc
        raw["encoder"] = f"<model {enc}>"
    elif isinstance(enc, str):
        path = _suite_path(enc, suite_dir, f"{where}.encoder")
        if not exists(Path(path)):
            raise UserError(f"{where}.encoder: {shown(enc)} is neither a model of this suite{suggest(enc, names)} "
                            f"nor an existing checkpoint file; models: {', '.join(names)}")
        starts = not (isinstance(raw.get("method"), str) and raw["method"] in METHODS
                      and METHODS.get(raw["method"]).encoder_role == "teacher")
        _check_checkpoint(path, None, None, f"{where}.encoder", encoder_for=data,
                          protocol_arch=written_arch if starts else None)
        raw["encoder"] = path
    fields = {"seed": seed, **raw, **data_fields, "device": device}
    cfg = make_train_config(fields, where, suite_dir)
    if encoder_ref:
        cfg = dataclasses.replace(cfg, encoder=f"<model {encoder_ref}>")
    return ModelEntry(name, label, train=cfg, encoder_ref=encoder_ref, smoothing=smoothing, written_arch=written_arch)


def _data_fields(pretrain: Any, method: Any, data: DataSection, suite_dir: Path, where: str) -> dict[str, Any]:
    """The training run's data: the suite's, or (pretrain_data) an encoder's own dataset and class subset at the
    suite's resolution, so a protocol on that encoder trains and is attacked on the suite's data."""
    same = {"dataset": data.dataset, "data_root": data.root, "download": data.download, "classes": data.classes,
            "image_size": data.image_size, "train_limit": data.train_limit, "test_limit": data.test_limit}
    if pretrain is None:
        return same
    w = f"{where}.pretrain_data"
    pre = from_mapping(PretrainData, pretrain, w)
    if isinstance(method, str) and method in METHODS and METHODS.get(method).yields != "encoder":
        raise UserError(f"{w}: method '{method}' yields a classifier, evaluated on the suite's data; pre-train an "
                        "encoder (e.g. method: rocl) on other data and put a protocol (slf, alf, aff) on it")
    src, target = dataset_info(pre.dataset), data.info()
    if "imagefolder" not in (pre.dataset, data.dataset) and src.channels != target.channels:
        raise UserError(f"{w}.dataset: '{pre.dataset}' has {src.channels} channel(s), the suite's data "
                        f"'{data.dataset}' {target.channels}; pre-train on data with as many channels")
    size = target.image_size if data.dataset != "imagefolder" and src.image_size != target.image_size else None
    root = _suite_path(pre.root, suite_dir, f"{w}.root") if pre.root else data.root
    return {"dataset": pre.dataset, "data_root": root, "download": data.download, "classes": pre.classes,
            "image_size": size, "train_limit": pre.train_limit, "test_limit": pre.test_limit}


def _name(value: Any, where: str) -> None:
    """Registry names are plain words: refuse control characters here, so the message stays on one line."""
    if isinstance(value, str) and not value.isprintable():
        raise UserError(f"{where}: {shown(value)} is not a name (it holds control characters); write the name "
                        "on one line")


def _suite_path(text: str, suite_dir: Path, where: str) -> str:
    """A path written in the suite, relative to the suite file's folder."""
    path_text(text, where)
    try:
        return str((suite_dir / Path(text).expanduser()).resolve())
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"{where}: {shown(text)} is not a usable path ({e.__class__.__name__}); write a plain file "
                        "path, relative to the suite file") from None


def _check_checkpoint(path: str, arch: str | None, data: DataSection | None, where: str,
                      encoder_for: DataSection | None = None, protocol_arch: str | None = None) -> None:
    """Load a checkpoint named by the suite now, so a missing, truncated, unsafe or mismatched file is refused
    before anything is trained or written (weights_only loading; see train.checkpoint)."""
    import torch

    from ..models.loading import check_outputs, classifier_from_checkpoint
    from ..train.checkpoint import load_checkpoint

    ck = load_checkpoint(path, where)
    spec = ck.get("model_spec")
    if protocol_arch and isinstance(spec, Mapping) and spec.get("arch") != protocol_arch:
        raise UserError(f"{where}: {path} is a '{spec.get('arch')}' encoder and the protocol names model "
                        f"'{protocol_arch}'; drop model (a protocol takes its encoder's architecture) or use a "
                        f"'{protocol_arch}' encoder")
    if encoder_for is not None and isinstance(spec, Mapping):
        info = encoder_for.info()
        shape = (spec.get("in_channels"), spec.get("image_size"))
        if encoder_for.dataset != "imagefolder" and shape != (info.channels, info.image_size):
            raise UserError(f"{where}: {path} was made for {shape[0]}×{shape[1]}² inputs, dataset "
                            f"'{info.name}' has {info.channels}×{info.image_size}²; use an encoder of this dataset")
    if data is None:
        return
    info = data.info()
    try:
        model = classifier_from_checkpoint(ck, path, arch, info)
        if data.dataset != "imagefolder":            # a mid-grey image: the run probes real test inputs too
            check_outputs(model, torch.full((2, info.channels, info.image_size, info.image_size), 0.5),
                          f"checkpoint {path}")
    except UserError as e:
        raise UserError(f"{where}: {e}") from None


_IMPORTED: dict[str, str] = {}        # factory module name -> SHA-256 of its file when import_factory last loaded it


def factory_source(fn: Any) -> str | None:
    """SHA-256 of the source file that defines the factory function `fn` (None if it has none, e.g. a builtin).

    Part of a factory model's key: editing the network in that file (a layer width, the init) makes a new model
    whose cells must run again. Code the factory imports from other files is not counted."""
    import inspect

    try:
        path = inspect.getsourcefile(fn)
    except TypeError:
        return None
    return _file_digest(path)


def _module_digest(module: Any) -> str | None:
    return _file_digest(getattr(module, "__file__", None))


def _file_digest(path: str | None) -> str | None:
    """SHA-256 of a source file's bytes, read each time (an edit may keep its size and land in the same mtime tick)."""
    return file_sha256(Path(path)) if path and os.path.isfile(path) else None


def import_factory(spec: str, suite_dir: Path | None, where: str) -> Any:
    """The callable `package.module:function`; modules next to the suite file are importable too.

    A module that an earlier call imported is reloaded when its file changed since, so that a second run in one
    process builds the edited network (and keys it by the edited file)."""
    import importlib
    import sys

    mod_name, _, fn_name = spec.partition(":")
    if not mod_name or not fn_name or not all(part.isidentifier() for part in mod_name.split(".")) \
            or not fn_name.isidentifier():
        raise UserError(f"{where}: expected 'package.module:function', got {shown(spec)}")
    added = suite_dir is not None and str(suite_dir) not in sys.path
    if added:
        sys.path.insert(0, str(suite_dir))
    no_pyc = sys.dont_write_bytecode
    sys.dont_write_bytecode = True            # write nothing outside the output folder, not even __pycache__/
    try:
        module = importlib.import_module(mod_name)
        digest = _module_digest(module)
        if mod_name in _IMPORTED and digest is not None and _IMPORTED[mod_name] != digest:
            module = importlib.reload(module)
        _IMPORTED[mod_name] = _module_digest(module) or ""
    except Exception as e:               # ImportError, or whatever the module raises while importing
        raise UserError(f"{where}: cannot import '{mod_name}' ({e.__class__.__name__}: "
                        f"{(str(e).splitlines() or [''])[0][:160]}); check the module path, relative to the suite "
                        "file or on PYTHONPATH") from None
    finally:
        sys.dont_write_bytecode = no_pyc
        if added:
            sys.path.remove(str(suite_dir))
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise UserError(f"{where}: '{mod_name}' has no function '{fn_name}'{suggest(fn_name, dir(module))}")
    return fn


def _check_budgets(attacks: dict[str, AttackEntry], data: DataSection, where: str) -> None:
    """ℓ1/ℓ2 budgets larger than any two images of the dataset can differ are refused before the run."""
    import torch

    if data.dataset == "imagefolder":            # image size known only once the folder is read
        return
    info = data.info()
    probe = torch.zeros(1, info.channels, info.image_size, info.image_size)
    for aid, entry in attacks.items():
        try:
            entry.attack.check_input(probe)
        except UserError as e:
            raise UserError(f"{where}: attacks.{segment(aid)}.eps: {e}") from None


def load_suite(path: str | Path, data_root: str | None = None) -> Suite:
    """Read and validate a suite file completely (models, attacks, transfer) before anything runs."""
    path = Path(path)
    raw = load_yaml(path)
    where = str(path)
    if not isinstance(raw, Mapping):
        raise UserError(f"{where}: a suite is a mapping with keys {', '.join(TOP_KEYS[:-1])}; got "
                        f"{type(raw).__name__}")
    for key in raw:
        if key not in TOP_KEYS:
            raise UserError(f"{where}: unknown key {shown(str(key))}{suggest(str(key), TOP_KEYS)}; valid keys: "
                            f"{', '.join(TOP_KEYS)}")
    name = safe_name(raw.get("name") if "name" in raw else path.stem, f"{where}: name")
    seed = check_seed(coerce(raw.get("seed", 0), int, f"{where}: seed"), f"{where}: seed")
    device = coerce(raw.get("device", "auto"), Literal["auto", "cpu", "cuda"], f"{where}: device")
    suite_dir = path.resolve().parent
    data_raw = dict(raw.get("data") or {}) if isinstance(raw.get("data", {}), Mapping) else raw.get("data")
    data = from_mapping(DataSection, data_raw, f"{where}: data")
    if data.root:
        data = dataclasses.replace(data, root=_suite_path(data.root, suite_dir, f"{where}: data.root"))
        if data.dataset not in EMBEDDED and not data.download and not data_root and not exists(Path(data.root)):
            raise UserError(f"{where}: data.root: {data.root} does not exist; point it at the folder that holds the "
                            f"{data.dataset} data (relative to the suite file), or pass --data-root PATH, or set "
                            "data.download: true")
    if data_root:                # relative to where the command runs, not to the suite file
        data = dataclasses.replace(data, root=str(Path(data_root).expanduser().resolve()))
    models_raw = raw.get("models")
    if not isinstance(models_raw, Mapping) or not models_raw:
        raise UserError(f"{where}: models: expected a non-empty mapping name -> training config or checkpoint")
    names = [safe_name(n, f"{where}: models: model name") for n in models_raw]
    models = {str(n): _model_entry(str(n), m, suite_dir, data, seed, device, names, f"{where}: models.{segment(n)}")
              for n, m in models_raw.items()}
    _check_encoder_order(models, where)
    for n, m in models.items():      # a protocol on a suite encoder has the encoder's architecture
        if m.encoder_ref and m.train and models[m.encoder_ref].train and \
                METHODS.get(m.train.method).encoder_role == "start":
            enc_arch = models[m.encoder_ref].train.model
            if m.written_arch and m.written_arch != enc_arch:
                raise UserError(f"{where}: models.{segment(n)}.model: '{m.written_arch}' differs from its encoder "
                                f"{shown(m.encoder_ref)}'s architecture '{enc_arch}'; drop model (a protocol takes "
                                "its encoder's) or pre-train the encoder as this model")
            models[n] = dataclasses.replace(m, train=dataclasses.replace(m.train,
                                                                         model=models[m.encoder_ref].train.model))
    attacks_raw = raw.get("attacks")
    if not isinstance(attacks_raw, Mapping) or not attacks_raw:
        raise UserError(f"{where}: attacks: expected a non-empty mapping id -> attack spec (e.g. {{type: pgd, ...}})")
    attacks = {}
    for aid, spec in attacks_raw.items():
        safe_name(aid, f"{where}: attacks: attack id")
        w = f"{where}: attacks.{segment(aid)}"
        spec = {"type": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, Mapping):
            raise UserError(f"{w}: expected a mapping with a 'type' key, got {shown(spec)}")
        spec = dict(spec)
        _name(spec.get("type"), f"{w}.type")
        seen = coerce(spec.pop("seen", False), bool, f"{w}.seen")
        attack = build_attack(spec, w)
        if seen and attack.eps is None:
            raise UserError(f"{w}.seen: '{attack.name}' is a minimum-norm attack with no budget of its own; drop seen "
                            "(its cells at the seen budget are marked seen from the fixed-ε attacks there)")
        attacks[str(aid)] = AttackEntry(str(aid), attack, seen)
    _check_budgets(attacks, data, where)
    transfer = None
    if raw.get("transfer") is not None:
        transfer = from_mapping(TransferSection, raw["transfer"], f"{where}: transfer")
        for key in ("sources", "targets"):
            value = getattr(transfer, key)
            if isinstance(value, str) and value != "all":
                raise UserError(f"{where}: transfer.{key}: expected 'all' or a list of model names, got {shown(value)}")
            for m in ([] if value == "all" else value):
                if m not in models:
                    raise UserError(f"{where}: transfer.{key}: model {shown(m)} is not in the suite"
                                    f"{suggest(m, models)}; "
                                    f"models: {', '.join(models)}")
        if not transfer.attacks:
            raise UserError(f"{where}: transfer.attacks: name at least one attack id to craft with on the sources")
        for a in transfer.attacks:
            if a not in attacks:
                raise UserError(f"{where}: transfer.attacks: unknown attack id {shown(a)}{suggest(a, attacks)}; "
                                f"ids: {', '.join(attacks)}")
            if attacks[a].attack.norm is None:
                raise UserError(f"{where}: transfer.attacks: {shown(a)} is a clean pass; name a white-box attack")
            if attacks[a].attack.eps is None:
                raise UserError(f"{where}: transfer.attacks: {shown(a)} is a minimum-norm attack (no ε-ball to judge "
                                "the target in); name a fixed-ε white-box attack")
    output = from_mapping(OutputSection, raw.get("output"), f"{where}: output")
    if output.dir is not None:
        path_text(output.dir, f"{where}: output.dir")
    return Suite(name, path, seed, device, data, models, attacks, transfer, output)


def _check_encoder_order(models: dict[str, ModelEntry], where: str) -> None:
    """Encoders must be earlier models of the suite, so dependencies train first and never loop."""
    order = list(models)
    for i, (name, m) in enumerate(models.items()):
        if m.encoder_ref and order.index(m.encoder_ref) >= i:
            raise UserError(f"{where}: models.{segment(name)}.encoder: {shown(m.encoder_ref)} must be listed before "
                            f"{shown(name)}")


def results_folder(suite_file: Path, output_dir: str | None, name: str) -> Path:
    """Where a suite's results go without --out: its output.dir, relative to the suite file, else results/<name>."""
    if output_dir:
        return (suite_file.resolve().parent / output_dir).resolve()
    return Path("results") / name


def smoothing_spec(entry: ModelEntry, augment_kind: str) -> AugmentSpec | None:
    if not entry.smoothing:
        return None
    return AugmentSpec.for_kind(entry.smoothing.augment or augment_kind)
