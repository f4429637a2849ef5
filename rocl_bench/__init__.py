"""rocl-bench: train defenses (RoCL, SimCLR, Madry, TRADES) and evaluate them against a fixed attack battery."""
__version__ = "0.2.0"

from .api import evaluate, list_attacks, list_datasets, list_methods, list_models, run_suite  # noqa: E402

__all__ = ["__version__", "evaluate", "run_suite", "list_models", "list_methods", "list_attacks", "list_datasets"]
