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

So do the adversarial SSL peers: ACL keeps its clean BatchNorm branch in `self.modules` and swaps it into the
encoder for the clean pair (dual_bn.py); AdvCL keeps its frozen teacher in `self.modules` and fits its k-means
centroids in `prepare` (pseudo_labels.py); DynACL sets its augmentation strength and loss weight in
`on_epoch_start`, keeps its momentum network in `self.modules` and yields it in `finish`; DynACL++ probes at a
tenth of the rate through `lr_scale`. None of them changes the loop.
"""
import importlib
import pkgutil

from .base import METHODS, Method, Net, StepOutput, register_method

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):     # registration beside each definition
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["METHODS", "Method", "Net", "StepOutput", "register_method"]
