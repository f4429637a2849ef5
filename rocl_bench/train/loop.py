"""The only training loop: every method (supervised, adversarial, contrastive, linear) runs through it."""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from .. import __version__
from ..config import config_hash, to_dict
from ..data import ImageSet, dataset_info, epoch_batches, load_dataset
from ..errors import DivergedError, UserError
from ..methods import METHODS, Method
from ..models import Classifier, ModelSpec, build_model
from ..models.loading import load_state, spec_for
from .checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from .optim import LARS, learning_rate
from .spec import TrainConfig

CHECKPOINT, LAST, METRICS = "checkpoint.pt", "last.pt", "metrics.jsonl"


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without one is a user error, not a crash."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device: 'cuda' was asked for but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """All randomness of an epoch (order, augmentations, attack starts) from (seed, epoch): resumes repeat exactly."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def identity_hash(cfg: TrainConfig) -> str:
    """What makes two runs the same run (the device does not change the numbers' meaning)."""
    return config_hash({k: v for k, v in to_dict(cfg).items() if k not in ("device",)})


def _encoder_model(cfg: TrainConfig, method: type[Method], info: Any, num_classes: int) -> tuple[Classifier, TrainConfig]:
    """A model whose encoder comes from cfg.encoder, with a fresh head for this dataset."""
    enc = load_checkpoint(cfg.encoder, "encoder")
    if "model_spec" in enc:
        src = ModelSpec.from_dict(enc["model_spec"])
    else:
        src = spec_for(cfg.model, info)
    if (src.in_channels, src.image_size) != (info.channels, info.image_size):
        raise UserError(f"encoder {cfg.encoder}: made for {src.in_channels}×{src.image_size}² inputs, dataset "
                        f"'{info.name}' has {info.channels}×{info.image_size}²; use an encoder of this dataset")
    proj = src.projector if method.contrastive else None
    spec = ModelSpec(src.arch, num_classes, src.in_channels, src.image_size, src.mean, src.std, proj)
    model = build_model(spec)
    keep = {k: v for k, v in enc["state_dict"].items() if k.startswith("encoder.")
            or (proj and k.startswith("projector."))}
    fresh = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")
             and not (proj and k.startswith("projector."))}
    load_state(model, {**fresh, **keep}, f"encoder {cfg.encoder}")
    return model, dataclasses.replace(cfg, model=src.arch)


def build_for(cfg: TrainConfig, train_set: ImageSet) -> tuple[Classifier, Method, TrainConfig]:
    info = dataset_info(cfg.dataset)
    method_cls = METHODS.get(cfg.method, "method")
    params = cfg.method_params("config")
    num_classes = info.num_classes or int(train_set.labels.max()) + 1
    torch.manual_seed(cfg.seed)
    if cfg.encoder:
        model, cfg = _encoder_model(cfg, method_cls, info, num_classes)
    else:
        proj = (params.projector_hidden, params.projector_out) if method_cls.contrastive else None
        c, s = train_set.images.shape[1], train_set.images.shape[-1]
        model = build_model(spec_for(cfg.model, info, num_classes, proj, c, s))
    return model, method_cls(params, info), cfg


