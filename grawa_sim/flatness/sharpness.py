"""epsilon-sharpness (Keskar et al. 2017) by projected sign-gradient ascent in a box."""

from __future__ import annotations

import torch

from grawa_sim.flatness.core import Batched, LossClosure, Params, single


def stacked_epsilon_sharpness(op: Batched, eps: float = 1e-3, steps: int = 20, restarts: int = 1,
                              seed: int = 0) -> torch.Tensor:
    """epsilon-sharpness in % of every model at once, [M] (see `epsilon_sharpness`)."""
    if eps < 0 or steps < 0 or restarts < 1:
        raise ValueError(f"epsilon_sharpness: eps, steps >= 0, restarts >= 1 (got {eps}, {steps}, {restarts})")
    x0 = op.x0
    f0 = op.loss().double()
    radius = eps * (x0.abs() + 1)
    best = f0.clone()
    for r in range(restarts):
        g = torch.Generator().manual_seed(seed + 7919 * r)
        delta = (torch.rand(op.size, generator=g, dtype=torch.float64) * 2 - 1).to(x0) * radius
        for t in range(steps):
            f, grad = op.value_and_grad(x0 + delta)
            best = torch.maximum(best, f.double())
            step = 4.0 / (steps + 1) * (1 - t / steps)
            delta = torch.clamp(delta + step * radius * grad.sign(), -radius, radius)
        best = torch.maximum(best, op.loss(x0 + delta).double())
    return 100 * (best - f0) / (1 + f0)


def epsilon_sharpness(loss_fn: LossClosure, params: Params, eps: float = 1e-3, steps: int = 20,
                      restarts: int = 1, seed: int = 0) -> float:
    """Keskar et al. (2017) epsilon-sharpness of ``loss_fn`` at w = ``params``, in percent.

        phi(w, eps) = 100 * (max_{delta in C} L(w + delta) - L(w)) / (1 + L(w)),
        C = {delta : |delta_j| <= eps * (|w_j| + 1) for every coordinate j}

    (the full-space box, A = I in Keskar's notation; the "+ 1" in the denominator is
    Keskar's and keeps the ratio finite at zero loss). The maximum is searched by projected
    sign-gradient ascent, delta <- clip(delta + a_t * r * sign(grad L(w + delta)), -r, r),
    r = eps * (|w| + 1), with a_t = 4 / (steps + 1) * (1 - t / steps) (about two box widths
    in all), from ``restarts`` seeded uniform random points of the box; the largest loss
    seen at any iterate (and at w itself) counts, so the result is >= 0 and exactly 0 at
    eps = 0. It is a lower bound of the true maximum (a local search; more restarts help).
    """
    return float(stacked_epsilon_sharpness(single(loss_fn, params), eps, steps, restarts, seed)[0])
