"""LocalSGD: periodic model averaging."""

from __future__ import annotations

from dataclasses import dataclass

from grawa_sim.algorithms.base import Algorithm, Params, Reference, RoundInfo, Style, lerp, mean_of, uniform_average
from grawa_sim.core.collectives import Collective, StackedAxis


@dataclass
class CenterState:
    center: Params  # most recent average ([1, ...]); the initial point before round 1


def localsgd_round(params: Params, pull: float, axis: StackedAxis) -> tuple[Params, Params]:
    """x_avg = (1/M) sum_j x_j;  x_i <- (1 - lambda) x_i + lambda x_avg  (lambda = 1: plain averaging).

    Returns (new params, x_avg).
    """
    avg = uniform_average(params, axis)
    return lerp(params, avg, pull), avg


class LocalSGDReference(Reference):
    def round(self, workers: list[Params], probe_norms) -> tuple[list[Params], RoundInfo]:
        lam = self.hyper.pull
        self.center = mean_of(workers)
        return [{n: (1 - lam) * x + lam * self.center[n] for n, x in w.items()} for w in workers], RoundInfo()


class LocalSGD(Algorithm):
    """Every tau steps x_avg = (1/M) sum_j x_j;  x_i <- (1 - lambda) x_i + lambda x_avg (lambda defaults to 1).

    Evaluated on the uniform average. Collectives: one all-reduce of the parameters per round.
    Defaults: tau 32 (GRAWA's period), lambda 1, p 0.
    """

    name = "localsgd"
    style = Style("LocalSGD", "tab:blue", "-")
    default_tau, default_pull, default_prox = 32, 1.0, 0.0
    reference = LocalSGDReference

    @staticmethod
    def collectives(parameters: int, layers: int) -> list[Collective]:
        return [Collective("all_reduce", parameters)]

    def init(self, params: Params, axis: StackedAxis) -> CenterState:
        return CenterState(center={n: x.clone() for n, x in params.items()})

    def round(self, params, state, axis, probe_grads):
        params, avg = localsgd_round(params, self.hyper.pull, axis)
        return params, CenterState(center=avg), RoundInfo()
