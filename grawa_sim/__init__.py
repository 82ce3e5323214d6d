"""grawa-sim: simulate GRAWA and its baselines with M workers on one device.

    >>> import grawa_sim
    >>> result = grawa_sim.run(grawa_sim.Config(algorithm="mgrawa", workers=8, steps=200))
    >>> result.history[["step", "test_acc"]]
"""

from grawa_sim.algorithms.grawa import grawa_weights
from grawa_sim.config import Config
from grawa_sim.runner import Result, run

__all__ = ["Config", "Result", "grawa_weights", "run"]
__version__ = "0.1.0"
