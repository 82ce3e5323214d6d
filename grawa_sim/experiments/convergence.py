"""Convergence experiments: suboptimality and distance to x* (convex), min gradient norm (non-convex).

Convex (`convex_trajectory`): along a run, at every evaluation, the evaluated model x̄_t gives
F(x̄_t) - F* and ||x̄_t - x*|| (grawa_sim/experiments/objectives.py). SGD on a mu-strongly convex F with
lr_t = lr / (1 + t / t0) and lr * t0 * mu > 1 has E[F(x_t)] - F* = O(1/t); a constant lr
converges linearly to a noise floor of order lr * sigma^2 (sigma^2: gradient noise variance).
`loglog_slope` fits log(value) = a + s log(t) by least squares over a range of steps.

Non-convex (`min_grad_norms`): for horizons T, a run of T steps with lr = c / sqrt(T) and
min_{t <= T} ||grad F(x̄_t)||^2 over its evaluations; SGD guarantees O(1/sqrt(T)).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from grawa_sim import algorithms as algorithms_
from grawa_sim.algorithms import COMPARED
from grawa_sim.config import Config, resolve
from grawa_sim.core import stats
from grawa_sim.engine.runner import run
from grawa_sim.experiments.objectives import Optimum, distance, grad_norm, gradient, objective, optimum
from grawa_sim.experiments.presets import method_name
from grawa_sim.results.storage import cached_csv
from grawa_sim.results.sweep import run_key


@dataclass(frozen=True)
class Problem:
    """A convex problem and its learning rates: two constant ones and the decaying lr0 / (1 + t / t0)."""

    base: Config
    lrs: tuple[float, ...]
    lr0: float
    t0: float


CONVEX_PROBLEMS = {
    "lstsq": Problem(Config(dataset="lstsq", model="logistic", weight_decay=0.0, batch_size=64, tau=4),
                     lrs=(0.02, 0.2), lr0=0.2, t0=50),
    "logistic": Problem(Config(dataset="digits", model="logistic", weight_decay=0.05, batch_size=64, tau=4),
                        lrs=(0.1, 1.0), lr0=1.0, t0=200),
}
PROBLEM_LABELS = {"lstsq": "least squares (synthetic, d = 16)",
                  "logistic": "L2-regularised logistic regression (sklearn digits, wd = 0.05)"}


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
                   algorithms: tuple[str, ...] = COMPARED, seeds: int = 1, evaluations: int = 100) -> list[Config]:
    """Every seed x algorithm x M x schedule on a convex problem (plain SGD, momentum 0, tau of the problem,
    float64): constant lr at each of the problem's two ``lrs`` and the inverse decay lr0 / (1 + t / t0), for
    seeds 0 .. ``seeds`` - 1 (seed 0's configs first); about ``evaluations`` evaluations per run. A name
    ``<grawa>+uniform`` in ``algorithms`` is GRAWA's uniform-weight twin."""
    spec = CONVEX_PROBLEMS[problem]
    tau = spec.base.tau
    base = dataclasses.replace(spec.base, momentum=0.0, steps=steps, dtype="float64",
                               eval_every=max(tau, steps // evaluations // tau * tau))
    configs = []
    for seed in range(seeds):
        for name in algorithms:
            algorithm, _, twin = name.partition("+")
            own = {"algorithm": algorithm, "seed": seed, "weighting": "uniform" if twin == "uniform" else None,
                   "tau": None if algorithms_.get(algorithm).communicates_every_step else tau}
            for m in workers:
                for lr in spec.lrs:
                    configs.append(dataclasses.replace(base, workers=m, lr=lr, **own))
                configs.append(dataclasses.replace(base, workers=m, lr=spec.lr0, lr_schedule="inverse",
                                                   lr_t0=spec.t0, **own))
    return configs


def schedule_label(config: Config) -> str:
    if config.lr_schedule == "inverse":
        return f"η₀/(1+t/{config.lr_t0:g}), η₀={config.lr:g}"
    return f"constant η={config.lr:g}"


def _convex_one(config: Config, best: Optimum, cache: str | os.PathLike | None) -> pd.DataFrame:
    path = None if cache is None else Path(cache) / f"{run_key(resolve(config))}.csv"
    return cached_csv(path, lambda: convex_trajectory(config, best))


def convex_study(problem: str, configs: list[Config], cache: str | os.PathLike | None = None,
                 progress: bool = False, jobs: int = 1) -> pd.DataFrame:
    """Trajectories of every config in long format (problem, algorithm, workers, schedule, lr, decaying, seed,
    step, subopt, dist), by ``jobs`` processes of one torch thread each. With ``cache``, each run's trajectory
    is kept in ``cache/<run key>.csv`` and reused, so an interrupted study resumes where it stopped."""
    from tqdm.auto import tqdm

    best = optimum(configs[0])
    if jobs > 1 and len(configs) > 1:
        from concurrent.futures import as_completed

        from grawa_sim.core.processes import process_pool

        with process_pool(min(jobs, len(configs))) as pool:
            futures = [pool.submit(_convex_one, cfg, best, cache) for cfg in configs]
            for future in tqdm(as_completed(futures), total=len(futures), desc=problem, disable=not progress):
                future.result()
        trajectories = [future.result() for future in futures]
    else:
        trajectories = [_convex_one(cfg, best, cache) for cfg in tqdm(configs, desc=problem, disable=not progress)]
    return pd.concat([frame.assign(problem=problem, algorithm=method_name(cfg.algorithm, False, cfg.weighting),
                                   workers=cfg.workers,
                                   schedule=schedule_label(cfg), lr=cfg.lr, decaying=cfg.lr_schedule == "inverse",
                                   seed=cfg.seed) for cfg, frame in zip(configs, trajectories)], ignore_index=True)


RUN = ["problem", "algorithm", "workers"]  # one curve per seed under the decaying lr; constant lrs add "lr"


def _runs(study: pd.DataFrame, keys: list[str]):
    """(key values, one run's rows) per ``keys`` + seed (a study without a ``seed`` column: seed 0)."""
    seeds = study["seed"] if "seed" in study else pd.Series(0, index=study.index)
    for key, g in study.assign(seed=seeds).groupby([*keys, "seed"], sort=False):
        yield dict(zip([*keys, "seed"], key)), g


def slopes(study: pd.DataFrame, start_fraction: float = 0.1, per_seed: bool = False) -> pd.DataFrame:
    """Fitted log-log slopes of subopt and dist over the last (1 - start_fraction) decade share of each
    decaying-lr run: steps in [start_fraction * T, T]. O(1/t) means -1 for subopt and -1/2 for dist.
    Fitted per seed; per (problem, algorithm, workers) the mean over seeds with its 95 % t half-width
    (``slope_subopt_ci95``, ``slope_dist_ci95``) and ``seeds``; ``per_seed``: the per-seed fits instead."""
    rows = []
    for key, g in _runs(study[study["decaying"]], RUN):
        end = g["step"].max()
        rows.append(key | {"slope_subopt": loglog_slope(g["step"], g["subopt"], start_fraction * end, end),
                           "slope_dist": loglog_slope(g["step"], g["dist"], start_fraction * end, end)})
    table = pd.DataFrame(rows, columns=[*RUN, "seed", "slope_subopt", "slope_dist"])
    return table if per_seed else stats.means_with_ci(table, RUN, ["slope_subopt", "slope_dist"], count="seeds")


def reductions(study: pd.DataFrame, per_seed: bool = False) -> pd.DataFrame:
    """Per decaying-lr run: F(x̄_T) − F* relative to F(x_0) − F* (``reduction``) and the final distance to x*;
    per (problem, algorithm, workers) the mean over seeds with 95 % t half-widths and ``seeds`` (``per_seed``:
    one row per run)."""
    rows = []
    for key, g in _runs(study[study["decaying"]], RUN):
        g = g.sort_values("step")
        rows.append(key | {"reduction": g["subopt"].iloc[-1] / g["subopt"].iloc[0], "final_dist": g["dist"].iloc[-1]})
    table = pd.DataFrame(rows, columns=[*RUN, "seed", "reduction", "final_dist"])
    return table if per_seed else stats.means_with_ci(table, RUN, ["reduction", "final_dist"], count="seeds")


def plateaus(study: pd.DataFrame, tail: float = 0.25, per_seed: bool = False) -> pd.DataFrame:
    """Mean suboptimality over the last ``tail`` share of steps of every constant-lr run (the noise floor);
    per (problem, algorithm, workers, lr) the mean over seeds with its 95 % t half-width (``floor_ci95``) and
    ``seeds`` (``per_seed``: one row per run)."""
    rows = []
    for key, g in _runs(study[~study["decaying"]], [*RUN, "lr"]):
        last = g[g["step"] >= (1 - tail) * g["step"].max()]
        rows.append(key | {"floor": float(last["subopt"].mean())})
    table = pd.DataFrame(rows, columns=[*RUN, "lr", "seed", "floor"])
    return table if per_seed else stats.means_with_ci(table, [*RUN, "lr"], ["floor"], count="seeds")


NONCONVEX = Config(dataset="mnist1d", model="mlp", momentum=0.0, weight_decay=0.0, batch_size=32, tau=8)


def min_grad_norms(config: Config, horizons: tuple[int, ...], lr_scale: float,
                   cache: str | os.PathLike | None = None) -> pd.DataFrame:
    """For each T in ``horizons``: a run of T steps at lr = lr_scale / sqrt(T), and over its evaluations
    t = 0, ..., T (full-batch F of the training set, about 50 evaluations per run) the min and the mean of
    ||grad F(x̄_t)||^2, and the last. SGD theory bounds the mean over iterates (hence the min) by
    O(1/sqrt T); the min includes the initial point, whose gradient can be the smallest of the run (a
    network near its initialisation sits in a flat region), so the mean is the informative one.
    ``cache``: one CSV per run, reused (see `convex_study`)."""
    rows = []
    for horizon in horizons:
        tau = config.tau or 1  # DP: every step
        cfg = dataclasses.replace(config, steps=horizon, lr=lr_scale / math.sqrt(horizon),
                                  eval_every=max(tau, horizon // 50 // tau * tau))

        def compute(cfg: Config = cfg) -> pd.DataFrame:
            f = objective(cfg)
            norms: list[float] = []
            run(cfg, progress=False, on_evaluate=lambda step, p: norms.append(grad_norm(f, p) ** 2))
            return pd.DataFrame([{"algorithm": cfg.algorithm, "workers": cfg.workers, "T": cfg.steps, "lr": cfg.lr,
                                  "min_grad_sq": min(norms), "mean_grad_sq": float(np.mean(norms)),
                                  "final_grad_sq": norms[-1], "argmin_is_start": int(np.argmin(norms) == 0)}])

        path = None if cache is None else Path(cache) / f"{run_key(resolve(cfg))}-mean.csv"
        rows.append(cached_csv(path, compute))
    return pd.concat(rows, ignore_index=True)


def horizon_slopes(table: pd.DataFrame, value: str = "min_grad_sq") -> pd.DataFrame:
    """Per algorithm: the log-log slope of ``value`` (min or mean ||grad F||^2) against the horizon T (O(1/sqrt
    T): -1/2 or below), fitted per seed; the mean over seeds with its 95 % t-interval (seeds are the
    independent units; one seed: no interval)."""
    seeds = table["seed"] if "seed" in table else pd.Series(0, index=table.index)
    rows = []
    for a, g in table.assign(seed=seeds).groupby("algorithm", sort=False):
        per_seed = [loglog_slope(one["T"], one[value], one["T"].min(), one["T"].max())
                    for _, one in g.groupby("seed")]
        ci = stats.interval(per_seed)
        rows.append({"algorithm": a, "workers": int(g["workers"].iloc[0]), "value": value, "slope": ci.mean,
                     "slope_ci95": ci.half_width, "seeds": ci.n})
    return pd.DataFrame(rows)


def horizon_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per algorithm and horizon T: the min and the mean of ||grad F||^2 over the run (mean over seeds with its
    95 % half-width), and the share of runs whose min is the initial point."""
    values = [v for v in ("min_grad_sq", "mean_grad_sq") if v in table]
    parts = [stats.describe(table, ["algorithm", "T"], v)[["mean", "ci95"]].add_prefix(f"{v}_") for v in values]
    groups = table.groupby(["algorithm", "T"], sort=False)
    if "argmin_is_start" in table:
        parts.append(groups["argmin_is_start"].mean().rename("min_at_start"))
    return pd.concat([*parts, groups.size().rename("n")], axis=1).reset_index()


def _nonconvex_one(config: Config, horizons: tuple[int, ...], lr_scale: float, cache) -> pd.DataFrame:
    return min_grad_norms(config, horizons, lr_scale, cache).assign(seed=config.seed)


def nonconvex_study(algorithms: tuple[str, ...], horizons: tuple[int, ...], lr_scale: float = 4.0,
                    base: Config = NONCONVEX, cache: str | os.PathLike | None = None,
                    progress: bool = False, seeds: int = 1, jobs: int = 1) -> pd.DataFrame:
    """`min_grad_norms` of every algorithm (its own tau, pull and prox defaults unless ``base`` sets them; a
    name ``<grawa>+uniform`` is GRAWA's uniform-weight twin) for seeds 0 .. ``seeds`` - 1, by ``jobs``
    processes of one torch thread each; the column ``algorithm`` holds the method name."""
    from tqdm.auto import tqdm

    configs = []
    for name in algorithms:
        algorithm, _, twin = name.partition("+")
        every_step = algorithms_.get(algorithm).communicates_every_step
        one = dataclasses.replace(base, algorithm=algorithm, tau=None if every_step else base.tau,
                                  weighting="uniform" if twin == "uniform" else None)
        configs += [(name, dataclasses.replace(one, seed=seed)) for seed in range(seeds)]
    if jobs > 1 and len(configs) > 1:
        from concurrent.futures import as_completed

        from grawa_sim.core.processes import process_pool

        with process_pool(min(jobs, len(configs))) as pool:
            futures = [pool.submit(_nonconvex_one, cfg, horizons, lr_scale, cache) for _, cfg in configs]
            for future in tqdm(as_completed(futures), total=len(futures), desc="non-convex", disable=not progress):
                future.result()
        parts = [future.result().assign(algorithm=name) for future, (name, _) in zip(futures, configs)]
    else:
        parts = [_nonconvex_one(cfg, horizons, lr_scale, cache).assign(algorithm=name)
                 for name, cfg in tqdm(configs, desc="non-convex", disable=not progress)]
    return pd.concat(parts, ignore_index=True)


__all__ = ["CONVEX_PROBLEMS", "NONCONVEX", "PROBLEM_LABELS", "Problem", "convex_configs", "convex_study",
           "convex_trajectory", "gradient", "horizon_slopes", "horizon_summary", "loglog_slope", "min_grad_norms",
           "nonconvex_study", "plateaus", "reductions", "schedule_label", "slopes"]
