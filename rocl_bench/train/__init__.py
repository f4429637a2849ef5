"""Training, one job per module: spec.py (the config), build.py (model and method from a config, the encoder
transplant), ddp.py (the torchrun wrapping), loop.py (the only loop), folder.py (a run's folder and identity),
optim.py (LARS, schedules), checkpoint.py (the checkpoint format)."""
from .checkpoint import load_checkpoint, save_checkpoint
from .folder import identity_hash
from .loop import train
from .spec import TrainConfig, make_train_config

__all__ = ["TrainConfig", "make_train_config", "train", "identity_hash", "load_checkpoint", "save_checkpoint"]
