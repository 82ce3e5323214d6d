"""Does inverse-norm weighting bias the fixed point when the shards differ?

On a strongly convex problem every averaging rule with a decaying lr settles near a point; with IID
shards that point is the minimiser x* of the full objective F. With label-skewed shards a weighted
average whose weights depend on the workers' gradients need not settle at x*: this study measures
where each method ends. Declared before it runs: L2-regularised logistic regression on sklearn's
digits (wd = 0.05, F strongly convex, x* by L-BFGS and Newton to ||∇F|| < 1e-9), M = 8 workers on
Dirichlet(0.1) shards (fixed; same seed, same shards for every method), B = 64, plain SGD (momentum
0), lr 1.0 / (1 + t / 200), τ = 4, 20 000 local steps, float64, 10 seeds batched. Methods: MGRAWA
(λ 0.5, p 0.01), its uniform twin, LocalSGD (λ 1) and DP. Metrics at the end: F(x̄_T) − F*,
‖x̄_T − x*‖ (x̄: the evaluated model) and ‖x_C − x*‖ (the algorithm's own center). The family:
MGRAWA − twin, MGRAWA − LocalSGD and MGRAWA − DP on each of F(x̄_T) − F* and ‖x̄_T − x*‖, paired by
seed, Holm over the six.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pandas as pd

from grawa_sim.algorithms.grawa import DivergenceError
from grawa_sim.config import Config, resolve
from grawa_sim.engine.run_many import run_many
from grawa_sim.engine.runner import run
from grawa_sim.experiments import protocol
from grawa_sim.experiments.convergence import CONVEX_PROBLEMS
from grawa_sim.experiments.objectives import distance, objective, optimum
from grawa_sim.experiments.presets import by_mode, method_name, with_twins
from grawa_sim.results.storage import write_csv_atomic
from grawa_sim.results.sweep import run_key

METHODS = ("mgrawa", "localsgd", "dp")  # and MGRAWA's twin
METRICS = ("subopt", "dist")
SEEDS = 10


def configs(quick: bool, seeds: int | None = None, steps: int | None = None, workers: int = 8,
            alpha: float = 0.1, algorithms: tuple[str, ...] = METHODS) -> list[Config]:
    """The study's runs (full: 20 000 steps, 10 seeds; quick: 200 steps, 2 seeds)."""
    spec = CONVEX_PROBLEMS["logistic"]
    steps = by_mode(steps, quick, 200, 20_000)
    base = dataclasses.replace(spec.base, momentum=0.0, steps=steps, dtype="float64", workers=workers,
                               partition="dirichlet", alpha=alpha, lr=spec.lr0, lr_schedule="inverse",
                               lr_t0=spec.t0, eval_every=steps)
    out = []
    for algorithm in algorithms:
        tau = None if algorithm == "dp" else spec.base.tau
        for seed in range(by_mode(seeds, quick, 2, SEEDS)):
            out.append(dataclasses.replace(base, algorithm=algorithm, tau=tau, seed=seed))
    return with_twins(out)


def family() -> protocol.Family:
    return protocol.Family("fixed point", "localsgd", (("mgrawa", "mgrawa+uniform"), ("mgrawa", "localsgd"),
                                                       ("mgrawa", "dp")), metric="dist", higher_is_better=False)


def _identity(config: Config) -> dict:
    return {"method": method_name(config.algorithm, config.sam, config.weighting), "algorithm": config.algorithm,
            "weighting": config.weighting, "sam": config.sam, "seed": config.seed, "run": run_key(resolve(config)),
            "step": config.steps}


def _row(config: Config, result, f, best) -> dict:
    evaluated = {n: p.double() for n, p in result.evaluated.items()}
    center = {n: p.double() for n, p in result.center.items()}
    return {**_identity(config), "status": "finished",
            "subopt": float(f(evaluated)) - best.value, "dist": distance(evaluated, best.params),
            "dist_center": distance(center, best.params), "spread": float(result.final["spread"])}


def study(configs_: list[Config], cache: str | os.PathLike | None = None) -> pd.DataFrame:
    """One final row per run (method, seed, subopt, dist, dist_center, spread); runs of one method train as
    one ensemble; with ``cache`` each run's row is kept in ``cache/<run key>.csv`` and reused."""
    best = optimum(configs_[0])
    f = objective(configs_[0])
    rows, missing = {}, {}
    for cfg in configs_:
        path = None if cache is None else Path(cache) / f"{run_key(resolve(cfg))}.csv"
        if path is not None and path.is_file():
            rows[cfg] = pd.read_csv(path).iloc[0].to_dict()
        else:
            missing.setdefault((cfg.algorithm, cfg.weighting), []).append((cfg, path))
    for group in missing.values():
        for (cfg, path), row in zip(group, _train([c for c, _ in group], f, best)):
            rows[cfg] = row
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_csv_atomic(pd.DataFrame([row]), path)
    return pd.DataFrame([rows[c] for c in configs_])


def _train(group: list[Config], f, best) -> list[dict]:
    """The rows of one ensemble; when a run diverges the ensemble is trained again run by run, and a diverged
    run is kept as a row with status "diverged" and NaN metrics (counted by the tables, never dropped)."""
    try:
        return [_row(c, r, f, best) for c, r in zip(group, run_many(group, progress=False))]
    except DivergenceError:
        rows = []
        for cfg in group:
            try:
                rows.append(_row(cfg, run(cfg, progress=False), f, best))
            except DivergenceError:
                nan = float("nan")
                rows.append({**_identity(cfg), "status": "diverged", "subopt": nan, "dist": nan,
                             "dist_center": nan, "spread": nan})
        return rows


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean ± 95 % half-width over finished seeds of F(x̄_T) − F*, ‖x̄_T − x*‖ and ‖x_C − x*‖,
    ``n`` finished of ``total`` runs."""
    from grawa_sim.core import stats

    out = {}
    for metric in ("subopt", "dist", "dist_center"):
        d = stats.describe(table, "method", metric)
        out[f"{metric}_mean"], out[f"{metric}_ci95"] = d["mean"], d["ci95"]
        out["n"] = d["n"]
    out["total"] = table.groupby("method", sort=False).size()
    return pd.DataFrame(out)


def contrasts(table: pd.DataFrame) -> pd.DataFrame:
    """The declared family on both metrics, paired by seed, Holm over all six (lower is better: a negative
    difference means MGRAWA ends nearer x*)."""
    from grawa_sim.core import stats

    rows = [protocol.compare(table, dataclasses.replace(family(), metric=m), classes=None).assign(metric=m)
            for m in METRICS]
    joined = pd.concat(rows, ignore_index=True)
    joined["p_holm"] = stats.holm(joined["p"].to_numpy(float))
    joined["significant_holm"] = joined["p_holm"] < stats.ALPHA
    return joined
