"""From a training config to a model and its method: the method's declarations shape the model, and a
pretrained encoder (--encoder) is transplanted under a fresh head."""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..data import ImageSet
from ..errors import UserError
from ..methods import METHODS, Method
from ..models import Classifier, ModelSpec, build_model
from ..models.loading import load_state, spec_for, spec_from
from .checkpoint import load_checkpoint
from .spec import TrainConfig


def build(cfg: TrainConfig, train_set: ImageSet) -> tuple[Classifier, Method, TrainConfig]:
    """The seeded model, the method (set up on it) and the config with the encoder's architecture filled in.

    The method is made first (it draws nothing) so its projector() sizes the model; the model's random
    initialisation comes from cfg.seed alone, then setup() builds the method's extra modules on it."""
    info = cfg.data_info()
    method = METHODS.get(cfg.method, "method")(cfg.method_params("config"), info)
    num_classes = info.num_classes or int(train_set.labels.max()) + 1
    torch.manual_seed(cfg.seed)
    method.epochs = cfg.epochs
    if cfg.encoder and method.encoder_role == "start":
        model, cfg = transplant_encoder(cfg, method, info, num_classes)
    else:
        c, s = train_set.images.shape[1], train_set.images.shape[-1]
        model = build_model(spec_for(cfg.model, info, num_classes, method.projector(), c, s))
    if cfg.encoder and method.encoder_role == "teacher":
        method.teacher = frozen_teacher(cfg.encoder, info)
    method.setup(model)
    return model, method, cfg


def _fits(src: ModelSpec, info: Any, path: str) -> None:
    """An encoder takes this dataset's inputs (channels and size), or the run stops before it trains."""
    if (src.in_channels, src.image_size) != (info.channels, info.image_size):
        raise UserError(f"encoder {path}: made for {src.in_channels}×{src.image_size}² inputs, dataset "
                        f"'{info.name}' has {info.channels}×{info.image_size}²; use an encoder of this dataset")


def frozen_teacher(path: str, info: Any) -> Classifier:
    """The encoder checkpoint as a frozen classifier in eval mode (a teacher: its features, never trained)."""
    from ..models.loading import classifier_from_checkpoint

    enc = load_checkpoint(path, "encoder")
    if "model_spec" in enc:
        _fits(spec_from(enc["model_spec"], f"encoder {path}"), info, path)
    teacher = classifier_from_checkpoint(enc, path, None, None)   # its head is never used: any classes
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def transplant_encoder(cfg: TrainConfig, method: Method, info: Any,
                       num_classes: int) -> tuple[Classifier, TrainConfig]:
    """A model whose encoder comes from cfg.encoder, with a fresh head for this dataset.

    A method with a projector keeps the encoder's own (or gets a fresh one of its sizes when the encoder has
    none); a method without one drops it, so a linear protocol's checkpoint is a plain classifier."""
    enc = load_checkpoint(cfg.encoder, "encoder")
    src = spec_from(enc["model_spec"], f"encoder {cfg.encoder}") if "model_spec" in enc else spec_for(cfg.model, info)
    _fits(src, info, cfg.encoder)
    wanted = method.projector()
    proj = (src.projector or wanted) if wanted else None
    carried = ("encoder.", "projector.") if proj and src.projector else ("encoder.",)
    model = build_model(ModelSpec(src.arch, num_classes, src.in_channels, src.image_size, src.mean, src.std, proj))
    keep = {k: v for k, v in enc["state_dict"].items() if k.startswith(carried)}
    fresh = {k: v for k, v in model.state_dict().items() if not k.startswith(carried)}
    load_state(model, {**fresh, **keep}, f"encoder {cfg.encoder}")
    return model, dataclasses.replace(cfg, model=src.arch)
