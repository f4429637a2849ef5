"""rocl-bench: train defenses (RoCL, SimCLR, Madry, TRADES) and evaluate them against a fixed attack battery."""
__version__ = "0.1.0"
