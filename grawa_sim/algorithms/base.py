"""What every algorithm shares: hyper-parameters, parameter-dict helpers, the hook interface.

Parameters are dicts name -> stacked tensor [M_local, ...]. A round is a pure
function of (params, state) and the worker axis's collectives; the engine
calls the hooks of an `Algorithm` and never looks inside its state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from grawa_sim.collectives import StackedAxis

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Hyper:
    """Round hyper-parameters: lambda = pull, p = prox (per-step pull), tau = period."""

    pull: float
    prox: float
    tau: int
    grawa_norm: str = "layer_sum"
    grawa_smoothing: bool = True


@dataclass
class RoundInfo:
    """What a round reports: GRAWA scores/weights ([M] or [M, L]) or LSGD's leader."""

    weights: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    leader: int | None = None


def lerp(params: Params, target: Params, weight: float) -> Params:
    """x <- (1 - weight) x + weight * target, tensor by tensor (target broadcasts over workers)."""
    return {n: torch.lerp(x, target[n].expand_as(x), weight) for n, x in params.items()}


def uniform_average(params: Params, axis: StackedAxis) -> Params:
    """mean_j x_j, each tensor of shape [1, ...]."""
    return {n: axis.all_reduce_mean(x) for n, x in params.items()}


def squeeze_worker(params: Params) -> Params:
    """Drop the leading worker dimension of size 1 (a center) -> plain model parameters."""
    return {n: x.squeeze(0) for n, x in params.items()}


class Algorithm:
    """Hooks the engine calls; defaults are "do nothing".

    - ``init(params, axis)``: state from the common initial point (params of shape [1, ...]).
    - ``reduce_grads(grads, axis)``: DP's all-reduce of the gradients every step.
    - ``observe_losses(state, losses, workers)``: minibatch losses after every step (of ``workers``, default all).
    - ``round(params, state, axis, probe_grads)``: every tau steps -> (params, state, info).
    - ``center(state)``: z of the proximal pull and the reported center ([1, ...]).
    - ``evaluated(params, state, axis)``: the model the algorithm is evaluated on ([1, ...]).
    """

    name = "base"
    needs_probe = False
    communicates_every_step = False

    def __init__(self, hyper: Hyper):
        self.hyper = hyper

    def init(self, params: Params, axis: StackedAxis):
        raise NotImplementedError

    def reduce_grads(self, grads: Params, axis: StackedAxis) -> Params:
        return grads

    def observe_losses(self, state, losses: torch.Tensor, workers: torch.Tensor | None = None):
        return state

    def round(self, params: Params, state, axis: StackedAxis, probe_grads: Params | None):
        raise NotImplementedError

    def center(self, state) -> Params:
        return state.center

    def evaluated(self, params: Params, state, axis: StackedAxis) -> Params:
        return uniform_average(params, axis)
