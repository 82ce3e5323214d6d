"""Crowded settings: every compared algorithm with M = 2 ... 128 workers, in two regimes.

- ``fixed steps``: every worker takes the same number of local steps whatever M (more workers
  process more samples in all);
- ``fixed samples``: the workers together process the same number of samples S, so each takes
  S / (M · B) local steps (more workers, fewer steps each).

The tables: final test accuracy per M; GRAWA (MGRAWA, LGRAWA) minus the best baseline at each M
with Welch's p, and the slope of the per-seed gap on log2 M (does the gap grow with M?); the
simulated time to reach a target accuracy and its speed-up over the smallest M; the bytes sent;
and the entropy H = -Σ_i w_i log w_i of GRAWA's weights per round against its maximum log M
(equal weights).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from grawa_sim import algorithms
from grawa_sim.algorithms import COMPARED
from grawa_sim.config import Config
from grawa_sim.core import stats
from grawa_sim.core.errors import ConfigError
from grawa_sim.experiments import ablations
from grawa_sim.experiments.presets import by_mode, finals, interval_table
from grawa_sim.results.storage import load_weights
from grawa_sim.results.sweep import grid

FIXED_STEPS, FIXED_SAMPLES = "fixed steps", "fixed samples"
REGIMES = (FIXED_STEPS, FIXED_SAMPLES)
WORKERS, QUICK_WORKERS = (2, 4, 8, 16, 32, 64, 128), (2, 4)
STEPS, QUICK_STEPS = 384, 32  # local steps per worker in the fixed-steps regime
TOTAL_SAMPLES, QUICK_TOTAL_SAMPLES = 2**16, 2**11  # M = 2: 2048 steps ... M = 128: 32 steps (B = 16)
SEEDS = 3
BY = ["regime", "workers", "algorithm"]


def grawa_methods(names: tuple[str, ...] = COMPARED) -> tuple[str, ...]:
    """The GRAWA variants among ``names`` (the registered classes derived from GRAWA)."""
    from grawa_sim.algorithms.grawa import GRAWA

    return tuple(n for n in names if issubclass(algorithms.get(n), GRAWA))


def fixed_samples_steps(total_samples: int, workers: int, batch_size: int) -> int:
    """Local steps per worker when M workers with minibatches of B process ``total_samples`` together:
    S / (M · B), which must be a whole number >= 1."""
    for field, value in (("total_samples", total_samples), ("workers", workers), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{field}: must be an integer >= 1 (got {value!r})")
    per_step = workers * batch_size
    if total_samples % per_step:
        raise ConfigError(f"total_samples: must be a multiple of workers x batch_size = {per_step} "
                          f"(got {total_samples})")
    return total_samples // per_step


def configs(quick: bool, seeds: int | None = None, steps: int | None = None, total_samples: int | None = None,
            workers: tuple[int, ...] | None = None, algorithms: tuple[str, ...] = COMPARED) -> dict[str, list[Config]]:
    """Regime name -> configs: every algorithm (reference τ / λ / p) at every M of ``workers`` with
    ``seeds`` seeds, on `ablations.BASE` (MNIST-1D MLP, B = 16).

    Fixed steps: ``steps`` local steps per worker. Fixed samples: `fixed_samples_steps` of
    ``total_samples``. Defaults: full, M = 2 ... 128, 384 steps, 2**16 samples, 3 seeds; quick,
    M = 2 and 4, 32 steps, 2**11 samples, one seed.
    """
    workers = by_mode(workers, quick, QUICK_WORKERS, WORKERS)
    steps = by_mode(steps, quick, QUICK_STEPS, STEPS)
    total = by_mode(total_samples, quick, QUICK_TOTAL_SAMPLES, TOTAL_SAMPLES)
    seeds = list(range(by_mode(seeds, quick, 1, SEEDS)))
    base = ablations.BASE
    groups: dict[str, list[Config]] = {FIXED_STEPS: [], FIXED_SAMPLES: []}
    for m in workers:
        groups[FIXED_STEPS] += grid(dataclasses.replace(base, workers=m, steps=steps),
                                    algorithm=list(algorithms), seed=seeds)
        per_worker = fixed_samples_steps(total, m, base.batch_size)
        groups[FIXED_SAMPLES] += grid(dataclasses.replace(base, workers=m, steps=per_worker),
                                      algorithm=list(algorithms), seed=seeds)
    return groups


def run(groups: dict[str, list[Config]], out: str | os.PathLike, jobs: int = 1,
        progress: bool | None = None, batch_runs: int | str = 1) -> pd.DataFrame:
    """Every regime's runs (cached under ``out``), the histories tagged with a ``regime`` column."""
    return ablations.sweep_groups(groups, out, "regime", jobs=jobs, progress=progress,
                                  batch_runs=batch_runs)


