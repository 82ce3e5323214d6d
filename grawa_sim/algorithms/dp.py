"""DP: synchronous data-parallel SGD (optionally with SAM's ascent step, done by the engine)."""

from __future__ import annotations

from dataclasses import dataclass

from grawa_sim.algorithms.base import Algorithm, Params
from grawa_sim.collectives import StackedAxis


@dataclass
class DPState:
    center: Params  # the initial point; DP has no center, kept for the common interface


class DP(Algorithm):
    """Every step g_i <- (1/M) sum_j g_j (all-reduce mean), then the same SGD update on every worker.

    All workers stay identical. Without batch norm and without SAM they equal one model trained on
    the M*B batch (losses are batch means and every worker's batch has B samples); batch norm
    normalises each worker's B samples by their own statistics, and SAM takes each worker's ascent
    step from its own gradient, so with either the update differs from the M*B-batch one.
    Evaluated on the (single) model.
    """

    name = "dp"
    communicates_every_step = True

    def init(self, params: Params, axis: StackedAxis) -> DPState:
        return DPState(center={n: x.clone() for n, x in params.items()})

    def reduce_grads(self, grads: Params, axis: StackedAxis) -> Params:
        return {n: axis.all_reduce_mean(g).expand_as(g).contiguous() for n, g in grads.items()}

    def round(self, params, state, axis, probe_grads):
        raise RuntimeError("DP communicates through reduce_grads every step, not in rounds")

    def evaluated(self, params: Params, state: DPState, axis: StackedAxis) -> Params:
        return {n: axis.broadcast(x, 0) for n, x in params.items()}