def make_optimizer(cfg: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "lars":
        return LARS(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, trust_coef=cfg.lars_trust)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@torch.no_grad()
def clean_accuracy(model: torch.nn.Module, data: ImageSet, device: torch.device, batch_size: int = 512) -> float:
    model.eval()
    correct = 0
    for idx in epoch_batches(len(data), batch_size, torch.Generator(), shuffle=False, drop_last=False):
        x, y = data.batch(idx)
        correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
    return correct / len(data)


def _prepare_out(out: Path, resume: bool, ident: str) -> dict[str, Any] | None:
    """Check the output folder; return last.pt's state when resuming, refuse to mix two different runs."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder; choose a folder path")
    state = None
    for name in (CHECKPOINT, LAST):
        if (out / name).exists():
            if not resume:
                raise UserError(f"--out {out}: already holds a run ({name}); pass --resume to continue it "
                                "or choose another --out")
            ck = load_checkpoint(out / name, f"--out {out}/{name}")
            if ck.get("config_hash") != ident:
                raise UserError(f"--out {out}: holds a run with another configuration; "
                                "choose another --out for this one")
            if name == CHECKPOINT:
                return {"finished": ck}
            state = ck
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"--out {out}: cannot write there ({e.strerror}); choose a writable folder") from None
    return state


def _write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(m, sort_keys=True) + "\n" for m in history)
    atomic_write_bytes(out / METRICS, lambda f: f.write(text.encode()))


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train `cfg` into folder `out` (checkpoint.pt, last.pt each epoch, metrics.jsonl); return the checkpoint."""
    out = Path(out)
    device = resolve_device(cfg.device)
    info = dataset_info(cfg.dataset)
    train_set = load_dataset(cfg.dataset, True, cfg.data_root, cfg.download, cfg.train_limit, cfg.seed)
    test_set = load_dataset(cfg.dataset, False, cfg.data_root, cfg.download, cfg.test_limit, cfg.seed)
    model, method, cfg = build_for(cfg, train_set)
    ident = identity_hash(cfg)
    state = _prepare_out(out, resume, ident)
    if state and "finished" in state:
        log(f"{out}: already finished ({state['finished']['epoch']} epochs); nothing to do")
        return state["finished"]
    on_cuda = device.type == "cuda"
    model.to(device)
    if on_cuda and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, method.trainable(model))
    history: list[dict[str, Any]] = []
    start, seconds = 0, 0.0
    if state:
        load_state(model, state["state_dict"], f"{out}/{LAST}")
        optimizer.load_state_dict(state["optimizer"])
        history, start = list(state["metrics"]), int(state["epoch"])
        seconds = float(state.get("train_seconds", 0.0))
        _write_metrics(out, history)
        log(f"resuming {out} after epoch {start}")
    payload = {"model_spec": model.spec.to_dict(), "method": cfg.method,
               "method_config": to_dict(cfg.method_params("config")), "train_config": to_dict(cfg),
               "config_hash": ident, "dataset": info.label or info.name, "package_version": __version__,
               "torch_version": str(torch.__version__)}
    n = len(train_set)
    steps_per_epoch = max(1, n // cfg.batch_size) if n >= cfg.batch_size else 1
    sched = dict(total=cfg.epochs, schedule=cfg.schedule, warmup_epochs=cfg.warmup_epochs,
                 warmup_multiplier=cfg.warmup_multiplier, milestones=list(cfg.milestones), gamma=cfg.gamma,
                 schedule_epochs=cfg.schedule_epochs)
    for epoch in range(start, cfg.epochs):
        g = epoch_generator(cfg.seed, epoch)
        t0 = time.perf_counter()
        loss_sum, correct, count, seen = 0.0, 0, 0, 0
        bar = tqdm(epoch_batches(n, cfg.batch_size, g), total=steps_per_epoch, disable=not progress, leave=False,
                   desc=f"epoch {epoch + 1}/{cfg.epochs}", file=sys.stderr, dynamic_ncols=True)
        for step, idx in enumerate(bar):
            lr = learning_rate(cfg.lr, epoch + step / steps_per_epoch, **sched)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = train_set.batch(idx)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if on_cuda and cfg.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            method.set_train_mode(model)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=on_cuda and cfg.amp):
                result = method.loss(model, x, y, g)
            value = float(result.loss.detach())
            if not math.isfinite(value):
                raise DivergedError(
                    f"training diverged: loss is {value} at epoch {epoch + 1}, step {step + 1}; "
                    f"{out / LAST} keeps the last good epoch ({start if not history else history[-1]['epoch']}); "
                    "lower --lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            result.loss.backward()
            optimizer.step()
            loss_sum += value * len(y)
            seen += len(y)
            if result.correct is not None:
                correct += result.correct
                count += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
        bar.close()
        metrics = {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "lr": lr,
                   "train_accuracy": correct / count if count else None}
        history.append(metrics)
        seconds += time.perf_counter() - t0
        save_checkpoint(out / LAST, {**payload, "epoch": epoch + 1, "metrics": history, "train_seconds": seconds,
                                     "state_dict": model.state_dict(), "optimizer": optimizer.state_dict()})
        _write_metrics(out, history)
        acc = f"{metrics['train_accuracy']:.4f}" if count else "n/a"
        log(f"epoch {epoch + 1}/{cfg.epochs}  loss {metrics['loss']:.4f}  train acc {acc}  "
            f"{time.perf_counter() - t0:.1f}s")
    final = {}
    if not method.contrastive:
        final["test_accuracy"] = clean_accuracy(model, test_set, device)
        log(f"clean test accuracy {final['test_accuracy']:.4f} on {len(test_set)} points")
    ckpt = {**payload, "epoch": cfg.epochs, "metrics": history, "final_metrics": final, "train_seconds": seconds,
            "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}}
    save_checkpoint(out / CHECKPOINT, ckpt)
    return {"format_version": 1, **ckpt}
