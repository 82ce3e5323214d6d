"""Scalability under a wall-clock budget: every compared algorithm with M = 2 ... 128 workers.

Declared before the study runs: MNIST-1D, the MLP, B = 32 per worker; the training set grows with M,
``train_size`` = 500 · M (M = 128: 64 000 samples), so every worker holds 500 samples whatever M, and
the IID shards are dealt anew every epoch; a 10 ms local step and a 1 Gbit/s network with the LAN
latency α = 0.1 ms (`time_budget.CLOCKS`), so an all-reduce costs 2 (M − 1) α + 2 (M − 1) / M · n / β
and communication grows with M; each algorithm's reference τ / λ / p; every run stops at 6 simulated
seconds (read also at 2 s); 5 seeds, paired across methods.

The lr rule (`lr_for`): the periodic methods keep the per-worker lr 0.05 at every M (each worker's
step is the same SGD step whatever M); DP's step averages M gradients, so its lr grows linearly with
the global batch above the M = 8 it was set for, lr = 0.05 · max(1, M / 8) (Goyal et al., 2017), after a
linear warm-up over the first twelfth of the budget (0.5 simulated seconds).

The family (`family`): at every M and both budgets, GRAWA − its uniform twin, GRAWA − DP and GRAWA −
LocalSGD for MGRAWA and LGRAWA, paired by seed, Holm over the whole study; and per contrast the change
of the paired difference per doubling of M (`doubling_trends`: a slope per seed on log2 M, the mean ±
95 % interval over seeds, Holm over the contrasts). Time to target: the first simulated second at
90 % / 97 % of the best method's mean accuracy at that M. The entropy H = −Σ_i w_i log w_i of GRAWA's
weights per round against its maximum log M (equal weights).
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
from grawa_sim.config import MAX_TRAIN_SIZE, Config
from grawa_sim.core.errors import ConfigError
from grawa_sim.experiments import budget_tables, protocol
from grawa_sim.experiments.presets import SEEDS, TIME_BUDGET_CLOCK, by_mode, interval_table, with_twins
from grawa_sim.experiments.time_budget import CLOCKS
from grawa_sim.results.storage import load_weights
from grawa_sim.results.sweep import grid

WORKERS, QUICK_WORKERS = (2, 4, 8, 16, 32, 64, 128), (2, 4)
BUDGETS, QUICK_BUDGETS = (2.0, 6.0), (0.15, 0.3)  # short, long (simulated seconds)
SAMPLES_PER_WORKER = 500
LR, DP_REFERENCE_WORKERS, DP_WARMUP_SHARE = 0.05, 8, 1 / 12  # warm-up: 0.5 s of 6 s
LATENCY = CLOCKS["LAN"][0]
BY = ["workers", "algorithm"]


def lr_for(algorithm: str, workers: int, budget: float, lr: float = LR) -> dict:
    """The Config fields of the declared lr rule: ``lr`` per worker for the periodic methods; for the methods
    that communicate every step (DP) lr · max(1, M / 8) after a linear warm-up over the first twelfth of the
    ``budget`` (simulated seconds)."""
    if not algorithms.get(algorithm).communicates_every_step:
        return {"lr": lr}
    return {"lr": lr * max(1.0, workers / DP_REFERENCE_WORKERS), "warmup": budget * DP_WARMUP_SHARE,
            "lr_decay_unit": "seconds"}


def train_size(workers: int, per_worker: int = SAMPLES_PER_WORKER) -> int:
    """``per_worker`` · M training samples (at most the largest MNIST-1D set generated, else a ConfigError)."""
    size = per_worker * workers
    if size > MAX_TRAIN_SIZE:
        raise ConfigError(f"workers: {workers} workers x {per_worker} samples exceed the largest MNIST-1D training "
                          f"set, {MAX_TRAIN_SIZE} (got {size})")
    return size


def configs(quick: bool, seeds: int | None = None, budget: float | None = None, workers: tuple[int, ...] | None = None,
            algorithms: tuple[str, ...] = COMPARED, latency: float = LATENCY) -> list[Config]:
    """Every algorithm and GRAWA's twins at every M of ``workers`` (full: M = 2 ... 128, 6 s, 5 seeds; quick:
    M = 2, 4, 0.3 s, one seed), the lr of `lr_for` and the data of `train_size`."""
    budget = by_mode(budget, quick, QUICK_BUDGETS[-1], BUDGETS[-1])
    base = Config(dataset="mnist1d", model="mlp", momentum=0.9, weight_decay=1e-4, batch_size=32, steps=100_000,
                  time_budget=budget, eval_every=8 if quick else 32,
                  **{**TIME_BUDGET_CLOCK, "latency": latency})
    seeds_ = list(range(by_mode(seeds, quick, 1, SEEDS)))
    out = []
    for m in by_mode(workers, quick, QUICK_WORKERS, WORKERS):
        for algorithm in algorithms:
            at_m = dataclasses.replace(base, algorithm=algorithm, workers=m, train_size=train_size(m),
                                       **lr_for(algorithm, m, budget))
            out += grid(at_m, seed=seeds_)
    return with_twins(out)


def family(methods: list[str] | tuple[str, ...]) -> protocol.Family:
    return protocol.grawa_family("scalability", methods, reference="localsgd")


def accuracy(histories: pd.DataFrame, budgets: tuple[float, ...] = BUDGETS) -> pd.DataFrame:
    """Test accuracy at each budget per M and method (`budget_tables.accuracy`)."""
    return budget_tables.accuracy(protocol.with_methods(histories), budgets, "workers")


def contrasts(histories: pd.DataFrame, budgets: tuple[float, ...] = BUDGETS) -> pd.DataFrame:
    """The declared family at every M and budget, paired by seed, Holm over all of them."""
    h = protocol.with_methods(histories)
    return budget_tables.contrasts(h, budgets, family(list(dict.fromkeys(h["method"]))), "workers")


def time_to_target(histories: pd.DataFrame, levels: tuple[float, ...] = budget_tables.LEVELS) -> pd.DataFrame:
    """Per M, level and method: the time to level × the best method's mean accuracy at the long budget."""
    return budget_tables.time_to_target(protocol.with_methods(histories), levels, "workers")


