"""What a training method is: its declarations, its hooks and a loss for one batch.

The one training loop (train/loop.py) reads nothing else about a method: no flag names a kind of method and no
parameter is read by name. A method declares

- what it needs: `needs_encoder` (a pretrained encoder), `projector()` (the projector's sizes, or None);
- what trains: `trains` (the classifier's parts it optimizes; the rest is frozen) plus its own `modules`
  whose parameters require gradients; `sync_batchnorm` (BatchNorm sees the global batch under torchrun);
- what it makes: `yields` ("classifier": evaluated and its clean test accuracy measured; "encoder": serves
  the protocols on top, never evaluated itself);
- what it carries: `modules` (extra modules, e.g. a frozen teacher or a second BatchNorm branch) and
  `state()` / `load_state()` (plain data across epochs), both saved in every checkpoint and restored on resume;
- when it acts: `setup(model)` once the model is built, `prepare(model, data)` once before a fresh run's first
  epoch (with the training set: label-free methods that cluster it), `on_epoch_start(epoch)` before each
  epoch's batches (`lr_scale(epoch)` scales the schedule's rate in it), `set_train_mode(net)` before each
  step, `loss(net, x, y, g)` for each batch, and `finish(model)` before the final checkpoint (what the run
  yields, e.g. DynACL's momentum encoder);
- what the encoder is for (`encoder_role`): "start" (the model starts from it, as protocols do) or "teacher"
  (the model starts fresh and a frozen copy of the encoder is handed over as `self.teacher`, e.g. AdvCL's
  clustering encoder). `self.epochs` holds the run's length for schedules inside a method.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import torch
from torch import nn

from ..data import DatasetInfo
from ..registry import Registry
from ..runtime import eval_mode

Part = Literal["encoder", "head", "projector"]
PARTS: tuple[Part, ...] = ("encoder", "head", "projector")


class Net(Protocol):
    """What a loss may call: a Classifier in one process, its DistributedDataParallel wrapper under torchrun
    (train/ddp.py); the same four calls either way, so a method never knows which it has."""

    training: bool

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...            # logits
    def features(self, x: torch.Tensor) -> torch.Tensor: ...            # encoder output
    def head(self, f: torch.Tensor) -> torch.Tensor: ...                # logits from features
    def project(self, x: torch.Tensor) -> torch.Tensor: ...             # projector output
    def train(self, mode: bool = True) -> Any: ...
    def eval(self) -> Any: ...


@dataclass
class StepOutput:
    """The loss to minimise, clean-correct training points (supervised heads), and `extras`: named numbers
    the loop logs per epoch (their mean over the epoch's points, next to the loss in metrics.jsonl)."""

    loss: torch.Tensor
    correct: int | None = None
    extras: dict[str, float] = field(default_factory=dict)


class Method:
    """Base class. A subclass sets `name`, `Params` (a frozen dataclass, checked by its `validate`), the
    declarations below, and `loss`; register it with @register_method beside its definition."""

    name: ClassVar[str] = ""
    Params: ClassVar[type] = object
    train_defaults: ClassVar[dict[str, Any]] = {}       # TrainConfig fields under the user's (optimizer, lr, ...)
    needs_encoder: ClassVar[bool] = False               # starts from --encoder (linear protocols, fine-tuning)
    yields: ClassVar[Literal["classifier", "encoder"]] = "classifier"
    trains: ClassVar[tuple[Part, ...]] = ("encoder", "head")
    sync_batchnorm: ClassVar[bool] = False              # under torchrun on CUDA: global-batch statistics
    encoder_role: ClassVar[Literal["start", "teacher"]] = "start"   # what --encoder is to this method
    # parameter -> what it meant before it existed or its default changed (a value, or a function of the
    # resolved params); the model key reads params relative to it (train/folder.py keyed_params)
    keyed_before: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: Any, info: DatasetInfo) -> None:
        self.params = params
        self.info = info
        self.modules = nn.ModuleDict()                  # extra modules: checkpointed, moved, wrapped with the model
        self.epochs = 1                                 # the run's length (set by the builder before setup)
        self.teacher: nn.Module | None = None           # encoder_role "teacher": the frozen encoder (before setup)

    # ---------------------------------------------------------------- what it needs and makes
    def projector(self) -> tuple[int, int] | None:
        """(hidden, out) of the projector this method trains, or None (the model then has none)."""
        return None

    def setup(self, model: nn.Module) -> None:
        """Once, after the model is built (and its encoder transplanted), before it moves to the device and is
        wrapped for torchrun: build extra modules into self.modules here (e.g. a frozen copy of the encoder)."""

    def prepare(self, model: nn.Module, data: Any) -> None:
        """Once before a fresh run's first epoch, on the model's device, with the training set (an ImageSet):
        precompute what the loss needs from the whole set (e.g. k-means centroids of pseudo labels). Store the
        result in state(), so a resumed run does not recompute it."""

    def finish(self, model: nn.Module) -> None:
        """After the last epoch, before the final checkpoint: put into `model` what the run yields."""

    def state(self) -> dict[str, Any]:
        """Plain data (numbers, strings, lists, tensors) that must survive a resume, saved after every epoch."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what state() returned (from last.pt on resume)."""

    # ---------------------------------------------------------------- hooks of the loop
    def on_epoch_start(self, epoch: int) -> None:
        """Before epoch `epoch` (0-based) runs its batches, resumed epochs included."""

    def lr_scale(self, epoch: int) -> float:
        """A factor on the schedule's learning rate in epoch `epoch` (a method with phases, e.g. DynACL++'s
        linear probe at a tenth of its fine-tuning rate)."""
        return 1.0

    def set_train_mode(self, net: Net) -> None:
        """Before each step: the modes the loss expects (BatchNorm statistics update in train mode)."""
        net.train()
        self.modules.train()

    def loss(self, net: Net, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> StepOutput:
        raise NotImplementedError

    # ---------------------------------------------------------------- read by the loop (not overridden)
    def trainable(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters the optimizer updates: the model's `trains` parts, then the extra modules' parameters
        that require gradients. The loop freezes every other parameter of the model."""
        own = [p for n, p in model.named_parameters() if n.split(".", 1)[0] in self.trains]
        return own + [p for p in self.modules.parameters() if p.requires_grad]

    def checkpoint_state(self) -> dict[str, Any] | None:
        """What checkpoints hold of the method itself (None when nothing: such checkpoints stay as before)."""
        modules, state = self.modules.state_dict(), self.state()
        if not modules and not state:
            return None
        return {"modules": dict(modules), "state": state}

    def restore(self, saved: dict[str, Any] | None, where: str) -> None:
        """Load checkpoint_state()'s output back (on resume), with a one-line error when it does not fit."""
        from ..errors import UserError

        if saved is None:
            if self.checkpoint_state() is not None:
                raise UserError(f"{where}: holds no state of method '{self.name}'; start a fresh --out")
            return
        try:
            self.modules.load_state_dict(saved.get("modules", {}))
        except RuntimeError as e:
            raise UserError(f"{where}: method '{self.name}' modules do not fit "
                            f"({(str(e).splitlines() or [''])[0][:160]}); start a fresh --out") from None
        self.load_state(saved.get("state", {}))


METHODS: Registry[type[Method]] = Registry("method")


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: the method is known by `cls.name` (what --method and suites' `method:` name)."""
    bad = [p for p in cls.trains if p not in PARTS]
    if bad or cls.yields not in ("classifier", "encoder") or cls.encoder_role not in ("start", "teacher"):
        raise TypeError(f"method {cls.name!r}: trains must name parts of {PARTS} and yields be 'classifier' or "
                        f"'encoder' (got trains={cls.trains}, yields={cls.yields!r})")
    METHODS.register(cls.name)(cls)
    return cls


@dataclass(frozen=True)
class LinfBudget:
    """An ℓ∞ PGD budget; unset ε takes the dataset's customary budget, unset step a fixed ratio of ε."""

    eps: float | None = None
    step_size: float | None = None
    steps: int = 10
    random_start: bool = True

    def validate(self, where: str) -> None:
        check_budget(self, where)

    def resolve(self, info: DatasetInfo, step_ratio: float) -> tuple[float, float]:
        return resolve_budget(self, info, step_ratio)


def check_budget(p: Any, where: str) -> None:
    """The ℓ∞ attack fields (eps, step_size, steps) of any method's parameters: LinfBudget's, and the contrastive
    methods' whose parameters also hold a projector and a temperature."""
    from ..config import require
    require(p.eps is None or 0 < p.eps <= 1, f"{where}.eps", f"must be in (0, 1] for [0, 1] images, got {p.eps}")
    require(p.step_size is None or p.step_size > 0, f"{where}.step_size", "must be positive")
    require(1 <= p.steps <= 10_000, f"{where}.steps", f"must be between 1 and 10000, got {p.steps}")


def resolve_budget(p: Any, info: DatasetInfo, step_ratio: float) -> tuple[float, float]:
    """(ε, step): unset ε takes the dataset's customary budget, unset step `step_ratio`·ε."""
    eps = p.eps if p.eps is not None else info.eps
    return eps, p.step_size if p.step_size is not None else eps * step_ratio


def clean_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Clean accuracy for the epoch summary, measured in eval mode without gradients."""
    with eval_mode(model), torch.no_grad():
        return int((model(x).argmax(1) == y).sum())
