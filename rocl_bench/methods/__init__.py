"""Training methods by name; each is a Method (methods/base.py) and the single loop in train/ runs them all.

Adding a method is one file plus its test:

1. Write `rocl_bench/methods/<name>.py` with a frozen dataclass of its parameters (with `validate(where)`) and
   a `Method` subclass decorated with `@register_method`: set `name`, `Params`, `train_defaults` and the
   declarations that differ from the defaults (`yields`, `trains`, `needs_encoder`, `sync_batchnorm`,
   `projector()`), and write `loss(net, x, y, g) -> StepOutput`. Draw every random number from `g`.
2. What it carries goes in `self.modules` (built in `setup(model)`; a frozen one sets requires_grad False and
   its mode in `set_train_mode`) and in `state()` / `load_state()`; both are checkpointed and restored on
   resume. What changes per epoch is set in `on_epoch_start(epoch)`. Numbers to log go in StepOutput.extras.
3. Nothing else: every module of this package is imported here, so its registration runs and
   `--method <name>`, suites and `rocl-bench list` know it (an unknown name lists the valid ones).
4. Test it in `tests/test_<name>.py`: a short `quick_train` run, and the property that makes it that method.

ACL (dual BatchNorm) keeps its adversarial BatchNorm branch in `self.modules` and swaps it into the encoder
inside its loss; AdvCL keeps its frozen teacher encoder in `self.modules`; DynACL sets its augmentation
strength in `on_epoch_start`. None of them needs the loop to change.
"""
import importlib
import pkgutil

from .base import METHODS, Method, Net, StepOutput, register_method

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):     # registration beside each definition
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["METHODS", "Method", "Net", "StepOutput", "register_method"]
