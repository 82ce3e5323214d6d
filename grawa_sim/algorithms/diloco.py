"""DiLoCo: distributed low-communication training (Douillard et al. 2023), outer Nesterov SGD on x_global."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from grawa_sim.algorithms.base import (
    Algorithm,
    Hyper,
    Params,
    Reference,
    RoundInfo,
    Style,
    clone,
    mean_of,
    uniform_average,
)
from grawa_sim.core.collectives import Collective, StackedAxis
from grawa_sim.core.errors import ConfigError


@dataclass(frozen=True)
class DiLoCoHyper(Hyper):
    """The outer optimizer: learning rate eta_out > 0 and Nesterov momentum mu in [0, 1) (the paper's 0.7, 0.9)."""

    outer_lr: float = 0.7
    outer_momentum: float = 0.9

    def check(self) -> None:
        for field in ("outer_lr", "outer_momentum"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{field}: must be a finite number (got {value!r})")
        if self.outer_lr <= 0:
            raise ConfigError(f"outer_lr: must be > 0 (got {self.outer_lr!r})")
        if not 0 <= self.outer_momentum < 1:
            raise ConfigError(f"outer_momentum: must lie in [0, 1) (got {self.outer_momentum!r})")


@dataclass
class DiLoCoState:
    center: Params  # x_global ([1, ...]); the common initial point before round 1
    momentum: Params  # m, the outer momentum buffer ([1, ...]); zero before round 1


def diloco_round(params: Params, state: DiLoCoState, lr: float, mu: float, axis: StackedAxis) -> DiLoCoState:
    """One outer step (returns the new state; the workers then restart from its center):

        Delta = x_global - (1/M) sum_j x_j      (the outer gradient)
        m <- mu m + Delta
        x_global <- x_global - eta_out (Delta + mu m)
    """
    mean = uniform_average(params, axis)
    delta = {n: z - mean[n] for n, z in state.center.items()}
    momentum = {n: mu * m + delta[n] for n, m in state.momentum.items()}
    center = {n: z - lr * (delta[n] + mu * momentum[n]) for n, z in state.center.items()}
    return DiLoCoState(center=center, momentum=momentum)


class DiLoCoReference(Reference):
    """The same outer step over the list of worker models."""

    def __init__(self, hyper, initial, workers):
        super().__init__(hyper, initial, workers)
        self.momentum = {n: torch.zeros_like(z) for n, z in self.center.items()}

    def round(self, workers: list[Params], probe_norms) -> tuple[list[Params], RoundInfo]:
        lr, mu = self.hyper.outer_lr, self.hyper.outer_momentum
        mean = mean_of(workers)
        for n, z in list(self.center.items()):
            delta = z - mean[n]
            self.momentum[n] = mu * self.momentum[n] + delta
            self.center[n] = z - lr * (delta + mu * self.momentum[n])
        return [clone(self.center) for _ in workers], RoundInfo()

    def evaluated(self, workers: list[Params]) -> Params:
        return clone(self.center)


class DiLoCo(Algorithm):
    """Every tau local steps an outer Nesterov SGD step on the global model x_global:

        Delta = x_global - (1/M) sum_j x_j
        m <- mu m + Delta                          (m starts at 0)
        x_global <- x_global - eta_out (Delta + mu m)
        x_i <- x_global for every worker i         (local SGD momentum buffers are kept)

    with eta_out = ``outer_lr`` (default 0.7) and mu = ``outer_momentum`` (default 0.9). With eta_out = 1
    and mu = 0 this is LocalSGD's plain averaging. The paper's inner optimizer is AdamW; here it is the
    simulator's local SGD. Default tau 32, LocalSGD's and GRAWA's period (the paper uses hundreds of
    steps for language models); pull has no role (the workers always restart from x_global), prox
    defaults to 0. Evaluated on x_global, which is also the reported center. Collectives: one all-reduce
    mean of the parameters per round.
    """

    name = "diloco"
    style = Style("DiLoCo", "tab:brown", (0, (3, 1)))
    default_tau, default_pull, default_prox = 32, 1.0, 0.0
    hyper_type = DiLoCoHyper
    takes_pull = False
    center_description = "x_global (DiLoCo's outer model)"
    reference = DiLoCoReference

    @staticmethod
    def collectives(parameters: int, layers: int) -> list[Collective]:
        return [Collective("all_reduce", parameters)]

    def init(self, params: Params, axis: StackedAxis) -> DiLoCoState:
        return DiLoCoState(center=clone(params), momentum={n: torch.zeros_like(x) for n, x in params.items()})

    def round(self, params, state, axis, probe_grads):
        state = diloco_round(params, state, self.hyper.outer_lr, self.hyper.outer_momentum, axis)
        params = {n: state.center[n].expand_as(x).clone(memory_format=torch.contiguous_format)
                  for n, x in params.items()}
        return params, state, RoundInfo()

    def evaluated(self, params: Params, state: DiLoCoState, axis: StackedAxis) -> Params:
        return state.center
