"""MGRAWA and LGRAWA: gradient-based weighted averaging (Dimlioglu & Choromanska, AISTATS 2024)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from grawa_sim.algorithms.base import Algorithm, Hyper, Params, Reference, RoundInfo, Style, lerp
from grawa_sim.core.collectives import Collective, StackedAxis
from grawa_sim.core.errors import ConfigError

SMOOTHING = 0.9**8  # b of the bias-corrected moving average of the scores (about 0.43)
NORMS = ("layer_sum", "global")
WEIGHTINGS = ("inverse_norm", "uniform")  # GRAWA's weights, or the control: 1/M with everything else the same


@dataclass(frozen=True)
class GrawaHyper(Hyper):
    """GRAWA's own hyper-parameters: the model score (sum of layer norms or global norm), its smoothing,
    and the weighting: ``inverse_norm`` (GRAWA) or ``uniform`` (its control, w_i = 1/M)."""

    grawa_norm: str = "layer_sum"
    grawa_smoothing: bool = True
    weighting: str = "inverse_norm"

    def check(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting: must be one of {', '.join(WEIGHTINGS)} (got {self.weighting!r})")
        if self.grawa_norm not in NORMS:
            raise ConfigError(f"grawa_norm: must be one of {', '.join(NORMS)} (got {self.grawa_norm!r})")
        if not isinstance(self.grawa_smoothing, bool):
            raise ConfigError(f"grawa_smoothing: must be true or false (got {self.grawa_smoothing!r})")


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


class GrawaReference(Reference):
    """Scores, smoothing, weights and the weighted center worker by worker, in Python floats."""

    per_layer = False

    def __init__(self, hyper, initial, workers):
        super().__init__(hyper, initial, workers)
        self.score_average: list[list[float] | None] = [None] * workers  # g_i (one value, or one per layer)
        self.rounds = 0

    def round(self, workers: list[Params], probe_norms: list[list[float]]) -> tuple[list[Params], RoundInfo]:
        self.rounds += 1
        k, b, lam, m = self.rounds, SMOOTHING, self.hyper.pull, len(workers)
        scores = []
        for i, norms in enumerate(probe_norms):
            if self.per_layer:
                score = list(norms)
            elif self.hyper.grawa_norm == "layer_sum":
                score = [sum(norms)]
            else:
                score = [math.sqrt(sum(v * v for v in norms))]
            if self.hyper.grawa_smoothing:
                prev = self.score_average[i] or [0.0] * len(score)
                self.score_average[i] = [b * g + (1 - b) * s for g, s in zip(prev, score)]
                score = [g / (1 - b**k) for g in self.score_average[i]]
            scores.append(score)
        columns = len(scores[0])
        weights = [[0.0] * columns for _ in range(m)]
        for l in range(columns):
            column = [scores[i][l] for i in range(m)]
            zeros = [i for i in range(m) if column[i] == 0.0]
            for i in range(m):
                if self.hyper.weighting == "uniform":
                    weights[i][l] = 1.0 / m
                elif zeros:
                    weights[i][l] = (1.0 / len(zeros)) if i in zeros else 0.0
                else:
                    weights[i][l] = (1.0 / column[i]) / sum(1.0 / c for c in column)
        self.center = {}
        for l, n in enumerate(workers[0]):
            col = l if self.per_layer else 0
            self.center[n] = sum(weights[i][col] * workers[i][n] for i in range(m))
        new = [{n: (1 - lam) * x + lam * self.center[n] for n, x in w.items()} for w in workers]
        as_tensor = torch.tensor(weights, dtype=torch.float64)
        info = RoundInfo(weights=as_tensor if self.per_layer else as_tensor[:, 0],
                         scores=torch.tensor(scores if self.per_layer else [s[0] for s in scores], dtype=torch.float64))
        return new, info


class LayerGrawaReference(GrawaReference):
    per_layer = True


class GRAWA(Algorithm):
    """Every tau steps, with probe gradients of the summed loss on B samples drawn from the whole set:

        n_i = sum_l ||grad_l f(x_i)||   (MGRAWA; LGRAWA keeps n_i^l per layer)
        n^_i = bias-corrected moving average of n_i (b = 0.9^8), or n_i without smoothing
        w_i = (1/n^_i) / sum_j (1/n^_j);  x_C = sum_i w_i x_i
        x_i <- (1 - lambda) x_i + lambda x_C

    ``weighting="uniform"`` is the control of the weighting: w_i = 1/M and nothing else changes (the
    probe is still drawn, scored and charged, the scores still checked for divergence), so with the
    same seed GRAWA minus its twin is the effect of the inverse-norm weights alone. The twin is
    LocalSGD with GRAWA's lambda and p.

    Evaluated on the uniform average; x_C is reported as the center. Collectives: a one-value
    all-reduce of a non-finite-score flag (so every rank stops at the same round), a MIN all-reduce
    of the smallest score and a SUM all-reduce of the ratios (one value, or one per layer), then the
    SUM all-reduce of the weighted parameters. Defaults (the reference code's sample): tau 32,
    lambda 0.5, p 0.01.
    """

    name = "mgrawa"
    style = Style("MGRAWA", "tab:red", "-")
    twin_style = Style("MGRAWA (uniform)", "tab:red", ":")
    default_tau, default_pull, default_prox = 32, 0.5, 0.01
    hyper_type = GrawaHyper
    needs_probe = True
    center_description = "x_C (GRAWA's weighted center)"
    reference = GrawaReference
    per_layer = False

    @classmethod
    def styles(cls) -> dict[str, Style]:
        """GRAWA and its uniform-weight twin ('<name>+uniform'): the same colour, the twin dotted."""
        return {cls.name: cls.style, f"{cls.name}+uniform": cls.twin_style}

    @classmethod
    def collectives(cls, parameters: int, layers: int) -> list[Collective]:
        normaliser = layers if cls.per_layer else 1
        return [Collective("all_reduce", 1), Collective("all_reduce", normaliser, "min"),
                Collective("all_reduce", normaliser), Collective("all_reduce", parameters)]

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
        if self.hyper.weighting == "uniform":
            weights = torch.full_like(weights, 1.0 / axis.workers)
        center = weighted_center(params, weights, axis)
        params = lerp(params, center, self.hyper.pull)
        return params, GrawaState(center, average, k), RoundInfo(weights=weights, scores=smoothed)


class MGRAWA(GRAWA):
    """Model-level GRAWA: one score n_i = sum_l ||grad_l f(x_i)|| and one weight w_i per worker,
    x_C = sum_i w_i x_i (the GRAWA rule above; its Collectives normalise M scores)."""

    name = "mgrawa"


class LGRAWA(GRAWA):
    """Layer-level GRAWA: per layer l (parameter tensor) n_i^l = ||grad_l f(x_i)||,
    w_i^l = (1/n^_i^l) / sum_j (1/n^_j^l) and x_C^l = sum_i w_i^l x_i^l (the GRAWA rule above; its
    Collectives normalise M x L scores)."""

    name = "lgrawa"
    style = Style("LGRAWA", "tab:olive", "--")
    twin_style = Style("LGRAWA (uniform)", "tab:olive", ":")
    center_description = "x_C (GRAWA's layer-wise weighted center)"
    reference = LayerGrawaReference
    per_layer = True
