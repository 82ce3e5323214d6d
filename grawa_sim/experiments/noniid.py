"""Non-IID shards: does GRAWA's weighting help when the workers' data differ?

Setting (declared before the study runs): MNIST-1D, the 1-D CNN, M = 8, B = 32, each algorithm's
reference τ / λ / p, 2000 local steps, 10 seeds (one ensemble per setting and method), shards IID
(dealt afresh every epoch) or label-skewed Dirichlet(α) for α in 1, 0.3, 0.1 (fixed for the run;
same seed, same shards for every method). Methods: DP, LocalSGD, EASGD, LSGD, MGRAWA and LGRAWA with
their uniform-weight twins. The family (`family`): in every shard setting, GRAWA − twin, GRAWA − DP
and GRAWA − LocalSGD for both GRAWA variants, paired by seed, Holm over all of them.

The mechanism: GRAWA scores a worker by its gradient norm on a probe drawn from the whole training
set, so a worker whose shard is skewed (low label entropy) and that fits it should score high and
weigh little. `weight_entropy_correlation` measures Spearman's ρ between a worker's mean weight and
its shard's label entropy, per run, and summarises it over seeds.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from grawa_sim.algorithms import COMPARED
from grawa_sim.config import Config
from grawa_sim.core import stats
from grawa_sim.data.datasets import dirichlet_shards, load
from grawa_sim.experiments import protocol
from grawa_sim.experiments.presets import by_mode, comparison_base, finals, partition_label, with_twins
from grawa_sim.results.storage import load_config, load_weights
from grawa_sim.results.sweep import grid

ALPHAS: tuple[float | None, ...] = (None, 1.0, 0.3, 0.1)  # None: IID shards (dealt afresh every epoch)
SEEDS = 10
REFERENCE = "localsgd"  # the declared reference method


def configs(quick: bool, seeds: int | None = None, steps: int | None = None, workers: int = 8,
            algorithms: tuple[str, ...] = COMPARED, alphas: tuple[float | None, ...] = ALPHAS) -> list[Config]:
    """Every algorithm and GRAWA's twins in every shard setting (full: 2000 steps, 10 seeds; quick: 64, 1)."""
    base = grid(comparison_base(quick, steps, workers), algorithm=list(algorithms),
                seed=list(range(by_mode(seeds, quick, 1, SEEDS))))
    out = []
    for alpha in alphas:
        out += base if alpha is None else [dataclasses.replace(c, partition="dirichlet", alpha=alpha) for c in base]
    return with_twins(out)


def family(methods: list[str] | tuple[str, ...]) -> protocol.Family:
    """GRAWA − twin, GRAWA − DP, GRAWA − LocalSGD for each GRAWA variant (in every shard setting)."""
    return protocol.grawa_family("non-IID", methods, reference=REFERENCE)


def named(histories: pd.DataFrame) -> pd.DataFrame:
    """The histories with ``method`` (twins named apart) and ``shards`` ('IID', 'Dirichlet α = 0.1', ...)."""
    return protocol.with_methods(histories).assign(shards=lambda d: partition_label(d))


def accuracy(histories: pd.DataFrame) -> pd.DataFrame:
    """Final test accuracy per shard setting and method: mean ± 95 % half-width over finished seeds,
    finished / total and the divergence rate (`protocol.outcomes`)."""
    return protocol.outcomes(named(histories), by=["shards", "method"])


def contrasts(histories: pd.DataFrame) -> pd.DataFrame:
    """The declared family in every shard setting, paired by seed, Holm over the whole study."""
    h = named(histories)
    return protocol.compare_by(h, family(list(dict.fromkeys(h["method"]))), by="shards")


def drift(histories: pd.DataFrame) -> pd.DataFrame:
    """Per method: the mean final ``spread`` (mean distance of the workers to their average) in each shard
    setting, and ``accuracy_drop``, the mean final test accuracy in the first setting (IID by default) minus
    the one in the last (the most skewed), smallest drop first."""
    last = finals(named(histories))
    order = list(dict.fromkeys(last["shards"]))
    means = {value: stats.describe(last, ["method", "shards"], value)["mean"].unstack("shards")[order]
             for value in ("spread", "test_acc")}
    table = means["spread"].copy()
    table["accuracy_drop"] = means["test_acc"][order[0]] - means["test_acc"][order[-1]]
    return table.sort_values("accuracy_drop")


def label_entropy(labels: np.ndarray, classes: int = 10) -> float:
    """Shannon entropy (nats) of the label distribution of one shard (log 10 = 2.303 for uniform labels)."""
    counts = np.bincount(labels, minlength=classes).astype(float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def shard_entropies(config: Config) -> np.ndarray:
    """The label entropy of each worker's Dirichlet shard, dealt as the run deals it."""
    labels = load(config.dataset, train_size=config.train_size).y_train
    shards = dirichlet_shards(labels, config.workers, config.alpha, config.batch_size, config.seed)
    y = labels.numpy()
    return np.array([label_entropy(y[s.numpy()]) for s in shards])


def weight_entropy_correlation(histories: pd.DataFrame, out: str | os.PathLike) -> pd.DataFrame:
    """One row per GRAWA run with Dirichlet shards: Spearman's ρ between each worker's mean weight (over
    rounds, and over layers for LGRAWA) and its shard's label entropy, with the shards' entropy range."""
    rows = []
    h = named(histories)
    for _, history in h[h["partition"].eq("dirichlet") & h["method"].isin(protocol.GRAWA)].groupby("run", sort=False):
        first = history.iloc[0]
        folder = Path(out) / "runs" / str(first["run"])
        weights = load_weights(folder)
        if weights.empty:
            continue
        per_worker = weights.groupby("worker")["weight"].mean().sort_index().to_numpy()
        entropy = shard_entropies(load_config(folder))  # the run's own config: its shards dealt again
        rho = float(sps.spearmanr(per_worker, entropy).statistic)
        rows.append({"method": first["method"], "shards": first["shards"], "alpha": float(first["alpha"]),
                     "seed": int(first["seed"]), "rho": rho, "entropy_min": float(entropy.min()),
                     "entropy_max": float(entropy.max()), "weight_min": float(per_worker.min()),
                     "weight_max": float(per_worker.max())})
    return pd.DataFrame(rows, columns=["method", "shards", "alpha", "seed", "rho", "entropy_min", "entropy_max",
                                       "weight_min", "weight_max"])


def correlation_summary(correlations: pd.DataFrame) -> pd.DataFrame:
    """Per method and shard setting: mean ρ ± 95 % half-width over seeds, n, the one-sample t-test of ρ = 0
    (p, and Holm over the rows), and the critical |ρ| of one run (M workers, two-sided 5 %, exact for M ≤ 10
    by the t approximation): a single run's ρ below it is indistinguishable from no relation."""
    rows = []
    for (method, shards), group in correlations.groupby(["method", "shards"], sort=False):
        rho = group["rho"].to_numpy(float)
        test = stats.paired(rho, np.zeros_like(rho))
        rows.append({"method": method, "shards": shards, "rho_mean": test.difference, "rho_ci95": test.half_width,
                     "n": test.n, "p": test.p})
    table = pd.DataFrame(rows)
    if len(table):
        table["p_holm"] = stats.holm(table["p"].to_numpy(float))
    return table.set_index(["method", "shards"])


def critical_rho(workers: int, alpha: float = stats.ALPHA) -> float:
    """|ρ| one run of ``workers`` workers needs for p < alpha (two-sided, t approximation with M − 2 df)."""
    t = float(sps.t.ppf(1 - alpha / 2, workers - 2))
    return t / math.sqrt(workers - 2 + t * t)

