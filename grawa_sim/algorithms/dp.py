"""DP: synchronous data-parallel SGD (optionally with SAM's ascent step, done by the engine)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from grawa_sim.algorithms.base import Algorithm, Params, Reference, Style
from grawa_sim.core.collectives import Collective, StackedAxis


@dataclass
class DPState:
    center: Params  # the initial point; DP has no center, kept for the common interface


class DPReference(Reference):
    """Every step each gradient is replaced by the mean over the workers; evaluated on worker 0."""

    def reduce_grads(self, grads: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
        means = [sum(per_worker) / len(per_worker) for per_worker in zip(*grads)]
        return [[g.clone() for g in means] for _ in grads]

    def round(self, workers, probe_norms):
        raise RuntimeError("DP communicates every step, not in rounds")

    def evaluated(self, workers: list[Params]) -> Params:
        return {n: t.clone() for n, t in workers[0].items()}


class DP(Algorithm):
    """Every step g_i <- (1/M) sum_j g_j (all-reduce mean), then the same SGD update on every worker.

    All workers stay identical. Without batch norm and without SAM they equal one model trained on
    the M*B batch (losses are batch means and every worker's batch has B samples); batch norm
    normalises each worker's B samples by their own statistics, and SAM takes each worker's ascent
    step from its own gradient, so with either the update differs from the M*B-batch one.
    Evaluated on the (single) model. Collectives: one all-reduce of the gradients per step.
    """

    name = "dp"
    style = Style("DP", "tab:gray", ":")
    sam_style = Style("DP+SAM", "black", ":")
    default_tau, default_pull, default_prox = 1, 0.0, 0.0
    communicates_every_step = True
    takes_sam = True
    reference = DPReference

    @staticmethod
    def collectives(parameters: int, layers: int) -> list[Collective]:
        return [Collective("all_reduce", parameters)]

    @classmethod
    def styles(cls) -> dict[str, Style]:
        return {cls.name: cls.style, "dp+sam": cls.sam_style}

    def init(self, params: Params, axis: StackedAxis) -> DPState:
        return DPState(center={n: x.clone() for n, x in params.items()})

    def reduce_grads(self, grads: Params, axis: StackedAxis) -> Params:
        """Every worker's gradient replaced by the workers' mean, in the memory layout of its own gradient (which
        the engine keeps its parameters in: the SGD update then needs no copy). One worker on one process: its
        own gradients, as they are (the mean of one value is that value)."""
        if type(axis) is StackedAxis and axis.workers == 1:
            return grads
        means = {n: axis.all_reduce_mean(g).expand_as(g) for n, g in grads.items()}
        return {n: m if m.stride() == grads[n].stride() else torch.empty_like(grads[n]).copy_(m)
                for n, m in means.items()}

    def round(self, params, state, axis, probe_grads):
        raise RuntimeError("DP communicates through reduce_grads every step, not in rounds")

    def evaluated(self, params: Params, state: DPState, axis: StackedAxis) -> Params:
        return {n: axis.broadcast(x, 0) for n, x in params.items()}
