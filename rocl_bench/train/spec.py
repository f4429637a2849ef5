"""The training configuration: one dataclass for the CLI and YAML, method defaults merged in first."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from ..config import check_seed, from_mapping, require
from ..data import DATASETS, check_classes, dataset_info, view_info
from ..errors import UserError
from ..methods import METHODS
from ..models import MODELS


# Fields added after runs were keyed: at these values a run computes what it did before the field existed, so
# its key leaves them out (committed results and baselines keep their keys).
LATER_FIELDS: dict[str, Any] = {"classes": None, "image_size": None, "lr_update": "step"}


@dataclass(frozen=True)
class TrainConfig:
    method: str = "standard"
    dataset: str = "digits"
    model: str = "mlp"
    epochs: int = 10
    batch_size: int = 128
    optimizer: Literal["sgd", "lars"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lars_trust: float = 0.001
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    warmup_multiplier: float = 1.0
    schedule_epochs: int | None = None
    # "step": the rate follows the schedule at every step; "epoch": set once at each epoch's start, as the
    # official RoCL scheduler (GradualWarmupScheduler + cosine, stepped before each epoch) sets it
    lr_update: Literal["step", "epoch"] = "step"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True                     # bf16 autocast on CUDA (ignored on the CPU)
    channels_last: bool = True           # on CUDA
    data_root: str | None = None
    download: bool = False
    train_limit: int | None = None
    test_limit: int | None = None
    encoder: str | None = None           # a pretrained checkpoint (linear protocols, fine-tuning)
    classes: list[int] | None = None     # a class subset of the dataset, relabelled 0..k-1 in this order
    image_size: int | None = None        # resize the images (robust transfer: pre-train data at the target's size)
    params: dict[str, Any] = field(default_factory=dict)   # the method's own parameters

    def validate(self, where: str) -> None:
        METHODS.get(self.method, f"{where}.method")
        DATASETS.get(self.dataset, f"{where}.dataset")
        MODELS.get(self.model, f"{where}.model")
        require(1 <= self.epochs <= 100_000, f"{where}.epochs", f"must be between 1 and 100000, got {self.epochs}")
        require(self.batch_size >= 2, f"{where}.batch_size", f"must be at least 2, got {self.batch_size}")
        require(self.lr > 0, f"{where}.lr", f"must be positive, got {self.lr}")
        check_seed(self.seed, f"{where}.seed")
        require(self.weight_decay >= 0, f"{where}.weight_decay", "must be >= 0")
        require(0 <= self.momentum < 1, f"{where}.momentum", "must be in [0, 1)")
        require(self.warmup_epochs >= 0 and self.warmup_multiplier >= 1, f"{where}.warmup_multiplier",
                "warm-up epochs must be >= 0 and the multiplier >= 1")
        for key in ("train_limit", "test_limit"):
            v = getattr(self, key)
            require(v is None or v > 0, f"{where}.{key}", f"must be a positive number of points, got {v}")
        check_classes(self.classes, DATASETS.get(self.dataset)[0].num_classes, self.dataset, f"{where}.classes")
        require(self.image_size is None or 4 <= self.image_size <= 1024, f"{where}.image_size",
                f"must be between 4 and 1024 pixels, got {self.image_size}")
        cls = METHODS.get(self.method)
        if cls.needs_encoder and not self.encoder:
            role = ("learns from a frozen teacher encoder's features (e.g. a simclr checkpoint)"
                    if cls.encoder_role == "teacher" else "trains on a pretrained encoder")
            raise UserError(f"{where}.encoder: method '{self.method}' {role}; pass --encoder PATH/checkpoint.pt")

    def data_info(self) -> Any:
        """The DatasetInfo of what this run trains on: its class subset and size, if any."""
        return view_info(dataset_info(self.dataset), self.classes, self.image_size)

    def method_params(self, where: str) -> Any:
        cls = METHODS.get(self.method, f"{where}.method")
        _refuse_foreign(self.method, cls.Params, self.params, f"{where}.params")
        return from_mapping(cls.Params, self.params, f"{where}.params")


def _refuse_foreign(method: str, params_cls: type, params: Any, where: str) -> None:
    """An option of another method (e.g. `steps` on simclr) is named with its owners, not as a typo."""
    if not isinstance(params, Mapping):
        return
    own = {f.name for f in dataclasses.fields(params_cls)} if dataclasses.is_dataclass(params_cls) else set()
    for key in params:
        if key in own:
            continue
        owners = sorted(n for n in METHODS.names() if dataclasses.is_dataclass(METHODS.get(n).Params)
                        and key in {f.name for f in dataclasses.fields(METHODS.get(n).Params)})
        if owners:
            raise UserError(f"{where}.{key}: is an option of method {', '.join(owners)}, not of '{method}'; drop "
                            f"it{' (its options: ' + ', '.join(sorted(own)) + ')' if own else ''} or change method")


def make_train_config(fields: Mapping[str, Any], where: str, base_dir: Path | None = None) -> TrainConfig:
    """Merge the method's defaults under the user's fields, check everything, resolve relative paths."""
    if not isinstance(fields, Mapping):
        raise UserError(f"{where}: expected a mapping of training fields, got {type(fields).__name__}")
    method = fields.get("method", "standard")
    if not isinstance(method, str):
        raise UserError(f"{where}.method: expected a method name, got {method!r}")
    defaults = dict(METHODS.get(method, f"{where}.method").train_defaults)
    merged = {**defaults, **fields}
    if base_dir is not None:
        for key in ("encoder", "data_root"):
            if isinstance(merged.get(key), str) and not Path(merged[key]).expanduser().is_absolute():
                merged[key] = str((base_dir / merged[key]).resolve())
    cfg = from_mapping(TrainConfig, merged, where)
    cfg.method_params(where)
    return cfg
