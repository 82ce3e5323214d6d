"""Does GRAWA's weighting favour the flatter workers? Weights against each worker's own lambda_max.

At every round of an MGRAWA run, just before the round, each worker's largest Hessian eigenvalue
lambda_max(x_i) is measured on the fixed flatness probe set (320 training samples), all workers at
once (a vmapped power iteration, grawa_sim.flatness). Beside it stand the round's weight w_i and
its score n^_i (the smoothed gradient norm the weight is the inverse of). Per round, Spearman's
rank correlation between w_i and lambda_max(x_i) over the M workers says whether the flatter
workers got the larger weights (a negative rho); over rounds and seeds it gets a 95 % interval.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats as sps

from grawa_sim.config import Config, digest, resolve
from grawa_sim.core import stats
from grawa_sim.engine.problem import model_and_data
from grawa_sim.engine.runner import run
from grawa_sim.flatness import Settings, measure_workers, model_loss
from grawa_sim.results.storage import cached_csv
from grawa_sim.results.sweep import run_key

BASE = Config(algorithm="mgrawa", workers=8, dataset="mnist1d", model="mlp", steps=2000, dtype="float32")
SETTINGS = Settings(power_iters=50, power_tol=1e-3)


def record(config: Config, settings: Settings = SETTINGS, every: int = 1, progress: bool = False) -> pd.DataFrame:
    """One run of ``config``: a row per (round, worker) with weight, score and lambda_max, every
    ``every``-th round."""
    model, data = model_and_data(config)
    loss_fn = model_loss(model, data)
    rows = []

    def on_round(index: int, before: dict[str, torch.Tensor], info) -> None:
        if info is None or info.weights is None or index % every:
            return
        table = measure_workers(loss_fn, before, metrics=("lambda_max",), settings=settings)
        weights = info.weights.detach().cpu().double().numpy()
        scores = info.scores.detach().cpu().double().numpy()
        for worker in range(len(weights)):
            rows.append({"seed": config.seed, "round": index, "worker": worker, "weight": float(weights[worker]),
                         "score": float(scores[worker]), "lambda_max": float(table["lambda_max"].iloc[worker])})

    run(config, progress=progress, on_round=on_round)
    return pd.DataFrame(rows)


def study(seeds: int = 3, base: Config = BASE, settings: Settings = SETTINGS, every: int = 1,
          progress: bool = False, cache: str | os.PathLike | None = None) -> pd.DataFrame:
    """`record` for seeds 0..seeds-1 of ``base`` (model-level weights: MGRAWA). With ``cache``, each seed's
    rows are kept in ``cache/<run key>-<settings digest>.csv`` and reused."""
    from tqdm.auto import tqdm

    key = digest([dataclasses.asdict(settings), every], 8)
    frames = []
    for s in tqdm(range(seeds), desc="weights vs sharpness", disable=not progress):
        cfg = dataclasses.replace(base, seed=s)
        path = None if cache is None else Path(cache) / f"{run_key(resolve(cfg))}-{key}.csv"
        frames.append(cached_csv(path, lambda cfg=cfg: record(cfg, settings, every)))
    return pd.concat(frames, ignore_index=True)


def round_correlations(table: pd.DataFrame, x: str = "weight", y: str = "lambda_max") -> pd.DataFrame:
    """Spearman's rho between ``x`` and ``y`` over the workers of every (seed, round)."""
    rows = []
    for (seed, index), g in table.groupby(["seed", "round"]):
        rho = sps.spearmanr(g[x], g[y]).statistic if g[x].nunique() > 1 and g[y].nunique() > 1 else np.nan
        rows.append({"seed": seed, "round": index, "rho": float(rho)})
    return pd.DataFrame(rows)


def correlation_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per pair (weight vs lambda_max, score vs lambda_max): mean rho over rounds and seeds with the 95 %
    t-interval of the per-seed means (seeds are the independent units), the share of rounds with rho < 0,
    and a one-sample t-test of the per-seed means against 0 (n = seeds: needs 2 or more)."""
    out = []
    for x in ("weight", "score"):
        rhos = round_correlations(table, x).dropna()
        per_seed = rhos.groupby("seed")["rho"].mean()
        ci = stats.interval(per_seed)
        p = float(sps.ttest_1samp(per_seed, 0.0).pvalue) if len(per_seed) > 1 else float("nan")
        out.append({"pair": f"{x} vs lambda_max", "rho_mean": ci.mean, "rho_half_width": ci.half_width,
                    "seeds": ci.n, "rounds": len(rhos), "negative_share": float((rhos["rho"] < 0).mean()),
                    "p_vs_0": p})
    return pd.DataFrame(out)


__all__ = ["BASE", "SETTINGS", "correlation_summary", "record", "round_correlations", "study"]
