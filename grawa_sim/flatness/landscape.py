"""Loss landscapes: 1-D / 2-D slices along filter-normalised random directions, and interpolation.

Li, Xu, Taylor, Studer & Goldstein, "Visualizing the Loss Landscape of Neural Nets"
(NeurIPS 2018). Loss values at many points are evaluated in vmapped chunks.
"""

from __future__ import annotations

import pandas as pd
import torch

from grawa_sim.flatness.core import Batched, LossClosure, Params


def random_direction(params: Params, seed: int = 0, filter_normalize: bool = True,
                     ignore_1d: bool = True) -> Params:
    """A seeded Gaussian direction d, filter-normalised to the scale of ``params``.

    Filter normalisation (Li et al. 2018): for every filter d_i of a parameter with
    ndim >= 2 (slice i along dim 0: an output channel of a convolution, a row/neuron of a
    linear layer), d_i <- d_i / ||d_i|| * ||w_i||. Parameters with ndim <= 1 (biases,
    norm-layer scales) get d = 0 when ``ignore_1d`` (Li et al.'s default, "biasbn"),
    else d <- d / ||d|| * ||w||. Draws are float64 in name order, then cast.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, w in params.items():
        d = torch.randn(w.shape, generator=g, dtype=torch.float64).to(w.device)
        w64 = w.detach().double()
        if filter_normalize:
            if w.ndim <= 1:
                d = torch.zeros_like(d) if ignore_1d else d / d.norm().clamp_min(1e-300) * w64.norm()
            else:
                dims = tuple(range(1, w.ndim))
                d = d / d.norm(dim=dims, keepdim=True).clamp_min(1e-300) * w64.norm(dim=dims, keepdim=True)
        out[name] = d.to(w)
    return out


def _losses(loss_fn: LossClosure, points: Params, chunk: int) -> torch.Tensor:
    """Losses [K] at K stacked points (leading dim K), vmapped in chunks of ``chunk``."""
    k = next(iter(points.values())).shape[0]
    out = [Batched(loss_fn, {n: p[i : i + chunk] for n, p in points.items()}).loss() for i in range(0, k, chunk)]
    return torch.cat(out).double()


def _along(params: Params, dirs: list[tuple[Params, torch.Tensor]]) -> Params:
    """Stacked points w + sum_j c_j d_j for coefficient vectors c_j [K]."""
    points = {}
    for name, w in params.items():
        p = w.detach().unsqueeze(0)
        for d, c in dirs:
            p = p + c.to(w).view(-1, *[1] * w.ndim) * d[name].unsqueeze(0)
        points[name] = p
    return points


def _grid(values, default: tuple[float, float, int]) -> torch.Tensor:
    if values is None:
        return torch.linspace(*default, dtype=torch.float64)
    return torch.as_tensor(values, dtype=torch.float64).flatten()


def landscape_1d(loss_fn: LossClosure, params: Params, alphas=None, direction: Params | None = None,
                 seed: int = 0, chunk: int = 64) -> pd.DataFrame:
    """L(w + alpha d) for each alpha (default 41 points in [-1, 1]): columns alpha, loss.

    ``direction`` defaults to ``random_direction(params, seed)`` (filter-normalised, so
    alpha = 1 moves every filter by its own norm).
    """
    a = _grid(alphas, (-1.0, 1.0, 41))
    d = random_direction(params, seed) if direction is None else direction
    return pd.DataFrame({"alpha": a.numpy(), "loss": _losses(loss_fn, _along(params, [(d, a)]), chunk).numpy()})


def landscape_2d(loss_fn: LossClosure, params: Params, alphas=None, betas=None,
                 directions: tuple[Params, Params] | None = None, seed: int = 0, chunk: int = 64) -> pd.DataFrame:
    """L(w + alpha d1 + beta d2) on the grid alphas x betas (default 21 x 21 in [-1, 1]).

    Long format: columns alpha, beta, loss (``df.pivot(index="beta", columns="alpha",
    values="loss")`` gives the surface). ``directions`` default to two filter-normalised
    random directions seeded ``seed`` and ``seed + 1``.
    """
    a, b = _grid(alphas, (-1.0, 1.0, 21)), _grid(betas, (-1.0, 1.0, 21))
    d1, d2 = directions if directions is not None else (random_direction(params, seed),
                                                       random_direction(params, seed + 1))
    aa, bb = torch.meshgrid(a, b, indexing="ij")
    aa, bb = aa.flatten(), bb.flatten()
    loss = _losses(loss_fn, _along(params, [(d1, aa), (d2, bb)]), chunk)
    return pd.DataFrame({"alpha": aa.numpy(), "beta": bb.numpy(), "loss": loss.numpy()})


def interpolate(loss_fn: LossClosure, params_a: Params, params_b: Params, alphas=None,
                chunk: int = 64) -> pd.DataFrame:
    """L((1 - alpha) a + alpha b) on the straight line from ``params_a`` (alpha = 0) to
    ``params_b`` (alpha = 1); default 31 points in [-0.25, 1.25]. Columns alpha, loss."""
    a = _grid(alphas, (-0.25, 1.25, 31))
    diff = {n: params_b[n].detach() - params_a[n].detach() for n in params_a}
    return pd.DataFrame({"alpha": a.numpy(), "loss": _losses(loss_fn, _along(params_a, [(diff, a)]), chunk).numpy()})