def accuracy(histories: pd.DataFrame) -> pd.DataFrame:
    """Final test accuracy per regime, M and algorithm: mean, std, n, 95 % half-width, worst seed."""
    return interval_table(finals(histories), BY)


def _best_baseline(last: pd.DataFrame, baselines: tuple[str, ...]) -> str:
    means = last[last["algorithm"].isin(baselines)].groupby("algorithm")["test_acc"].mean()
    if means.empty:
        raise ConfigError(f"baselines: none of {', '.join(baselines)} is in the histories")
    return str(means.idxmax())


def _per_seed(last: pd.DataFrame, algorithm: str) -> pd.Series:
    return last[last["algorithm"] == algorithm].set_index("seed")["test_acc"]


def gaps(histories: pd.DataFrame, methods: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Per regime, M and method (default: `grawa_methods` of the histories): the best baseline (the
    non-method algorithm with the highest mean final accuracy at that M), both means, the difference
    method − baseline and Welch's p (``significant``: p < 0.05)."""
    last = finals(histories)
    present = tuple(dict.fromkeys(last["algorithm"]))
    methods = grawa_methods(present) if methods is None else methods
    baselines = tuple(a for a in present if a not in methods)
    rows = []
    for (regime, m), at_m in last.groupby(["regime", "workers"], sort=False):
        best = _best_baseline(at_m, baselines)
        for method in methods:
            test = stats.welch(_per_seed(at_m, method), _per_seed(at_m, best))
            rows.append({"regime": regime, "workers": m, "method": method, "baseline": best,
                         "method_acc": _per_seed(at_m, method).mean(), "baseline_acc": _per_seed(at_m, best).mean(),
                         "difference": test.difference, "p": test.p, "significant": test.significant})
    return pd.DataFrame(rows).set_index(["regime", "workers", "method"])


def seed_gaps(histories: pd.DataFrame, methods: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per regime, M, method and seed: the method's final accuracy minus that of the same seed
    of the best baseline at that M (`gaps`' baseline); ``log2_workers``."""
    last = finals(histories)
    table = gaps(histories, methods)
    rows = []
    for (regime, m, method), row in table.iterrows():
        at_m = last[(last["regime"] == regime) & (last["workers"] == m)]
        paired = pd.concat([_per_seed(at_m, method), _per_seed(at_m, row["baseline"])], axis=1, join="inner")
        for seed, (a, b) in paired.iterrows():
            rows.append({"regime": regime, "workers": m, "log2_workers": math.log2(m), "method": method,
                         "seed": seed, "gap": a - b})
    return pd.DataFrame(rows)


def gap_trends(histories: pd.DataFrame, methods: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Per regime and method: the least-squares slope of the per-seed gap (`seed_gaps`) on log2 M (the
    change of the gap per doubling of M) with its 95 % half-width, p-value (slope = 0) and n."""
    rows = []
    for (regime, method), group in seed_gaps(histories, methods).groupby(["regime", "method"], sort=False):
        fit = stats.trend(group["log2_workers"], group["gap"])
        rows.append({"regime": regime, "method": method, "slope_per_doubling": fit.slope, "ci95": fit.half_width,
                     "p": fit.p, "n": fit.n, "significant": fit.significant})
    return pd.DataFrame(rows).set_index(["regime", "method"])


def comm_bytes(histories: pd.DataFrame) -> pd.DataFrame:
    """Bytes sent by all workers together over the whole run, per regime, M and algorithm (interval table)."""
    return interval_table(finals(histories), BY, "comm_bytes")


def time_to_target(histories: pd.DataFrame, target: float) -> pd.DataFrame:
    """Simulated seconds to the first evaluation at ``target`` test accuracy per regime, M and algorithm
    (`ablations.reach_summary`), with ``speedup`` = mean time at the smallest M / mean time at M (defined
    where every seed of both reached the target) and ``ideal`` = M / smallest M."""
    table = ablations.reach_summary(ablations.reach(histories, target, BY), BY, "sim_time")
    table = table.reset_index()
    smallest = table.groupby(["regime", "algorithm"])["workers"].transform("min")
    first = table[table["workers"] == smallest].set_index(["regime", "algorithm"])
    ref = first.loc[list(zip(table["regime"], table["algorithm"]))]
    usable = table["defined"].to_numpy() & ref["defined"].to_numpy()
    table["speedup"] = np.where(usable, ref["mean"].to_numpy() / table["mean"].to_numpy(), np.nan)
    table["ideal"] = table["workers"] / smallest
    return table.set_index(BY)


def entropy_per_round(weights: pd.DataFrame) -> pd.DataFrame:
    """H = -Σ_i w_i log w_i (natural log; 0 log 0 = 0) of every round's weights, the mean over the
    layers when there are several (LGRAWA); columns round, entropy. The weights of each round and
    layer must sum to 1."""
    sums = weights.groupby(["round", "layer"])["weight"].sum()
    if not np.allclose(sums.to_numpy(), 1.0, atol=1e-5):
        bad = sums[~np.isclose(sums.to_numpy(), 1.0, atol=1e-5)]
        raise ConfigError(f"weights: must sum to 1 per round and layer (got {bad.iloc[0]:.6g} at round "
                          f"{bad.index[0][0]}, layer {bad.index[0][1]})")
    w = weights["weight"].to_numpy(float)
    terms = weights.assign(term=-np.where(w > 0, w * np.log(np.where(w > 0, w, 1.0)), 0.0))
    per_layer = terms.groupby(["round", "layer"])["term"].sum()
    return per_layer.groupby("round").mean().rename("entropy").reset_index()


def weight_entropy(histories: pd.DataFrame, out: str | os.PathLike) -> pd.DataFrame:
    """One row per run that reports weights (read from ``out/runs/<run_key>/weights.csv``): regime, M,
    algorithm, seed, the mean over rounds of `entropy_per_round`, ``log_m`` and ``ratio`` = H / log M
    (1: equal weights)."""
    rows = []
    for _, history in histories.groupby("run", sort=False):
        first = history.iloc[0]
        weights = load_weights(Path(out) / "runs" / str(first["run_key"]))
        if weights.empty:
            continue
        entropy = float(entropy_per_round(weights)["entropy"].mean())
        log_m = math.log(int(first["workers"]))
        rows.append({"regime": first["regime"], "workers": int(first["workers"]), "algorithm": first["algorithm"],
                     "seed": int(first["seed"]), "entropy": entropy, "log_m": log_m, "ratio": entropy / log_m})
    return pd.DataFrame(rows, columns=[*BY, "seed", "entropy", "log_m", "ratio"])


def entropy_summary(entropies: pd.DataFrame) -> pd.DataFrame:
    """`weight_entropy` per regime, M and algorithm: mean ± 95 % half-width of H and of H / log M."""
    table = interval_table(entropies, BY, "entropy")
    ratio = interval_table(entropies, BY, "ratio")
    table["log_m"] = entropies.groupby(BY, sort=False)["log_m"].first().reindex(table.index)
    return table.join(ratio[["ratio_mean", "ratio_ci95"]])
