"""grawa-sim: simulate GRAWA and its baselines with M workers on one device.

    >>> import grawa_sim
    >>> result = grawa_sim.run(grawa_sim.Config(algorithm="mgrawa", workers=8, steps=200))
    >>> result.history[["step", "test_acc"]]
"""

from grawa_sim.config import Config

__all__ = ["Config", "Result", "grawa_weights", "run", "run_many"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """torch is imported on first use of run / Result / grawa_weights, so the command line can check its
    input and output folder before that import (a few seconds)."""
    if name in ("run", "Result"):
        from grawa_sim.engine import runner

        return getattr(runner, name)
    if name == "run_many":
        from grawa_sim.engine.run_many import run_many

        return run_many
    if name == "grawa_weights":
        from grawa_sim.algorithms.grawa import grawa_weights

        return grawa_weights
    raise AttributeError(f"module 'grawa_sim' has no attribute {name!r}")
