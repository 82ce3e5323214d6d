"""The six algorithms on the worker axis; `build(name, hyper)` returns one."""

from grawa_sim.algorithms.base import Algorithm, Hyper, Params, RoundInfo
from grawa_sim.algorithms.dp import DP
from grawa_sim.algorithms.easgd import EASGD
from grawa_sim.algorithms.grawa import LGRAWA, MGRAWA, grawa_weights
from grawa_sim.algorithms.localsgd import LocalSGD
from grawa_sim.algorithms.lsgd import LSGD
from grawa_sim.config import ConfigError

REGISTRY: dict[str, type[Algorithm]] = {
    cls.name: cls for cls in (DP, LocalSGD, EASGD, LSGD, MGRAWA, LGRAWA)
}


def build(name: str, hyper: Hyper) -> Algorithm:
    if name not in REGISTRY:
        raise ConfigError(f"algorithm: must be one of {', '.join(REGISTRY)} (got {name!r})")
    return REGISTRY[name](hyper)


__all__ = ["Algorithm", "Hyper", "Params", "RoundInfo", "REGISTRY", "build", "grawa_weights"]
