"""EASGD: elastic averaging SGD (Zhang, Choromanska & LeCun 2015), synchronous symmetric form."""

from __future__ import annotations

from dataclasses import dataclass

from grawa_sim.algorithms.base import Algorithm, Params, Reference, RoundInfo, Style, clone, mean_of, uniform_average
from grawa_sim.core.collectives import Collective, StackedAxis


@dataclass
class EASGDState:
    center: Params  # x~ ([1, ...]), starts at the common initial point


def easgd_round(params: Params, center: Params, beta: float, axis: StackedAxis) -> tuple[Params, Params]:
    """With alpha = beta / M and the workers' pre-round values:

        x_i <- x_i - alpha (x_i - x~)
        x~  <- (1 - beta) x~ + beta (1/M) sum_j x_j

    Returns (new params, new x~).
    """
    alpha = beta / axis.workers
    mean = uniform_average(params, axis)
    new_params = {n: x - alpha * (x - center[n]) for n, x in params.items()}
    new_center = {n: (1 - beta) * c + beta * mean[n] for n, c in center.items()}
    return new_params, new_center


class EASGDReference(Reference):
    def round(self, workers: list[Params], probe_norms) -> tuple[list[Params], RoundInfo]:
        beta = self.hyper.pull
        alpha = beta / len(workers)
        avg = mean_of(workers)
        new = [{n: x - alpha * (x - self.center[n]) for n, x in w.items()} for w in workers]
        self.center = {n: (1 - beta) * z + beta * avg[n] for n, z in self.center.items()}
        return new, RoundInfo()

    def evaluated(self, workers: list[Params]) -> Params:
        return clone(self.center)


class EASGD(Algorithm):
    """Every tau steps the elastic update above with beta = pull. Evaluated on x~.

    Collectives: the workers' mean reduced to the holder of x~, the new x~ broadcast back.
    Defaults (the reference code's sample): tau 4, beta 0.1, p 0.
    """

    name = "easgd"
    style = Style("EASGD", "tab:green", "-.")
    default_tau, default_pull, default_prox = 4, 0.1, 0.0
    center_description = "x~ (EASGD's center)"
    reference = EASGDReference

    @staticmethod
    def collectives(parameters: int, layers: int) -> list[Collective]:
        return [Collective("reduce", parameters), Collective("broadcast", parameters)]

    def init(self, params: Params, axis: StackedAxis) -> EASGDState:
        return EASGDState(center={n: x.clone() for n, x in params.items()})

    def round(self, params, state, axis, probe_grads):
        params, center = easgd_round(params, state.center, self.hyper.pull, axis)
        return params, EASGDState(center=center), RoundInfo()

    def evaluated(self, params: Params, state: EASGDState, axis: StackedAxis) -> Params:
        return state.center
