"""MGRAWA and LGRAWA: gradient-based weighted averaging (Dimlioglu & Choromanska, AISTATS 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from grawa_sim.algorithms.base import Algorithm, Params, RoundInfo, lerp
from grawa_sim.collectives import StackedAxis

SMOOTHING = 0.9**8  # b of the bias-corrected moving average of the scores (about 0.43)


class DivergenceError(ValueError):
    """A NaN or infinite loss, gradient or parameter: the run diverged.

    runner.run() raises it with ``step`` (the first local step that went non-finite), ``history``
    (the rows evaluated before) and ``config``; the message is one line naming the step.
    """

    def __init__(self, message: str, step: float | None = None, history=None, config=None):
        super().__init__(message)
        self.step, self.history, self.config = step, history, config


def grawa_weights(scores: torch.Tensor, axis: StackedAxis | None = None) -> torch.Tensor:
    """w_i = (1/n_i) / sum_j (1/n_j), over the worker dimension 0 ([M] or [M, L]).

    Computed as w_i = r_i / sum_j r_j with r_i = m / n_i and m = min_j n_j, which is
    the same number but cannot overflow (r_i lies in [0, 1]). When some n_i are
    exactly zero (m = 0) those workers take all the weight, shared equally, so no
    NaN or inf can appear. Computed in float64, returned in the scores' dtype.
    Collectives: one min and two sum all-reduces of M scalars.
    """
    if scores.ndim not in (1, 2):
        raise ValueError(f"scores: must have shape [M] or [M, L] (got shape {tuple(scores.shape)})")
    if bool((scores < 0).any()):
        raise ValueError("scores: must be non-negative (gradient norms)")
    axis = axis or StackedAxis(scores.shape[0])
    bad = (~torch.isfinite(scores)).reshape(scores.shape[0], -1).any(1, keepdim=True).double()
    if bool((axis.all_reduce_sum(bad) > 0).any()):  # every rank learns it, so all stop at the same round
        raise DivergenceError("scores: a gradient norm is NaN or infinite; the run diverged (lower the lr?)")
    n = scores.double()
    smallest = axis.all_reduce_min(n)
    ratio = torch.where(smallest > 0, smallest / n.clamp(min=torch.finfo(n.dtype).tiny), (n == 0).double())
    return (ratio / axis.all_reduce_sum(ratio)).to(scores.dtype)


def layer_norms(grads: Params) -> torch.Tensor:
    """||g_i^l||_2 for every worker i and layer l (one layer = one parameter tensor): [M, L]."""
    return torch.stack([g.reshape(g.shape[0], -1).norm(dim=1) for g in grads.values()], dim=1)


def model_scores(norms: torch.Tensor, norm: str) -> torch.Tensor:
    """n_i = sum_l ||g_i^l|| ("layer_sum", reference) or sqrt(sum_l ||g_i^l||^2) ("global"): [M]."""
    if norm == "layer_sum":
        return norms.sum(dim=1)
    return norms.square().sum(dim=1).sqrt()


def smooth_scores(average: torch.Tensor, scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """g <- b g + (1 - b) n;  n^ = g / (1 - b^k), b = 0.9^8, k = 1, 2, ... the round counter.

    Returns (new g, n^).
    """
    average = SMOOTHING * average + (1 - SMOOTHING) * scores
    return average, average / (1 - SMOOTHING**k)


def weighted_center(params: Params, weights: torch.Tensor, axis: StackedAxis) -> Params:
    """x_C = sum_i w_i x_i; weights [M] (one per worker) or [M, L] (column l for the l-th tensor of params)."""
    center = {}
    for l, (n, x) in enumerate(params.items()):
        w = weights if weights.ndim == 1 else weights[:, l]
        center[n] = axis.all_reduce_sum(w.view(-1, *[1] * (x.ndim - 1)).to(x.dtype) * x)
    return center


@dataclass
class GrawaState:
    center: Params  # last weighted center x_C ([1, ...]); the initial point before round 1
    average: torch.Tensor  # g, the moving average of the scores (float64): [M_local] or [M_local, L]
    rounds: int = 0  # k


class GRAWA(Algorithm):
    """Every tau steps, with probe gradients of the summed loss on B samples drawn from the whole set:

        n_i = sum_l ||grad_l f(x_i)||   (MGRAWA; LGRAWA keeps n_i^l per layer)
        n^_i = bias-corrected moving average of n_i (b = 0.9^8), or n_i without smoothing
        w_i = (1/n^_i) / sum_j (1/n^_j);  x_C = sum_i w_i x_i
        x_i <- (1 - lambda) x_i + lambda x_C

    Evaluated on the uniform average; x_C is reported as the center.
    """

    name = "mgrawa"
    needs_probe = True
    per_layer = False

    def init(self, params: Params, axis: StackedAxis) -> GrawaState:
        shape = (axis.local_workers, len(params)) if self.per_layer else (axis.local_workers,)
        device = next(iter(params.values())).device
        return GrawaState(center={n: x.clone() for n, x in params.items()},
                          average=torch.zeros(shape, dtype=torch.float64, device=device))

    def round(self, params, state, axis, probe_grads):
        norms = layer_norms({n: probe_grads[n] for n in params}).double()  # columns in params order
        scores = norms if self.per_layer else model_scores(norms, self.hyper.grawa_norm)
        k = state.rounds + 1
        if self.hyper.grawa_smoothing:
            average, smoothed = smooth_scores(state.average, scores, k)
        else:
            average, smoothed = state.average, scores
        weights = grawa_weights(smoothed, axis)
        center = weighted_center(params, weights, axis)
        params = lerp(params, center, self.hyper.pull)
        return params, GrawaState(center, average, k), RoundInfo(weights=weights, scores=smoothed)


class MGRAWA(GRAWA):
    """Model-level GRAWA: one weight per worker."""

    name = "mgrawa"


class LGRAWA(GRAWA):
    """Layer-level GRAWA: one score, weight and center per layer (parameter tensor)."""

    name = "lgrawa"
    per_layer = True
