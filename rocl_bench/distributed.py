"""torch.distributed helpers: join torchrun's process group, gather with gradients, reduce, agree on errors.

torchrun (torch.distributed.run) starts the processes and sets RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT;
`setup` joins the group when WORLD_SIZE > 1 (NCCL for CUDA, gloo on the CPU). With one process nothing is
initialised: every helper here is then a no-op that returns its input, so single-process runs pay nothing.
"""
from __future__ import annotations

import atexit
import os
import pickle
import sys
import threading
import warnings
from datetime import timedelta
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

# Objects (decisions, records, errors) travel on a gloo group of its own whose timeout is long: the other ranks
# may wait there for hours while rank 0 alone runs a cell that cannot be split (AutoAttack on a full test set),
# which the default group's timeout (NCCL's watchdog, 10 minutes) would not allow.
PATIENCE = timedelta(days=7)
EXIT_WAIT = timedelta(seconds=60)
_objects: Any = None
_failed = False             # an uncaught exception ends this process: do not wait for the other ranks at exit


def env_world() -> int:
    """The world size torchrun asked for (1 outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group when WORLD_SIZE > 1 (once per process); return the device this rank uses.

    CUDA ranks use cuda:LOCAL_RANK (one GPU per process) and NCCL; CPU ranks use gloo. Outside torchrun this
    returns `device` unchanged and creates nothing.
    """
    if env_world() <= 1:
        return device
    from .errors import UserError

    if not dist.is_available():
        raise UserError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run a single process")
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local} but this node has {torch.cuda.device_count()} CUDA device(s); "
                            "start at most one process per GPU (torchrun --nproc_per_node)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    global _objects
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
        atexit.register(cleanup)
        _note_failures()
    if _objects is None:
        _objects = dist.new_group(backend="gloo", timeout=PATIENCE)
    return device


def _note_failures() -> None:
    hook = sys.excepthook

    def note(*info: Any) -> None:
        global _failed
        _failed = True
        hook(*info)

    sys.excepthook = note


def cleanup() -> None:
    """Leave the process group at exit. Every rank waits for the others first, because gloo aborts when a peer
    leaves in the middle of a collective. A process ending on an uncaught exception does not wait, and neither
    does one whose peers have not arrived within EXIT_WAIT (they failed elsewhere; torchrun stops them): the
    group is then left to the end of the process."""
    global _objects
    if not (dist.is_available() and dist.is_initialized()) or _failed:
        return
    arrived = threading.Event()

    def wait() -> None:
        try:
            dist.barrier(group=_objects)
            arrived.set()
        except Exception:               # noqa: BLE001 - a peer is gone: nothing to wait for
            pass

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiter.join(EXIT_WAIT.total_seconds())
    if arrived.is_set():
        _objects = None
        dist.destroy_process_group()


def barrier() -> None:
    """Every rank waits for the others (patiently: see PATIENCE)."""
    if active():
        dist.barrier(group=_objects)


def _device_for_collectives() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of `t` over all ranks (a new tensor on t's device; `t` itself when single-process).

    Booleans are summed as integers and come back as booleans (the union of disjoint masks)."""
    if not active():
        return t
    kind = t.dtype
    buf = t.to(_device_for_collectives(), torch.int32 if kind == torch.bool else kind, copy=True)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    out = buf.to(t.device)
    return out > 0 if kind == torch.bool else out


def all_reduce_numbers(*values: float) -> list[float]:
    """Sums over all ranks of a few Python numbers (float64), in one collective."""
    if not active():
        return list(values)
    return all_reduce_sum(torch.tensor(values, dtype=torch.float64)).tolist()


def gather_with_grad(z: torch.Tensor) -> torch.Tensor:
    """All ranks' `z` concatenated in rank order along dim 0, with gradients flowing back to each rank's `z`.

    torch.distributed.nn.functional.all_gather's backward sums, over ranks, the gradient each rank computed
    for this rank's slice: when every rank computes the same loss of the gathered tensor, the local gradient
    is world × the true one, which DistributedDataParallel's averaging over ranks divides back out.
    """
    if not active():
        return z
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():     # torch 2.14 marks it deprecated for a private successor; it still works
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
        parts = all_gather(z.contiguous())
    return torch.cat(parts, dim=0)


def gather(t: torch.Tensor) -> torch.Tensor:
    """All ranks' `t` (same shape on every rank) concatenated in rank order, without gradients."""
    if not active():
        return t
    dev = _device_for_collectives()
    local = t.detach().to(dev).contiguous()
    parts = [torch.empty_like(local) for _ in range(world())]
    dist.all_gather(parts, local)
    return torch.cat(parts).to(t.device)


def gather_views(z: torch.Tensor, views: int, with_grad: bool = True) -> torch.Tensor:
    """Global view-major batch from local view-major rows: (views·n) × d per rank -> (views·n·world) × d.

    Row v·N + i of the result (N = n·world) is view v of global instance i, where the global instances are
    rank 0's n instances, then rank 1's, and so on: each view block is gathered on its own and the blocks are
    stacked, so the "same instance, other view" positives of NT-Xent stay aligned.
    """
    if not active():
        return z
    full = gather_with_grad(z) if with_grad else gather(z)
    n = z.shape[0] // views
    per_rank = full.split(z.shape[0])
    return torch.cat([part[v * n:(v + 1) * n] for v in range(views) for part in per_rank])


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's picklable `obj`, in rank order."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world()
    dist.all_gather_object(out, obj, group=_objects)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's picklable `obj` on every rank."""
    if not active():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0, group=_objects, device=torch.device("cpu"))
    return box[0]


def _portable(e: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:       # an exception that does not survive pickling: keep its text
        return RuntimeError(f"rank {rank()}: {type(e).__name__}: {e}")


def on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 alone and return its result on every rank; an exception it raises is raised on every
    rank (so no rank waits forever in a collective that rank 0 will never reach). Single-process: just fn()."""
    if not active():
        return fn()
    result: Any = None
    error: BaseException | None = None
    if is_main():
        try:
            result = fn()
        except Exception as e:          # noqa: BLE001 - re-raised below, on every rank
            error = _portable(e)
    ok, value = broadcast_object((error is None, result if error is None else error))
    if not ok:
        raise value
    return value


def agree(fn: Callable[[], T]) -> T:
    """Run `fn` on every rank; if it raises on any rank, raise the lowest rank's exception on all of them.

    Use it around local work that is followed by collectives, so one rank's error does not leave the others
    waiting. Single-process: just fn()."""
    if not active():
        return fn()
    result: Any = None
    error: BaseException | None = None
    try:
        result = fn()
    except Exception as e:              # noqa: BLE001 - re-raised below, on every rank
        error = _portable(e)
    errors = all_gather_object(error)
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return result
