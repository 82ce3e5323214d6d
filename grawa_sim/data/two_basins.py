"""A synthetic landscape with a sharp and a wide basin of equal depth, in d dimensions.

    F(x) = (kappa / 2) ||x||^2 - A_s exp(-||x - a||^2 / (2 s_s^2)) - A_w exp(-||x - b||^2 / (2 s_w^2))

with a = -c e_1 (the sharp basin, width s_s) and b = +c e_1 (the wide basin, width s_w > s_s).
A_s = 1 and A_w is set so that both local minima have the same value F*: neither basin is
deeper, only the curvature differs (about A/s^2 at the bottom, plus kappa).

Stochastic gradients: a sample is a noise vector xi ~ N(0, sigma^2 I) and its loss is
F(x) + xi . x, so a minibatch gradient is grad F(x) plus zero-mean noise of variance sigma^2/B
per coordinate. As a data set (``dataset="two_basins"``, 2-D) with the model ``point`` (the
parameters are the point x; its output on a sample is that sample's loss), it runs through
`grawa_sim.run` like any other problem.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Landscape:
    """Shape of the two-basins function; ``wide_depth`` is A_w (computed by `landscape`)."""

    dim: int = 2
    separation: float = 1.5  # c: the basins sit at -c e_1 (sharp) and +c e_1 (wide)
    sharp_width: float = 0.25  # s_s
    wide_width: float = 0.8  # s_w
    bowl: float = 0.05  # kappa
    wide_depth: float = 1.0  # A_w

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """F at points x [..., d] -> [...]."""
        e1 = torch.zeros(self.dim, dtype=x.dtype, device=x.device)
        e1[0] = self.separation
        sharp = torch.exp(-(x + e1).square().sum(-1) / (2 * self.sharp_width**2))
        wide = torch.exp(-(x - e1).square().sum(-1) / (2 * self.wide_width**2))
        return 0.5 * self.bowl * x.square().sum(-1) - sharp - self.wide_depth * wide

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """grad F at points x [..., d]."""
        x = x.detach().requires_grad_()
        return torch.autograd.grad(self.value(x).sum(), x)[0]


def _axis_minimum(shape: Landscape, start: float) -> tuple[float, float]:
    """(position, value) of the local minimum on the e_1 axis nearest ``start`` (F is symmetric around it)."""
    from scipy.optimize import minimize_scalar

    def f(t: float) -> float:
        x = torch.zeros(shape.dim, dtype=torch.float64)
        x[0] = t
        return float(shape.value(x))

    width = shape.sharp_width if start < 0 else shape.wide_width
    found = minimize_scalar(f, bounds=(start - 2 * width, start + 2 * width), method="bounded",
                            options={"xatol": 1e-12})
    return float(found.x), float(found.fun)


@functools.lru_cache(maxsize=16)
def landscape(dim: int = 2, separation: float = 1.5, sharp_width: float = 0.25, wide_width: float = 0.8,
              bowl: float = 0.05) -> Landscape:
    """The landscape with A_w solved (bisection) so that the two minima have equal value to 1e-10."""
    from scipy.optimize import brentq

    def gap(depth: float) -> float:
        shape = Landscape(dim, separation, sharp_width, wide_width, bowl, depth)
        return _axis_minimum(shape, separation)[1] - _axis_minimum(shape, -separation)[1]

    depth = brentq(gap, 0.5, 1.5, xtol=1e-13)
    return Landscape(dim, separation, sharp_width, wide_width, bowl, depth)


@dataclass(frozen=True)
class Basins:
    """Both minima, the ridge point between them on the e_1 axis, and the curvatures at the minima."""

    sharp: torch.Tensor  # [d]
    wide: torch.Tensor
    ridge: torch.Tensor
    value: float  # F at both minima
    sharp_curvature: float  # largest Hessian eigenvalue at the sharp minimum
    wide_curvature: float


@functools.lru_cache(maxsize=16)
def basins(shape: Landscape) -> Basins:
    """Computed once per landscape (treat the returned tensors as read-only)."""
    from scipy.optimize import minimize_scalar

    def point(t: float) -> torch.Tensor:
        x = torch.zeros(shape.dim, dtype=torch.float64)
        x[0] = t
        return x

    (s, fs), (w, _) = _axis_minimum(shape, -shape.separation), _axis_minimum(shape, shape.separation)
    ridge = minimize_scalar(lambda t: -float(shape.value(point(t))), bounds=(s, w), method="bounded",
                            options={"xatol": 1e-12}).x

    def curvature(x: torch.Tensor) -> float:
        return float(torch.linalg.eigvalsh(torch.autograd.functional.hessian(shape.value, x)).max())

    return Basins(point(s), point(w), point(ridge), fs, curvature(point(s)), curvature(point(w)))


def flow_to_basin(shape: Landscape, x: torch.Tensor, steps: int = 3000) -> torch.Tensor:
    """Which basin gradient descent from each point x [N, d] ends in: True for the wide one.

    Plain gradient descent with a step below 1 / (largest curvature) follows the gradient flow; the
    end point is assigned to the nearer minimum.
    """
    where = basins(shape)
    lr = 0.5 / max(where.sharp_curvature, where.wide_curvature)
    x = x.detach().to(torch.float64).clone()
    for _ in range(steps):
        x = x - lr * shape.gradient(x)
    return (x - where.wide).norm(dim=-1) < (x - where.sharp).norm(dim=-1)


class Point(nn.Module):
    """The parameters are a point x in R^d; the output on a noise sample xi is its loss F(x) + xi . x."""

    def __init__(self, shape: Landscape, start: torch.Tensor | None = None):
        super().__init__()
        self.shape = shape
        self.x = nn.Parameter(torch.zeros(shape.dim) if start is None else start.clone())

    def forward(self, xi: torch.Tensor) -> torch.Tensor:
        return self.shape.value(self.x) + xi @ self.x


def noise_samples(dim: int, n: int, sigma: float, seed: int) -> torch.Tensor:
    """n noise vectors xi ~ N(0, sigma^2 I) from a seeded generator (float64)."""
    rng = np.random.default_rng(seed)
    return torch.tensor(sigma * rng.standard_normal((n, dim)))
