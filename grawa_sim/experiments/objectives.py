"""The full-batch training objective of a run and its minimiser (convex problems).

The local SGD of every algorithm minimises, with weight decay wd,

    F(x) = (1/n) sum_k loss(x; s_k) + (wd / 2) ||x||^2          (all parameters, biases included)

over the n training samples s_k. For least squares (``lstsq``, wd = 0) and L2-regularised
logistic regression (``digits`` or ``mnist1d`` with model ``logistic`` and wd > 0) F is convex,
strongly convex in the second case, and `optimum` finds x* and F* = F(x*) with scipy's L-BFGS
in float64, polished by Newton steps with the exact Hessian until ||grad F(x*)|| < 1e-9.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call

from grawa_sim.config import Config, ConfigError, resolve
from grawa_sim.core.collectives import Params
from grawa_sim.flatness.core import Layout

GRAD_TOL = 1e-9


@dataclass(frozen=True)
class Optimum:
    """x* (a parameter dict, float64), F* = F(x*) and ||grad F(x*)||_2."""

    value: float
    params: Params
    grad_norm: float


def objective(config: Config, indices: torch.Tensor | None = None) -> Callable[[Params], torch.Tensor]:
    """F(params) of ``config``'s problem in float64 on the whole training set, or on the samples
    ``indices`` (e.g. one worker's shard); see the module docstring."""
    from grawa_sim.engine.problem import model_and_data
    from grawa_sim.models.losses import per_sample_loss

    cfg = dataclasses.replace(resolve(config), dtype="float64")
    model, data = model_and_data(cfg)
    loss = per_sample_loss(data.classes, data.loss)
    x, y, wd = data.x_train, data.y_train, cfg.weight_decay
    if indices is not None:
        x, y = x[indices], y[indices]

    def full_batch(params: Params) -> torch.Tensor:
        value = loss(functional_call(model, params, (x,)), y).mean()
        if wd:
            value = value + 0.5 * wd * sum(p.double().square().sum() for p in params.values())
        return value

    return full_batch


def initial_params(config: Config) -> Params:
    """The run's common initial point x_0 (seeded by ``config.seed``), float64."""
    from grawa_sim.engine.problem import model_and_data

    model, _ = model_and_data(dataclasses.replace(resolve(config), dtype="float64"))
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def gradient(f: Callable[[Params], torch.Tensor], params: Params) -> tuple[float, Params]:
    """F(params) and grad F(params) (float64)."""
    leaves = {n: p.detach().double().requires_grad_() for n, p in params.items()}
    value = f(leaves)
    grads = torch.autograd.grad(value, list(leaves.values()))
    return float(value.detach()), dict(zip(leaves, grads))


def grad_norm(f: Callable[[Params], torch.Tensor], params: Params) -> float:
    """||grad F(params)||_2 over all parameters."""
    _, grads = gradient(f, params)
    return float(torch.cat([g.flatten() for g in grads.values()]).norm())


def distance(a: Params, b: Params) -> float:
    """||a - b||_2 over all parameters (float64)."""
    return float(sum((a[n].double() - b[n].double()).square().sum() for n in a).sqrt())


def optimum(config: Config, tol: float = GRAD_TOL, indices: torch.Tensor | None = None) -> Optimum:
    """x* and F* of a convex problem (on the samples ``indices`` if given): L-BFGS (scipy), then
    Newton steps until ||grad F|| < ``tol``."""
    from scipy.optimize import minimize

    cfg = resolve(config)
    if cfg.model != "logistic":
        raise ConfigError(f"model: the optimum is computed for the convex model 'logistic' only (got {cfg.model!r})")
    f = objective(cfg, indices)
    start = initial_params(cfg)
    layout = Layout(start)

    def value_and_grad(vec: np.ndarray) -> tuple[float, np.ndarray]:
        value, grads = gradient(f, layout.unflat(torch.from_numpy(vec)))
        return value, layout.flat(grads).numpy()

    found = minimize(value_and_grad, layout.flat(start).numpy(), jac=True, method="L-BFGS-B",
                     options={"maxiter": 20_000, "maxcor": 30, "ftol": 0.0, "gtol": 1e-13})
    vec = torch.from_numpy(found.x)

    def flat_f(v: torch.Tensor) -> torch.Tensor:
        return f(layout.unflat(v))

    for _ in range(20):  # Newton polish: F is smooth and (strongly) convex near x*
        g = torch.func.grad(flat_f)(vec)
        if float(g.norm()) < tol:
            break
        hessian = torch.func.hessian(flat_f)(vec)
        vec = vec - torch.linalg.lstsq(hessian, g.unsqueeze(1)).solution.squeeze(1)
    params = layout.unflat(vec.clone())
    value, norm = float(flat_f(vec)), grad_norm(f, params)
    if norm >= tol:
        raise RuntimeError(f"optimum: gradient norm {norm:.2e} did not fall below {tol:.0e}")
    return Optimum(value, params, norm)
