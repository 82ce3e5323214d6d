"""Convergence experiments: suboptimality and distance to x* (convex), min gradient norm (non-convex).

Convex (`convex_trajectory`): along a run, at every evaluation, the evaluated model x̄_t gives
F(x̄_t) - F* and ||x̄_t - x*|| (grawa_sim/objectives.py). SGD on a mu-strongly convex F with
lr_t = lr / (1 + t / t0) and lr * t0 * mu > 1 has E[F(x_t)] - F* = O(1/t); a constant lr
converges linearly to a noise floor of order lr * sigma^2 (sigma^2: gradient noise variance).
`loglog_slope` fits log(value) = a + s log(t) by least squares over a range of steps.

Non-convex (`min_grad_norms`): for horizons T, a run of T steps with lr = c / sqrt(T) and
min_{t <= T} ||grad F(x̄_t)||^2 over its evaluations; SGD guarantees O(1/sqrt(T)).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from grawa_sim.algorithms import COMPARED
from grawa_sim.config import Config
from grawa_sim.objectives import Optimum, distance, grad_norm, gradient, objective, optimum
from grawa_sim.runner import run

CONVEX_PROBLEMS = {
    "lstsq": Config(dataset="lstsq", model="logistic", weight_decay=0.0, batch_size=8),
    "logistic": Config(dataset="digits", model="logistic", weight_decay=1e-2, batch_size=8),
}


def convex_trajectory(config: Config, best: Optimum | None = None) -> pd.DataFrame:
    """One run of ``config``: step, F(x̄_t) - F* (``subopt``) and ||x̄_t - x*|| (``dist``) at every evaluation."""
    best = best or optimum(config)
    f = objective(config)
    rows = []

    def record(step: float, params) -> None:
        value = float(f({n: p.double() for n, p in params.items()}))
        rows.append({"step": step, "subopt": value - best.value, "dist": distance(params, best.params)})

    run(config, progress=False, on_evaluate=record)
    return pd.DataFrame(rows)


def loglog_slope(steps: np.ndarray | pd.Series, values: np.ndarray | pd.Series, start: float, end: float) -> float:
    """Least-squares slope of log(values) against log(steps) over start <= step <= end (positive values)."""
    t, v = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    keep = (t >= start) & (t <= end) & (v > 0) & np.isfinite(v)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(t[keep]), np.log(v[keep]), 1)[0])


def convex_configs(problem: str, steps: int, workers: tuple[int, ...] = (4, 16),
                   lrs: tuple[float, ...] = (0.05, 0.2), lr0: float = 0.2, t0: float = 200,
                   algorithms: tuple[str, ...] = COMPARED, tau: int = 8, seed: int = 0) -> list[Config]:
    """Every algorithm x M x schedule on a convex problem (plain SGD, momentum 0, common tau):
    constant lr at each of ``lrs`` and the inverse decay lr0 / (1 + t / t0)."""
    base = dataclasses.replace(CONVEX_PROBLEMS[problem], momentum=0.0, steps=steps, tau=tau, seed=seed,
                               dtype="float64", eval_every=tau)
    configs = []
    for algorithm in algorithms:
        for m in workers:
            for lr in lrs:
                configs.append(dataclasses.replace(base, algorithm=algorithm, workers=m, lr=lr))
            configs.append(dataclasses.replace(base, algorithm=algorithm, workers=m, lr=lr0,
                                               lr_schedule="inverse", lr_t0=t0))
    return configs


def schedule_label(config: Config) -> str:
    if config.lr_schedule == "inverse":
        return f"η₀/(1+t/{config.lr_t0:g}), η₀={config.lr:g}"
    return f"constant η={config.lr:g}"


def convex_study(problem: str, configs: list[Config], progress: bool = False) -> pd.DataFrame:
    """Trajectories of every config in long format with columns algorithm, workers, schedule, step, subopt, dist."""
    from tqdm.auto import tqdm

    best = optimum(configs[0])
    frames = []
    for cfg in tqdm(configs, desc=problem, disable=not progress):
        frame = convex_trajectory(cfg, best)
        frames.append(frame.assign(problem=problem, algorithm=cfg.algorithm, workers=cfg.workers,
                                   schedule=schedule_label(cfg), lr=cfg.lr, decaying=cfg.lr_schedule == "inverse"))
    return pd.concat(frames, ignore_index=True)


def slopes(study: pd.DataFrame, start_fraction: float = 0.1) -> pd.DataFrame:
    """Fitted log-log slopes of subopt and dist over the last (1 - start_fraction) decade share of each
    decaying-lr run: steps in [start_fraction * T, T]. O(1/t) means -1 for subopt and -1/2 for dist."""
    rows = []
    for (problem, algorithm, workers), g in study[study["decaying"]].groupby(["problem", "algorithm", "workers"],
                                                                            sort=False):
        end = g["step"].max()
        rows.append({"problem": problem, "algorithm": algorithm, "workers": workers,
                     "slope_subopt": loglog_slope(g["step"], g["subopt"], start_fraction * end, end),
                     "slope_dist": loglog_slope(g["step"], g["dist"], start_fraction * end, end)})
    return pd.DataFrame(rows)


def plateaus(study: pd.DataFrame, tail: float = 0.25) -> pd.DataFrame:
    """Mean suboptimality over the last ``tail`` share of steps of every constant-lr run (the noise floor)."""
    constant = study[~study["decaying"]]
    rows = []
    for key, g in constant.groupby(["problem", "algorithm", "workers", "lr"], sort=False):
        last = g[g["step"] >= (1 - tail) * g["step"].max()]
        rows.append(dict(zip(["problem", "algorithm", "workers", "lr"], key), floor=float(last["subopt"].mean())))
    return pd.DataFrame(rows)


NONCONVEX = Config(dataset="mnist1d", model="mlp", momentum=0.0, weight_decay=0.0, batch_size=32, tau=8)


def min_grad_norms(config: Config, horizons: tuple[int, ...], lr_scale: float) -> pd.DataFrame:
    """For each T in ``horizons``: a run of T steps at lr = lr_scale / sqrt(T), and
    min over its evaluations t <= T of ||grad F(x̄_t)||^2 (full-batch F of the training set)."""
    rows = []
    for horizon in horizons:
        cfg = dataclasses.replace(config, steps=horizon, lr=lr_scale / math.sqrt(horizon),
                                  eval_every=max(config.tau, horizon // 50 // config.tau * config.tau))
        f = objective(cfg)
        norms = []
        run(cfg, progress=False, on_evaluate=lambda step, p, f=f, norms=norms: norms.append(grad_norm(f, p) ** 2))
        rows.append({"algorithm": cfg.algorithm, "workers": cfg.workers, "T": horizon, "lr": cfg.lr,
                     "min_grad_sq": min(norms), "final_grad_sq": norms[-1]})
    return pd.DataFrame(rows)


__all__ = ["CONVEX_PROBLEMS", "NONCONVEX", "convex_configs", "convex_study", "convex_trajectory", "gradient",
           "loglog_slope", "min_grad_norms", "plateaus", "schedule_label", "slopes"]
