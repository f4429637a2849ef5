"""The only training loop: every method (supervised, adversarial, contrastive, linear) runs through it."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from tqdm import tqdm

from ..version import __version__
from .. import distributed as dist
from ..config import config_hash, exists, to_dict
from ..data import ImageSet, dataset_info, epoch_batches, load_dataset
from ..errors import DivergedError, UserError
from ..locking import FolderLock
from ..methods import METHODS, Method
from ..models import Classifier, ModelSpec, build_model
from ..models.loading import load_state, spec_for, spec_from
from .checkpoint import atomic_write_bytes, file_sha256, load_checkpoint, remove_if_empty, save_checkpoint
from .optim import LARS, learning_rate
from .spec import TrainConfig

CHECKPOINT, LAST, METRICS, TIMING = "checkpoint.pt", "last.pt", "metrics.jsonl", "timing.json"


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without one is a user error, not a crash."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device: 'cuda' was asked for but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """All randomness of an epoch (order, augmentations, attack starts) from (seed, epoch): resumes repeat exactly.
    Taken modulo 2**64, as torch reads seeds, so every 64-bit seed works and smaller ones draw as before."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**64)


def rank_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """Under torchrun, each rank's own stream for its augmentations and attack starts (the order comes from
    epoch_generator, shared by all ranks)."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 1_009 + rank + 1) % 2**63)


PLACE_FIELDS = ("device", "data_root", "download")   # where a run happens, not what it computes


def identity_hash(cfg: TrainConfig, encoder_id: str | None = None) -> str:
    """What makes two runs the same run. Neither the device nor where the data lives changes the numbers, and the
    encoder counts by `encoder_id` (its content hash, or a suite model's key), not by how its path is spelled:
    a moved results folder or an absolute --out still resumes its runs."""
    fields = {k: v for k, v in to_dict(cfg).items() if k not in PLACE_FIELDS}
    if cfg.encoder:
        fields["encoder"] = encoder_id or cfg.encoder
    return config_hash(fields)


def legacy_identity_hash(cfg: TrainConfig) -> str:
    """The identity checkpoints written by rocl-bench 0.1.0 carry (paths included), so they still resume."""
    return config_hash({k: v for k, v in to_dict(cfg).items() if k not in ("device",)})


def _encoder_model(cfg: TrainConfig, method: type[Method], info: Any, num_classes: int) -> tuple[Classifier, TrainConfig]:
    """A model whose encoder comes from cfg.encoder, with a fresh head for this dataset."""
    enc = load_checkpoint(cfg.encoder, "encoder")
    if "model_spec" in enc:
        src = spec_from(enc["model_spec"], f"encoder {cfg.encoder}")
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


class _Parts(nn.Module):
    """One forward for every part of a Classifier, so that DistributedDataParallel sees each call."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, part: str = "forward") -> torch.Tensor:
        return self.model(x) if part == "forward" else getattr(self.model, part)(x)


class DistributedModel(nn.Module):
    """What a method's loss sees under torchrun: the classifier's calls (forward, features, project, head), each
    going through DistributedDataParallel, so gradients are averaged over ranks at backward."""

    def __init__(self, model: Classifier, device: torch.device) -> None:
        super().__init__()
        from torch.nn.parallel import DistributedDataParallel

        self.spec = model.spec
        self.ddp = DistributedDataParallel(_Parts(model), device_ids=[device.index] if device.type == "cuda" else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ddp(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.ddp(x, part="features")

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.ddp(x, part="project")

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.ddp(x, part="head")


def _prepare_distributed(model: Classifier, method: Method, device: torch.device) -> Classifier:
    """Before DistributedDataParallel: only parameters that get gradients may require them (DDP waits for every
    one), so what the method does not train is frozen (a contrastive model's classification head, a linear
    protocol's encoder); contrastive methods on CUDA get SyncBatchNorm (batch statistics of the global batch)."""
    trained = {id(p) for p in method.trainable(model)}
    if method.contrastive:
        trained -= {id(p) for p in model.head.parameters()}
    for p in model.parameters():
        if id(p) not in trained:
            p.requires_grad_(False)
    if method.contrastive and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


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


def _prepare_out(out: Path, resume: bool, ident: str, legacy: str) -> dict[str, Any] | None:
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
            if ck.get("config_hash") not in (ident, legacy):
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


def _silent(line: str) -> None:
    pass


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train `cfg` into folder `out` (checkpoint.pt, last.pt each epoch, metrics.jsonl); return the checkpoint.

    Under torchrun (WORLD_SIZE > 1) every rank calls this: each takes batch_size / world of every global batch,
    gradients are all-reduced by DistributedDataParallel, contrastive losses see the global batch, and rank 0
    alone writes files, logs and shows progress. `batch_size` is the global batch at any number of processes.
    """
    out = Path(out)
    device = dist.setup(resolve_device(cfg.device))
    world, rank = dist.world(), dist.rank()
    if rank != 0:
        progress, log = False, _silent
    if cfg.batch_size % world:
        raise UserError(f"batch_size {cfg.batch_size} is the global batch and must divide evenly over the "
                        f"{world} processes; use a multiple of {world}")
    info = dataset_info(cfg.dataset)
    train_set = load_dataset(cfg.dataset, True, cfg.data_root, cfg.download, cfg.train_limit, cfg.seed)
    test_set = load_dataset(cfg.dataset, False, cfg.data_root, cfg.download, cfg.test_limit, cfg.seed)
    if len(train_set) < world:
        raise UserError(f"{len(train_set)} training points cannot be shared by {world} processes")
    model, method, cfg = build_for(cfg, train_set)
    ident = identity_hash(cfg, file_sha256(Path(cfg.encoder)) if cfg.encoder else None)
    legacy = legacy_identity_hash(cfg)
    fresh = not exists(out)
    state = dist.on_main(lambda: _prepare_out(out, resume, ident, legacy))
    if state and "finished" in state:
        finished = state["finished"]
        log(f"{out}: already finished ({finished['epoch']} epochs); nothing to do")
        return {**finished, "train_seconds": finished.get("train_seconds", _read_seconds(out))}
    with _training_lock(out, rank, fresh):
        on_cuda = device.type == "cuda"
        model.to(device)
        if on_cuda and cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        if world > 1:
            model = _prepare_distributed(model, method, device)
        optimizer = make_optimizer(cfg, method.trainable(model))
        history: list[dict[str, Any]] = []
        start, seconds = 0, 0.0
        if state:
            load_state(model, state["state_dict"], f"{out}/{LAST}")
            optimizer.load_state_dict(state["optimizer"])
            history, start = list(state["metrics"]), int(state["epoch"])
            seconds = float(state.get("train_seconds", 0.0))
            if rank == 0:
                _write_metrics(out, history)
            log(f"resuming {out} after epoch {start}")
        net: nn.Module = model if world == 1 else DistributedModel(model, device)
        payload = {"model_spec": model.spec.to_dict(), "method": cfg.method,
                   "method_config": to_dict(cfg.method_params("config")), "train_config": to_dict(cfg),
                   "config_hash": ident, "dataset": info.label or info.name, "package_version": __version__,
                   "torch_version": str(torch.__version__), "world_size": world}
        n = len(train_set)
        local_batch = cfg.batch_size // world
        steps_per_epoch = max(1, n // cfg.batch_size) if n >= cfg.batch_size else 1
        sched = dict(total=cfg.epochs, schedule=cfg.schedule, warmup_epochs=cfg.warmup_epochs,
                     warmup_multiplier=cfg.warmup_multiplier, milestones=list(cfg.milestones), gamma=cfg.gamma,
                     schedule_epochs=cfg.schedule_epochs)
        for epoch in range(start, cfg.epochs):
            g = epoch_generator(cfg.seed, epoch)
            work = g if world == 1 else rank_generator(cfg.seed, epoch, rank)
            t0 = time.perf_counter()
            loss_sum, correct, count, seen = 0.0, 0, 0, 0
            bar = tqdm(epoch_batches(n, local_batch, g, rank=rank, world=world), total=steps_per_epoch,
                       disable=not progress, leave=False, desc=f"epoch {epoch + 1}/{cfg.epochs}", file=sys.stderr,
                       dynamic_ncols=True)
            for step, idx in enumerate(bar):
                lr = learning_rate(cfg.lr, epoch + step / steps_per_epoch, **sched)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x, y = train_set.batch(idx)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if on_cuda and cfg.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                method.set_train_mode(net)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=on_cuda and cfg.amp):
                    result = method.loss(net, x, y, work)
                value = float(result.loss.detach())
                if world == 1:
                    step_sum, step_seen = value * len(y), len(y)
                else:                           # the global batch's mean loss, the same number on every rank
                    step_sum, step_seen = dist.all_reduce_numbers(value * len(y), len(y))
                    value = step_sum / step_seen
                if not math.isfinite(value):
                    kept = (f"{out / LAST} keeps the last good epoch ({history[-1]['epoch']})" if history
                            else "no epoch had finished, so nothing was saved")
                    raise DivergedError(f"training diverged: loss is {value} at epoch {epoch + 1}, step {step + 1}; "
                                        f"{kept}; lower --lr or check the data")
                optimizer.zero_grad(set_to_none=True)
                result.loss.backward()
                optimizer.step()
                loss_sum += step_sum
                seen += step_seen
                if result.correct is not None:
                    correct += result.correct
                    count += len(y)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
            bar.close()
            if world > 1:
                correct, count = (int(v) for v in dist.all_reduce_numbers(correct, count))
            metrics = {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "lr": lr,
                       "train_accuracy": correct / count if count else None}
            history.append(metrics)
            seconds += time.perf_counter() - t0
            if rank == 0:
                save_checkpoint(out / LAST, {**payload, "epoch": epoch + 1, "metrics": history,
                                             "train_seconds": seconds, "state_dict": model.state_dict(),
                                             "optimizer": optimizer.state_dict()})
                _write_metrics(out, history)
            acc = f"{metrics['train_accuracy']:.4f}" if count else "n/a"
            log(f"epoch {epoch + 1}/{cfg.epochs}  loss {metrics['loss']:.4f}  train acc {acc}  "
                f"{time.perf_counter() - t0:.1f}s")
        final = {}
        if not method.contrastive:
            final = dist.on_main(lambda: {"test_accuracy": clean_accuracy(model, test_set, device)})
            log(f"clean test accuracy {final['test_accuracy']:.4f} on {len(test_set)} points")
        # no wall-clock time in checkpoint.pt: the same seed gives the same bytes, so records' checkpoint_sha256 match
        ckpt = {**payload, "epoch": cfg.epochs, "metrics": history, "final_metrics": final,
                "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}}
        if rank == 0:
            save_checkpoint(out / CHECKPOINT, ckpt)
            atomic_write_bytes(out / TIMING, lambda f: f.write(json.dumps({"train_seconds": seconds}).encode()))
        dist.barrier()                  # checkpoint.pt exists before any rank goes on to read it
        return {"format_version": 1, **ckpt, "train_seconds": seconds}


@contextlib.contextmanager
def _training_lock(out: Path, rank: int, fresh: bool = False) -> Iterator[None]:
    """One training process per folder: two writing the same last.pt would interleave their epochs. A `fresh`
    folder (made by this run) that is still empty when training fails (a full disk at the first save) is removed."""
    if rank != 0:
        yield
        return
    try:
        with FolderLock(out, "another training run ({who}) is writing this folder"):
            yield
    except BaseException:
        if fresh:
            remove_if_empty(out)
        raise


def _read_seconds(out: Path) -> float | None:
    try:
        return float(json.loads((out / TIMING).read_text())["train_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
