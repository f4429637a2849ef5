"""Models by name. Every model takes [0, 1] inputs, normalizes inside, and exposes features() and a head."""
from .nets import MODELS, Classifier, ModelSpec, build_model

__all__ = ["MODELS", "Classifier", "ModelSpec", "build_model"]
