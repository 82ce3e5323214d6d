"""The averaging rules on the worker axis, and the registry every other module reads.

Each algorithm lives in one module of this package and describes itself (names, defaults,
hyper-parameters, costs, plot style, its loop-backend reference; see `base.Algorithm`).
It is made known to the rest of the simulator by one line of `REGISTERED`:
``name: "module:Class"``. The modules are imported on first use, so reading the names
(the command line's choices, the config's validation message) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from grawa_sim.core.errors import ConfigError

if TYPE_CHECKING:
    from grawa_sim.algorithms.base import Algorithm, Hyper
    from grawa_sim.core.collectives import Collective

REGISTERED: dict[str, str] = {
    "dp": "dp:DP",
    "localsgd": "localsgd:LocalSGD",
    "easgd": "easgd:EASGD",
    "lsgd": "lsgd:LSGD",
    "mgrawa": "grawa:MGRAWA",
    "lgrawa": "grawa:LGRAWA",
    "diloco": "diloco:DiLoCo",
}

# The algorithms of the stored experiments (comparison, time budget, anchor, convergence study):
# frozen, so that registering a new algorithm leaves the stored results and figures as they are.
COMPARED: tuple[str, ...] = ("dp", "localsgd", "easgd", "lsgd", "mgrawa", "lgrawa")


def names() -> tuple[str, ...]:
    """Every registered algorithm name, in registration order (no import of the modules)."""
    return tuple(REGISTERED)


def get(name: str) -> type[Algorithm]:
    """The class of algorithm ``name`` (imports its module on first use)."""
    if name not in REGISTERED:
        raise ConfigError(f"algorithm: must be one of {', '.join(REGISTERED)} (got {name!r})")
    module, cls = REGISTERED[name].split(":")
    return getattr(importlib.import_module(f"grawa_sim.algorithms.{module}"), cls)


def classes() -> dict[str, type[Algorithm]]:
    """name -> class for every registered algorithm."""
    return {name: get(name) for name in REGISTERED}


def build(name: str, hyper: Hyper) -> Algorithm:
    """An instance of algorithm ``name`` with hyper-parameters ``hyper`` (a plain `Hyper` takes the
    defaults of the algorithm's own fields)."""
    kind = get(name)
    return kind(kind.own_hyper(hyper))


def round_collectives(algorithm: str, parameters: int, layers: int) -> list[Collective]:
    """Every collective one communication of ``algorithm`` runs (per step if it communicates every step,
    else per round), for a model of ``parameters`` numbers in ``layers`` tensors."""
    return get(algorithm).collectives(parameters, layers)


def __getattr__(name: str):
    """The shared types and GRAWA's weights, imported (with torch) on first use."""
    if name in ("Algorithm", "Hyper", "Params", "Reference", "RoundInfo", "Style"):
        from grawa_sim.algorithms import base

        return getattr(base, name)
    if name == "grawa_weights":
        from grawa_sim.algorithms.grawa import grawa_weights

        return grawa_weights
    raise AttributeError(f"module 'grawa_sim.algorithms' has no attribute {name!r}")


__all__ = ["COMPARED", "REGISTERED", "build", "classes", "get", "names", "round_collectives"]
