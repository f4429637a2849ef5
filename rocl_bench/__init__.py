"""rocl-bench: train defenses (RoCL, SimCLR, Madry, TRADES) and evaluate them against a fixed attack battery."""
from .version import __version__

from .api import evaluate, list_attacks, list_datasets, list_methods, list_models, run_suite  # noqa: E402

__all__ = ["__version__", "evaluate", "run_suite", "list_models", "list_methods", "list_attacks", "list_datasets"]
