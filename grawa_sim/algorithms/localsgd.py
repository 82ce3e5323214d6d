"""LocalSGD: periodic model averaging."""

from __future__ import annotations

from dataclasses import dataclass

from grawa_sim.algorithms.base import Algorithm, Params, RoundInfo, lerp, uniform_average
from grawa_sim.collectives import StackedAxis


@dataclass
class CenterState:
    center: Params  # most recent average ([1, ...]); the initial point before round 1


def localsgd_round(params: Params, pull: float, axis: StackedAxis) -> tuple[Params, Params]:
    """x_avg = (1/M) sum_j x_j;  x_i <- (1 - lambda) x_i + lambda x_avg  (lambda = 1: plain averaging).

    Returns (new params, x_avg).
    """
    avg = uniform_average(params, axis)
    return lerp(params, avg, pull), avg


class LocalSGD(Algorithm):
    """Every tau steps x_i <- mean_j x_j (lambda defaults to 1). Evaluated on the uniform average."""

    name = "localsgd"

    def init(self, params: Params, axis: StackedAxis) -> CenterState:
        return CenterState(center={n: x.clone() for n, x in params.items()})

    def round(self, params, state, axis, probe_grads):
        params, avg = localsgd_round(params, self.hyper.pull, axis)
        return params, CenterState(center=avg), RoundInfo()
