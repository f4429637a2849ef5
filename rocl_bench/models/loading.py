"""Rebuild a model from a checkpoint (ours, or a plain state_dict plus a model name) and check it fits."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from .nets import MODELS, Classifier, ModelSpec, build_model


def spec_for(arch: str, info: Any, num_classes: int | None = None, projector: tuple[int, int] | None = None,
             in_channels: int | None = None, image_size: int | None = None) -> ModelSpec:
    """The model spec for dataset `info` (a DatasetInfo)."""
    MODELS.get(arch, "model")
    return ModelSpec(arch, num_classes or info.num_classes, in_channels or info.channels,
                     image_size or info.image_size, tuple(info.mean), tuple(info.std), projector)


def check_tensors(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], where: str) -> None:
    """Refuse garbage weights, naming the tensor: NaN/inf values, or an integer, bool or complex tensor where the
    architecture declares a floating one (load_state_dict would cast it silently)."""
    for name, t in state.items():
        want = expected.get(name)
        if want is not None and want.dtype != t.dtype and (want.is_floating_point() != t.is_floating_point()
                                                           or t.is_complex() != want.is_complex()):
            raise UserError(f"{where}: tensor '{name}' is {str(t.dtype).replace('torch.', '')}, the architecture "
                            f"declares {str(want.dtype).replace('torch.', '')}; re-create the checkpoint")
        if (t.is_floating_point() or t.is_complex()) and t.numel() and not bool(torch.isfinite(t).all()):
            raise UserError(f"{where}: tensor '{name}' holds NaN or infinite values; the model is unusable, "
                            "re-create the checkpoint (or retrain with a lower --lr)")


def check_outputs(model: torch.nn.Module, x: torch.Tensor, where: str) -> None:
    """A model whose clean outputs on real inputs are not finite is refused before it is scored."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        model.train(was)
    if isinstance(out, torch.Tensor) and not bool(torch.isfinite(out).all()):
        raise UserError(f"{where}: the model's outputs on clean test inputs are NaN or infinite; fix the model "
                        "or its checkpoint")


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """load_state_dict with a one-line explanation when the weights do not fit the architecture or are garbage
    (see check_tensors)."""
    check_tensors(state, model.state_dict(), where)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise UserError(f"{where}: weights do not fit the architecture ({detail[:200]}); "
                        "check --model / the checkpoint's architecture and class count") from None


def classifier_from_checkpoint(ckpt: dict[str, Any], path: str | Path, model_name: str | None = None,
                               info: Any = None) -> Classifier:
    """A ready classifier in eval mode. Plain state_dicts need `model_name` and the dataset's info."""
    where = f"checkpoint {path}"
    if "model_spec" in ckpt:
        spec = spec_from(ckpt["model_spec"], where)
        if model_name and model_name != spec.arch:
            raise UserError(f"{where}: holds a '{spec.arch}' but model '{model_name}' was asked for; "
                            f"drop --model or pass --model {spec.arch}")
        if info is not None and info.num_classes and spec.num_classes != info.num_classes:
            raise UserError(f"{where}: has {spec.num_classes} classes but dataset '{info.name}' has "
                            f"{info.num_classes}; use a checkpoint trained on this dataset")
    else:
        if not model_name or info is None:
            raise UserError(f"{where}: is a plain state_dict; name its architecture with --model NAME "
                            f"(one of {', '.join(MODELS.names())}) and its dataset")
        spec = spec_for(model_name, info)
        state = ckpt["state_dict"]
        if any(k.startswith("projector.") for k in state):
            if "projector.0.weight" not in state or "projector.2.weight" not in state:
                raise UserError(f"{where}: has projector weights but not projector.0/2.weight; "
                                "re-create it with rocl-bench train")
            spec = ModelSpec(**{**spec.__dict__, "projector": (state["projector.0.weight"].shape[0],
                                                              state["projector.2.weight"].shape[0])})
    try:
        model = build_model(spec)
    except (RuntimeError, ValueError, TypeError) as e:
        raise UserError(f"{where}: its model_spec cannot be built ({e.__class__.__name__}: "
                        f"{(str(e).splitlines() or [''])[0][:120]}); re-create it with rocl-bench train") from None
    load_state(model, ckpt["state_dict"], where)
    return model.eval()


def spec_from(raw: Any, where: str) -> ModelSpec:
    """The checkpoint's model_spec, or one line saying why it is unusable (zero std, non-finite mean, ...)."""
    try:
        spec = ModelSpec.from_dict(raw)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UserError(f"{where}: its model_spec is malformed ({e.__class__.__name__}: {e}); re-create it with "
                        "rocl-bench train") from None
    MODELS.get(spec.arch, f"{where}: model_spec.arch")
    if spec.num_classes < 1 or spec.in_channels < 1 or spec.image_size < 1 or \
            len(spec.mean) != spec.in_channels or len(spec.std) != spec.in_channels:
        raise UserError(f"{where}: its model_spec is inconsistent ({spec}); re-create it with rocl-bench train")
    for key in ("mean", "std"):
        values = getattr(spec, key)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values) \
                or (key == "std" and not all(v > 0 for v in values)):
            raise UserError(f"{where}: model_spec.{key} {list(values)!r:.80} must hold finite numbers"
                            f"{' > 0 (inputs are divided by it)' if key == 'std' else ''}; re-create it with "
                            "rocl-bench train")
    if not (1 <= spec.in_channels <= 64 and 1 <= spec.image_size <= 4096 and 1 <= spec.num_classes <= 100_000):
        raise UserError(f"{where}: its model_spec has an absurd size (in_channels {spec.in_channels}, image_size "
                        f"{spec.image_size}, num_classes {spec.num_classes}); re-create it with rocl-bench train")
    return spec