def doubling_trends(histories: pd.DataFrame, budget: float, classes: int = 10) -> pd.DataFrame:
    """Per declared contrast at ``budget``: the change of the paired difference per doubling of M, a slope per
    seed and the mean ± 95 % over seeds (`budget_tables.doubling_trends`)."""
    h = protocol.with_methods(histories)
    return budget_tables.doubling_trends(h, budget, family(list(dict.fromkeys(h["method"]))), "workers", classes)


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
    """One row per run that reports weights (read from ``out/runs/<run_key>/weights.csv``): M,
    method (in ``algorithm``: a twin apart), seed, the mean over rounds of `entropy_per_round`, ``log_m``
    and ``ratio`` = H / log M (1: equal weights)."""
    rows = []
    for _, history in protocol.by_method(histories).groupby("run", sort=False):
        first = history.iloc[0]
        weights = load_weights(Path(out) / "runs" / str(first.get("run_key", first["run"])))
        if weights.empty:
            continue
        entropy = float(entropy_per_round(weights)["entropy"].mean())
        log_m = math.log(int(first["workers"]))
        rows.append({"workers": int(first["workers"]), "algorithm": first["algorithm"],
                     "seed": int(first["seed"]), "entropy": entropy, "log_m": log_m, "ratio": entropy / log_m})
    return pd.DataFrame(rows, columns=[*BY, "seed", "entropy", "log_m", "ratio"])


def entropy_summary(entropies: pd.DataFrame) -> pd.DataFrame:
    """`weight_entropy` per M and algorithm: mean ± 95 % half-width of H and of H / log M."""
    table = interval_table(entropies, BY, "entropy")
    ratio = interval_table(entropies, BY, "ratio")
    table["log_m"] = entropies.groupby(BY, sort=False)["log_m"].first().reindex(table.index)
    return table.join(ratio[["ratio_mean", "ratio_ci95"]])
