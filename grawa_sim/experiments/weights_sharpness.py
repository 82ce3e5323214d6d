"""Does GRAWA's weighting favour the flatter workers? Weights against each worker's own lambda_max.

At every round of an MGRAWA run, just before the round, each worker's largest Hessian eigenvalue
lambda_max(x_i) is measured on the fixed flatness probe set (320 training samples), all workers at
once (a vmapped power iteration, grawa_sim.flatness), and so is its full-batch gradient norm
||grad F(x_i)|| on the whole training set. Beside them stand the round's weight w_i and its score
n^_i (the smoothed probe-batch gradient norm the weight is the inverse of). Per round, Spearman's
rank correlation between w_i and lambda_max(x_i) over the M workers says whether the flatter
workers got the larger weights (a negative rho); over rounds and seeds it gets a 95 % interval.

How much of that rho noise lets through: the score's reliability r is Spearman's rho between the
score and the full-batch gradient norm it estimates (per round, averaged); Spearman's correction
for attenuation gives rho / sqrt(r) (lambda_max taken as measured without error), and sqrt(r) is
the largest |rho| the design could show were weight and sharpness perfectly related.
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
from grawa_sim.flatness.core import Batched
from grawa_sim.results.storage import cached_csv
from grawa_sim.results.sweep import run_key

BASE = Config(algorithm="mgrawa", workers=8, dataset="mnist1d", model="mlp", steps=2000, dtype="float32")
# workers that differ in sharpness: worker i trains at lr x 8^(i/7 - 1/2) (0.018 ... 0.14), the reference pull
SPREAD = dataclasses.replace(BASE, lr_spread=8.0)
SETTINGS = Settings(power_iters=50, power_tol=1e-3)


def record(config: Config, settings: Settings = SETTINGS, every: int = 1, progress: bool = False) -> pd.DataFrame:
    """One run of ``config``: a row per (round, worker) with weight, score and lambda_max, every
    ``every``-th round."""
    model, data = model_and_data(config)
    loss_fn = model_loss(model, data)
    full_loss = model_loss(model, data, probe=None, batch=None)
    resolved = resolve(config)
    pull, lr_spread = resolved.pull, resolved.lr_spread or 1.0
    rows = []

    def on_round(index: int, before: dict[str, torch.Tensor], info) -> None:
        if info is None or info.weights is None or index % every:
            return
        table = measure_workers(loss_fn, before, metrics=("lambda_max",), settings=settings)
        full = Batched(full_loss, {n: p.detach() for n, p in before.items()}, execution="vmap")
        grad_norms = full.value_and_grad(full.x0)[1].norm(dim=1).double().cpu().numpy()
        weights = info.weights.detach().cpu().double().numpy()
        scores = info.scores.detach().cpu().double().numpy()
        for worker in range(len(weights)):
            rows.append({"seed": config.seed, "pull": pull, "lr_spread": lr_spread, "round": index, "worker": worker,
                         "weight": float(weights[worker]), "score": float(scores[worker]),
                         "full_grad_norm": float(grad_norms[worker]),
                         "lambda_max": float(table["lambda_max"].iloc[worker])})

    run(config, progress=progress, on_round=on_round)
    return pd.DataFrame(rows)


def study(seeds: int = 3, base: Config = BASE, settings: Settings = SETTINGS, every: int = 1,
          progress: bool = False, cache: str | os.PathLike | None = None) -> pd.DataFrame:
    """`record` for seeds 0..seeds-1 of ``base`` (model-level weights: MGRAWA). With ``cache``, each seed's
    rows are kept in ``cache/<run key>-<settings digest>.csv`` and reused."""
    from tqdm.auto import tqdm

    key = digest([dataclasses.asdict(settings), every, "full_grad_norm"], 8)
    frames = []
    for s in tqdm(range(seeds), desc="weights vs sharpness", disable=not progress):
        cfg = dataclasses.replace(base, seed=s)
        path = None if cache is None else Path(cache) / f"{run_key(resolve(cfg))}-{key}.csv"
        frames.append(cached_csv(path, lambda cfg=cfg: record(cfg, settings, every)))
    table = pd.concat(frames, ignore_index=True)
    return table if "lr_spread" in table else table.assign(lr_spread=1.0)  # rows cached before the column


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


def _per_seed_interval(per_seed: pd.Series) -> tuple[float, float]:
    ci = stats.interval(per_seed)
    return ci.mean, ci.half_width


def reliability_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per design (``pull``, ``lr_spread``): the observed rho(weight, lambda_max), the score's reliability
    r = rho(score, full-batch gradient norm), the attenuation-corrected rho / sqrt(r), the largest visible
    |rho| = sqrt(r), and how much the workers' lambda_max differ within a round (coefficient of variation),
    each the mean over seeds with its 95 % half-width (seeds are the independent units)."""
    out = []
    table = table if "lr_spread" in table else table.assign(lr_spread=1.0)
    for (pull, lr_spread), design in table.groupby(["pull", "lr_spread"], sort=False):
        observed = round_correlations(design, "weight", "lambda_max").groupby("seed")["rho"].mean()
        reliability = round_correlations(design, "score", "full_grad_norm").groupby("seed")["rho"].mean()
        spread = design.groupby(["seed", "round"])["lambda_max"].agg(lambda v: v.std() / v.mean())
        spread = spread.groupby("seed").mean()
        ceiling = np.sqrt(reliability.clip(lower=0))
        corrected = observed / ceiling.replace(0, np.nan)
        row = {"pull": pull, "lr_spread": lr_spread, "seeds": len(observed)}
        for name, values in (("rho", observed), ("reliability", reliability), ("ceiling", ceiling),
                             ("corrected", corrected), ("lambda_cv", spread)):
            row[f"{name}_mean"], row[f"{name}_ci95"] = _per_seed_interval(values.dropna())
        row["p_rho"] = float(sps.ttest_1samp(observed, 0.0).pvalue) if len(observed) > 1 else float("nan")
        out.append(row)
    return pd.DataFrame(out)


def by_worker(table: pd.DataFrame, workers: int = BASE.workers) -> pd.DataFrame:
    """Per design (``pull``, ``lr_spread``) and worker: its lr factor s^(i/(M-1) - 1/2), and its weight,
    full-batch gradient norm and lambda_max averaged over rounds, then over seeds (mean and 95 % half-width)."""
    table = table if "lr_spread" in table else table.assign(lr_spread=1.0)
    per_seed = table.groupby(["pull", "lr_spread", "worker", "seed"], sort=False)[
        ["weight", "full_grad_norm", "lambda_max"]].mean().reset_index()
    out = stats.means_with_ci(per_seed, ["pull", "lr_spread", "worker"], ["weight", "full_grad_norm", "lambda_max"],
                              suffix="_mean", count="seeds")
    factor = out["lr_spread"] ** (out["worker"] / (workers - 1) - 0.5) if workers > 1 else 1.0
    out.insert(4, "lr_factor", factor)
    return out

__all__ = ["BASE", "SETTINGS", "SPREAD", "by_worker", "correlation_summary", "record", "reliability_summary",
           "round_correlations", "study"]
