"""Training: the config, the single loop, the optimizer/schedule and the checkpoint format."""
from .checkpoint import load_checkpoint, save_checkpoint
from .loop import train
from .spec import TrainConfig, make_train_config

__all__ = ["TrainConfig", "make_train_config", "train", "load_checkpoint", "save_checkpoint"]
