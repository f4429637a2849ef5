"""The only training loop: every method (supervised, adversarial, contrastive, linear) runs through it, and it
reads nothing of a method but its declarations and hooks (methods/base.py)."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from .. import distributed as dist
from ..config import exists, to_dict
from ..data import ImageSet, epoch_batches, load_dataset
from ..errors import DivergedError, UserError
from ..methods import Method
from ..methods.base import Net
from ..models.loading import load_state
from ..runtime import resolve_device
from ..version import __version__
from .build import build
from .checkpoint import file_sha256, save_checkpoint
from .ddp import distribute
from .folder import (CHECKPOINT, LAST, identity_hash, prepare_out, read_seconds, training_lock, write_metrics,
                     write_timing)
from .optim import learning_rate, make_optimizer
from .spec import TrainConfig

RESERVED = ("epoch", "loss", "lr", "train_accuracy")     # metric names a method's extras may not take


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """All randomness of an epoch (order, augmentations, attack starts) from (seed, epoch): resumes repeat exactly.
    Taken modulo 2**64, as torch reads seeds, so every 64-bit seed works and smaller ones draw as before."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**64)


def rank_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """Under torchrun, each rank's own stream for its augmentations and attack starts (the order comes from
    epoch_generator, shared by all ranks)."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 1_009 + rank + 1) % 2**63)


@torch.no_grad()
def clean_accuracy(model: torch.nn.Module, data: ImageSet, device: torch.device, batch_size: int = 512) -> float:
    """Clean test accuracy of a method that yields a classifier (recorded in checkpoint.pt's final_metrics)."""
    model.eval()
    correct = 0
    for idx in epoch_batches(len(data), batch_size, torch.Generator(), shuffle=False, drop_last=False):
        x, y = data.batch(idx)
        correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
    return correct / len(data)


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
    info = cfg.data_info()
    view = dict(classes=cfg.classes, image_size=cfg.image_size)
    train_set = load_dataset(cfg.dataset, True, cfg.data_root, cfg.download, cfg.train_limit, cfg.seed, **view)
    test_set = load_dataset(cfg.dataset, False, cfg.data_root, cfg.download, cfg.test_limit, cfg.seed, **view)
    if len(train_set) < world:
        raise UserError(f"{len(train_set)} training points cannot be shared by {world} processes")
    model, method, cfg = build(cfg, train_set)
    ident = identity_hash(cfg, file_sha256(Path(cfg.encoder)) if cfg.encoder else None)
    fresh = not exists(out)
    state = dist.on_main(lambda: prepare_out(out, resume, ident))
    if state and "finished" in state:
        finished = state["finished"]
        log(f"{out}: already finished ({finished['epoch']} epochs); nothing to do")
        return {**finished, "train_seconds": finished.get("train_seconds", read_seconds(out))}
    with training_lock(out, rank, fresh):
        model.to(device)
        method.modules.to(device)
        if device.type == "cuda" and cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        trained = method.trainable(model)
        ids = {id(p) for p in trained}
        for p in model.parameters():            # what the method does not train is frozen
            p.requires_grad_(id(p) in ids)
        optimizer = make_optimizer(cfg, trained)
        history: list[dict[str, Any]] = []
        start, seconds = 0, 0.0
        if state:
            where = f"{out}/{LAST}"
            load_state(model, state["state_dict"], where)
            method.restore(state.get("method_state"), where)
            try:
                optimizer.load_state_dict(state["optimizer"])
            except ValueError:
                raise UserError(f"{where}: its optimizer state covers other parameters than method "
                                f"'{cfg.method}' trains (an older rocl-bench?); remove {where} to retrain "
                                "from the start") from None
            history, start = list(state["metrics"]), int(state["epoch"])
            seconds = float(state.get("train_seconds", 0.0))
            if rank == 0:
                write_metrics(out, history)
            log(f"resuming {out} after epoch {start}")
        if not state:
            method.prepare(model, train_set)
        net: Net = model
        if world > 1:                           # after the resume: DDP starts every rank from rank 0's weights
            model, net = distribute(model, method, device)
        payload = {"model_spec": model.spec.to_dict(), "method": cfg.method,
                   "method_config": to_dict(cfg.method_params("config")), "train_config": to_dict(cfg),
                   "config_hash": ident, "dataset": info.label or info.name, "package_version": __version__,
                   "torch_version": str(torch.__version__), "world_size": world}
        epochs = _Epochs(cfg, method, net, train_set, device, out, progress)
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            metrics = epochs.run(epoch, optimizer, history)
            history.append(metrics)
            seconds += time.perf_counter() - t0
            if rank == 0:
                save_checkpoint(out / LAST, {**payload, **_method_state(method), "epoch": epoch + 1,
                                             "metrics": history, "train_seconds": seconds,
                                             "state_dict": model.state_dict(), "optimizer": optimizer.state_dict()})
                write_metrics(out, history)
            acc = f"{metrics['train_accuracy']:.4f}" if metrics["train_accuracy"] is not None else "n/a"
            log(f"epoch {epoch + 1}/{cfg.epochs}  loss {metrics['loss']:.4f}  train acc {acc}  "
                f"{time.perf_counter() - t0:.1f}s")
        method.finish(model)
        final = {}
        if method.yields == "classifier":
            final = dist.on_main(lambda: {"test_accuracy": clean_accuracy(model, test_set, device)})
            log(f"clean test accuracy {final['test_accuracy']:.4f} on {len(test_set)} points")
        # no wall-clock time in checkpoint.pt: the same seed gives the same bytes, so records' checkpoint_sha256 match
        ckpt = {**payload, **_method_state(method), "epoch": cfg.epochs, "metrics": history, "final_metrics": final,
                "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}}
        if rank == 0:               # timing.json first: once checkpoint.pt exists a rerun writes nothing here, so a
            write_timing(out, seconds)      # write killed after it would leave its temporary file for good
            save_checkpoint(out / CHECKPOINT, ckpt)
        dist.barrier()                  # checkpoint.pt exists before any rank goes on to read it
        return {"format_version": 1, **ckpt, "train_seconds": seconds}


def _method_state(method: Method) -> dict[str, Any]:
    """The method's own modules and state, on the CPU; no key at all for methods that carry nothing."""
    saved = method.checkpoint_state()
    if saved is None:
        return {}
    saved["modules"] = {k: v.detach().cpu() for k, v in saved["modules"].items()}
    return {"method_state": saved}


def schedule_time(cfg: TrainConfig, epoch: int, frac: float) -> float:
    """The (fractional) epoch the schedule is read at. 'epoch' follows the official RoCL scheduler, stepped once
    before each epoch: its warm-up runs one epoch ahead (epoch 0 at the rate after one warm-up step) and its
    cosine restarts its count at the warm-up's end, so the peak holds for two epochs."""
    if cfg.lr_update == "step":
        return epoch + frac
    return float(epoch + 1 if epoch < cfg.warmup_epochs else epoch)


@dataclass
class _Epochs:
    """One epoch of steps: the learning rate per step, the method's loss, a finite-loss check, the sums for
    the epoch's metrics (loss, train accuracy, the method's extras), all over the global batch."""

    cfg: TrainConfig
    method: Method
    net: Net
    data: ImageSet
    device: torch.device
    out: Path
    progress: bool
    sched: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        c = self.cfg
        self.sched = dict(total=c.epochs, schedule=c.schedule, warmup_epochs=c.warmup_epochs,
                          warmup_multiplier=c.warmup_multiplier, milestones=list(c.milestones), gamma=c.gamma,
                          schedule_epochs=c.schedule_epochs)

    def run(self, epoch: int, optimizer: torch.optim.Optimizer, history: list[dict[str, Any]]) -> dict[str, Any]:
        cfg, method, net, world, rank = self.cfg, self.method, self.net, dist.world(), dist.rank()
        n, local_batch = len(self.data), cfg.batch_size // world
        steps_per_epoch = max(1, n // cfg.batch_size) if n >= cfg.batch_size else 1
        on_cuda = self.device.type == "cuda"
        g = epoch_generator(cfg.seed, epoch)
        work = g if world == 1 else rank_generator(cfg.seed, epoch, rank)
        method.on_epoch_start(epoch)
        loss_sum, correct, count, seen, lr = 0.0, 0, 0, 0, cfg.lr
        extras: dict[str, float] = {}
        bar = tqdm(epoch_batches(n, local_batch, g, rank=rank, world=world), total=steps_per_epoch,
                   disable=not self.progress, leave=False, desc=f"epoch {epoch + 1}/{cfg.epochs}", file=sys.stderr,
                   dynamic_ncols=True)
        for step, idx in enumerate(bar):
            lr = learning_rate(cfg.lr, schedule_time(cfg, epoch, step / steps_per_epoch),
                               **self.sched) * method.lr_scale(epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = self.data.batch(idx)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if on_cuda and cfg.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            method.set_train_mode(net)
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=on_cuda and cfg.amp):
                result = method.loss(net, x, y, work)
            value = float(result.loss.detach())
            if world == 1:
                step_sum, step_seen = value * len(y), len(y)
            else:                           # the global batch's mean loss, the same number on every rank
                step_sum, step_seen = dist.all_reduce_numbers(value * len(y), len(y))
                value = step_sum / step_seen
            if not math.isfinite(value):
                kept = (f"{self.out / LAST} keeps the last good epoch ({history[-1]['epoch']})" if history
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
            for k, v in result.extras.items():
                extras[k] = extras.get(k, 0.0) + v * len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
        bar.close()
        names = sorted(extras)
        if clash := [k for k in names if k in RESERVED]:
            raise ValueError(f"method '{cfg.method}': StepOutput.extras may not be named {clash}")
        if world > 1:
            correct, count, *sums = dist.all_reduce_numbers(correct, count, *(extras[k] for k in names))
            correct, count, extras = int(correct), int(count), dict(zip(names, sums))
        return {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "lr": lr,
                "train_accuracy": correct / count if count else None,
                **{k: extras[k] / max(seen, 1) for k in names}}
