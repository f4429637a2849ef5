"""Get every model a suite names: train what is missing (keyed by config hash), or load checkpoints/factories."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..config import config_hash, inside
from ..errors import UserError
from ..models.loading import check_outputs, check_tensors, classifier_from_checkpoint, load_state
from ..models.smoothing import SmoothedClassifier
from ..train import load_checkpoint, train
from ..train.checkpoint import file_sha256, remove_if_empty
from ..train.folder import identity_hash
from .suite import ModelEntry, Suite, factory_source, import_factory, smoothing_spec


@dataclasses.dataclass
class ReadyModel:
    """A classifier ready for evaluation, with what its records need to say about it."""

    name: str
    label: str
    method: str
    arch: str
    key: str                  # hash of what produced it (training config, or the checkpoint's bytes)
    checkpoint: Path | None
    checkpoint_sha256: str | None
    module: nn.Module
    train_seconds: float | None = None
    randomized: bool = False          # outputs change between calls (bench.runner.Runner.check_randomness)


def _factory(spec: str, where: str, suite_dir: Path | None = None) -> tuple[nn.Module, str | None]:
    """The factory's model and the SHA-256 of the file that defines the factory function (bench.suite.factory_source)."""
    fn = import_factory(spec, suite_dir, f"{where}.factory")
    try:
        model = fn()
    except Exception as e:            # the user's own code: say where, in one line
        raise UserError(f"{where}.factory: '{spec}' raised {e.__class__.__name__}: "
                        f"{(str(e).splitlines() or [''])[0][:160]}; fix the factory function") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"{where}.factory: '{spec}' returned {type(model).__name__}, not a torch.nn.Module")
    return model, factory_source(fn)


def _load_external(entry: ModelEntry, suite: Suite) -> tuple[nn.Module, str, str, str | None]:
    """(model, method, arch, SHA-256 of the factory's source file or None)."""
    where = f"{suite.path}: models.{entry.name}"
    info = suite.data.info()
    if entry.factory:
        model, source = _factory(entry.factory, where, suite.path.resolve().parent)
        if entry.checkpoint:
            ck = load_checkpoint(entry.checkpoint, f"{where}.checkpoint")
            load_state(model, ck["state_dict"], f"{where}.checkpoint {entry.checkpoint}")
        else:
            check_tensors(model.state_dict(), {}, f"{where}.factory '{entry.factory}'")
        return model.eval(), "external", entry.factory, source
    ck = load_checkpoint(entry.checkpoint, f"{where}.checkpoint")
    model = classifier_from_checkpoint(ck, entry.checkpoint, entry.arch, info)
    return model, str(ck.get("method", "external")), model.spec.arch, None


def prepare_models(suite: Suite, out: Path, device: torch.device, names: list[str], progress: bool,
                   log: Callable[[str], None], probe: torch.Tensor | None = None) -> dict[str, ReadyModel]:
    """Models `names` (plus the encoders they need), trained into out/models/<name>-<hash>/ when missing; with
    `probe` (clean test inputs on `device`), a model whose outputs on them are not finite is refused."""
    ready: dict[str, ReadyModel] = {}
    needed = _with_dependencies(suite, names)
    keys: dict[str, str] = {}
    for name in suite.models:
        if name not in needed:
            continue
        entry = suite.models[name]
        label = entry.label or name
        if entry.train is None:
            module, method, arch, source = _load_external(entry, suite)
            sha = file_sha256(Path(entry.checkpoint)) if entry.checkpoint else None
            # a factory model is what its function's file builds, with the checkpoint's weights when it names one
            keys[name] = config_hash({"checkpoint": sha, "factory": entry.factory,
                                      **({"factory_source": source} if entry.factory else {})})
            rm = ReadyModel(name, label, method, arch, keys[name], Path(entry.checkpoint) if entry.checkpoint else None,
                            sha, module)
        else:
            cfg = entry.train
            if entry.encoder_ref:
                enc = ready[entry.encoder_ref]
                cfg = dataclasses.replace(cfg, encoder=str(enc.checkpoint))
            encoder_id = (keys[entry.encoder_ref] if entry.encoder_ref
                          else file_sha256(Path(cfg.encoder)) if cfg.encoder else None)
            keys[name] = identity_hash(cfg, encoder_id)
            folder = inside(out, out / "models" / f"{name}-{keys[name]}", f"{suite.path}: models.{name}")
            done = folder / "checkpoint.pt"
            if not done.exists():
                log(f"training {name} ({cfg.method}, {cfg.model}, {cfg.epochs} epochs) -> {folder}")
            fresh = not (out / "models").exists()
            try:
                ck = train(cfg, folder, resume=True, progress=progress,
                           log=log if not done.exists() else (lambda s: None))
            except BaseException:
                if fresh:
                    remove_if_empty(out / "models")
                raise
            module = classifier_from_checkpoint(load_checkpoint(done), done)
            rm = ReadyModel(name, label, cfg.method, module.spec.arch, keys[name], done, file_sha256(done), module,
                            ck.get("train_seconds"))
        if probe is not None:
            check_outputs(rm.module.to(device), probe, f"{suite.path}: models.{name}")
        if entry.smoothing:
            spec = smoothing_spec(entry, suite.data.info().augment)
            rm.module = SmoothedClassifier(rm.module, entry.smoothing.samples, spec, seed=suite.seed)
        rm.module.to(device).eval()
        ready[name] = rm
    return ready


def _with_dependencies(suite: Suite, names: list[str]) -> set[str]:
    need = set(names)
    for name in reversed(list(suite.models)):
        ref = suite.models[name].encoder_ref
        if name in need and ref:
            need.add(ref)
    return need
