"""YAML suites, validated before anything runs: every error names the file, the key path and the fix."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from ..attacks.registry import Attack, build_attack
from ..config import coerce, config_hash, from_mapping, load_yaml, require, to_dict
from ..data import DATASETS
from ..data.augment import AugmentSpec
from ..errors import UserError, suggest
from ..models import MODELS
from ..train.spec import TrainConfig, make_train_config

TOP_KEYS = ("name", "seed", "device", "data", "models", "attacks", "transfer", "output", "description")


@dataclass(frozen=True)
class DataSection:
    dataset: str = "digits"
    root: str | None = None
    download: bool = False
    train_limit: int | None = None
    test_limit: int | None = None

    def validate(self, where: str) -> None:
        DATASETS.get(self.dataset, f"{where}.dataset")
        for key in ("train_limit", "test_limit"):
            v = getattr(self, key)
            require(v is None or v > 0, f"{where}.{key}", f"must be a positive number of points, got {v}")


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
        return config_hash({"name": self.name, "seed": self.seed, "data": to_dict(self.data),
                            "models": sorted(self.models), "attacks": {k: a.attack.describe()
                                                                       for k, a in self.attacks.items()}})

    def transfer_pairs(self) -> list[tuple[str, str, str]]:
        """(source, attack id, target) triples of the transfer matrix, in suite order."""
        if not self.transfer:
            return []
        names = list(self.models)
        sources = names if self.transfer.sources == "all" else list(self.transfer.sources)
        targets = names if self.transfer.targets == "all" else list(self.transfer.targets)
        return [(s, a, t) for s in sources for a in self.transfer.attacks for t in targets if s != t]


MODEL_KEYS = ("label", "checkpoint", "factory", "smoothing")


def _model_entry(name: str, raw: Any, suite_dir: Path, data: DataSection, seed: int, device: str,
                 names: list[str], where: str) -> ModelEntry:
    if not isinstance(raw, Mapping):
        raise UserError(f"{where}: expected a mapping (training fields, or checkpoint: PATH), got {raw!r}")
    raw = dict(raw)
    label = coerce(raw.pop("label", None), str | None, f"{where}.label")
    smoothing = from_mapping(Smoothing, raw.pop("smoothing"), f"{where}.smoothing") if "smoothing" in raw else None
    if "checkpoint" in raw or "factory" in raw:
        ckpt = coerce(raw.pop("checkpoint", None), str | None, f"{where}.checkpoint")
        factory = coerce(raw.pop("factory", None), str | None, f"{where}.factory")
        arch = coerce(raw.pop("model", None), str | None, f"{where}.model")
        if arch:
            MODELS.get(arch, f"{where}.model")
        if raw:
            key = next(iter(raw))
            raise UserError(f"{where}: unknown key '{key}' for a loaded model{suggest(key, ('model',) + MODEL_KEYS)};"
                            f" valid keys: model, {', '.join(MODEL_KEYS)}")
        if factory and ":" not in factory:
            raise UserError(f"{where}.factory: expected 'package.module:function', got '{factory}'")
        path = str((suite_dir / ckpt).resolve()) if ckpt else None
        return ModelEntry(name, label, checkpoint=path, factory=factory, arch=arch, smoothing=smoothing)
    for key in ("dataset", "data_root", "download", "train_limit", "test_limit", "device"):
        if key in raw:
            raise UserError(f"{where}.{key}: set in the suite's 'data'/'device' section, not per model")
    encoder_ref = None
    enc = raw.get("encoder")
    if isinstance(enc, str) and enc in names:
        encoder_ref = enc
        raw["encoder"] = f"<model {enc}>"
    elif isinstance(enc, str) and not (suite_dir / enc).exists():
        raise UserError(f"{where}.encoder: '{enc}' is neither a model of this suite{suggest(enc, names)} "
                        f"nor an existing checkpoint file; models: {', '.join(names)}")
    fields = {"seed": seed, **raw, "dataset": data.dataset, "data_root": data.root, "download": data.download,
              "train_limit": data.train_limit, "test_limit": data.test_limit, "device": device}
    cfg = make_train_config(fields, where, suite_dir)
    if encoder_ref:
        cfg = dataclasses.replace(cfg, encoder=f"<model {encoder_ref}>")
    return ModelEntry(name, label, train=cfg, encoder_ref=encoder_ref, smoothing=smoothing)


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
            raise UserError(f"{where}: unknown key '{key}'{suggest(str(key), TOP_KEYS)}; valid keys: "
                            f"{', '.join(TOP_KEYS)}")
    name = coerce(raw.get("name"), str, f"{where}: name") if "name" in raw else path.stem
    require(bool(name) and "/" not in name and name not in (".", ".."), f"{where}: name",
            "must be a non-empty name without '/'")
    seed = coerce(raw.get("seed", 0), int, f"{where}: seed")
    device = coerce(raw.get("device", "auto"), Literal["auto", "cpu", "cuda"], f"{where}: device")
    suite_dir = path.resolve().parent
    data_raw = dict(raw.get("data") or {}) if isinstance(raw.get("data", {}), Mapping) else raw.get("data")
    data = from_mapping(DataSection, data_raw, f"{where}: data")
    if data.root and not Path(data.root).expanduser().is_absolute():
        data = dataclasses.replace(data, root=str((suite_dir / data.root).resolve()))
    if data_root:
        data = dataclasses.replace(data, root=data_root)
    models_raw = raw.get("models")
    if not isinstance(models_raw, Mapping) or not models_raw:
        raise UserError(f"{where}: models: expected a non-empty mapping name -> training config or checkpoint")
    names = [str(n) for n in models_raw]
    models = {str(n): _model_entry(str(n), m, suite_dir, data, seed, device, names, f"{where}: models.{n}")
              for n, m in models_raw.items()}
    _check_encoder_order(models, where)
    for n, m in models.items():      # a protocol on a suite encoder has the encoder's architecture
        if m.encoder_ref and m.train and models[m.encoder_ref].train:
            models[n] = dataclasses.replace(m, train=dataclasses.replace(m.train,
                                                                         model=models[m.encoder_ref].train.model))
    attacks_raw = raw.get("attacks")
    if not isinstance(attacks_raw, Mapping) or not attacks_raw:
        raise UserError(f"{where}: attacks: expected a non-empty mapping id -> attack spec (e.g. {{type: pgd, ...}})")
    attacks = {}
    for aid, spec in attacks_raw.items():
        w = f"{where}: attacks.{aid}"
        spec = {"type": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, Mapping):
            raise UserError(f"{w}: expected a mapping with a 'type' key, got {spec!r}")
        spec = dict(spec)
        seen = coerce(spec.pop("seen", False), bool, f"{w}.seen")
        attacks[str(aid)] = AttackEntry(str(aid), build_attack(spec, w), seen)
    transfer = None
    if raw.get("transfer") is not None:
        transfer = from_mapping(TransferSection, raw["transfer"], f"{where}: transfer")
        for key in ("sources", "targets"):
            value = getattr(transfer, key)
            if isinstance(value, str) and value != "all":
                raise UserError(f"{where}: transfer.{key}: expected 'all' or a list of model names, got '{value}'")
            for m in ([] if value == "all" else value):
                if m not in models:
                    raise UserError(f"{where}: transfer.{key}: model '{m}' is not in the suite{suggest(m, models)}; "
                                    f"models: {', '.join(models)}")
        if not transfer.attacks:
            raise UserError(f"{where}: transfer.attacks: name at least one attack id to craft with on the sources")
        for a in transfer.attacks:
            if a not in attacks:
                raise UserError(f"{where}: transfer.attacks: unknown attack id '{a}'{suggest(a, attacks)}; "
                                f"ids: {', '.join(attacks)}")
            if attacks[a].attack.norm is None:
                raise UserError(f"{where}: transfer.attacks: '{a}' is a clean pass; name a white-box attack")
    output = from_mapping(OutputSection, raw.get("output"), f"{where}: output")
    return Suite(name, path, seed, device, data, models, attacks, transfer, output)


def _check_encoder_order(models: dict[str, ModelEntry], where: str) -> None:
    """Encoders must be earlier models of the suite, so dependencies train first and never loop."""
    order = list(models)
    for i, (name, m) in enumerate(models.items()):
        if m.encoder_ref and order.index(m.encoder_ref) >= i:
            raise UserError(f"{where}: models.{name}.encoder: '{m.encoder_ref}' must be listed before '{name}'")


def smoothing_spec(entry: ModelEntry, augment_kind: str) -> AugmentSpec | None:
    if not entry.smoothing:
        return None
    return AugmentSpec.for_kind(entry.smoothing.augment or augment_kind)
