"""Training methods by name; each is a loss for one batch, and the single loop in train/ runs them all."""
from . import contrastive, linear, supervised  # noqa: F401  (registration)
from .base import METHODS, Method, StepOutput

__all__ = ["METHODS", "Method", "StepOutput"]
