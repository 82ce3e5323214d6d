"""Two basins with the control: GRAWA against its uniform-weight twin from the same starts.

In every cell of a grid over lr × τ (and the dimension), MGRAWA, its twin (w_i = 1/M with the same
λ, p, τ and probe) and LocalSGD (λ = 1) train R runs from the same R starts (`mechanism.simulate`,
one seed for all). GRAWA and its twin also draw the same noise (the twin still draws and scores the
probe), so a start's two outcomes are paired; LocalSGD shares the starts. The lr is set by the
product lr · κ_s, where κ_s is the sharp basin's curvature at its bottom: 0.8 is stable for SGD
in both basins, 1.5 and 1.9 approach SGD's edge of stability (2) in the sharp one, where SGD's own
noise can push a worker out of it.

The declared family, in every cell: MGRAWA − twin and MGRAWA − LocalSGD in the share of runs whose
evaluated model ends in the wide basin, McNemar's exact test on the paired outcomes, Holm over all
cells and dimensions. Every contrast also states the smallest difference in wide share its R pairs would
detect with 80 % power at the 5 % level (`mcnemar_detectable`, the exact test's exact power), taking the
share of discordant pairs seen in that cell as the true one.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pandas as pd

from grawa_sim.core.stats import holm, mcnemar, mcnemar_detectable, proportion
from grawa_sim.data.two_basins import basins, landscape
from grawa_sim.experiments.mechanism import Setup, setup_key, simulate
from grawa_sim.experiments.presets import method_name
from grawa_sim.results.storage import cached_csv

PRODUCTS = (0.8, 1.5, 1.9)  # lr × the sharp basin's curvature
TAUS = (2, 8, 32)
DIMS = (2, 10)
METHODS = (("mgrawa", "inverse_norm"), ("mgrawa", "uniform"), ("localsgd", "inverse_norm"))
CONTRASTS = (("mgrawa", "mgrawa+uniform"), ("mgrawa", "localsgd"))
BASE = Setup(runs=400, steps=400)


def lr_for(product: float, dim: int = 2) -> float:
    """The lr at which lr · (the sharp basin's largest curvature) equals ``product``."""
    if product <= 0:
        raise ValueError(f"product: must be > 0 (got {product})")
    return product / basins(landscape(dim=dim)).sharp_curvature


def grid(products: tuple[float, ...] = PRODUCTS, taus: tuple[int, ...] = TAUS, dims: tuple[int, ...] = DIMS,
         base: Setup = BASE) -> list[tuple[float, Setup]]:
    """(product, setup) for every method, product, τ and dimension; the same seed everywhere."""
    return [(product, dataclasses.replace(base, algorithm=algorithm, weighting=weighting, tau=tau, dim=dim,
                                          lr=lr_for(product, dim)))
            for dim in dims for product in products for tau in taus for algorithm, weighting in METHODS]


def run_outcomes(product: float, setup: Setup) -> pd.DataFrame:
    """One row per run of ``setup``: whether its evaluated model and its center end in the wide basin."""
    outcome = simulate(setup)
    return pd.DataFrame({
        "method": method_name(setup.algorithm, False, setup.weighting), "dim": setup.dim, "product": product,
        "lr": setup.lr, "tau": setup.tau, "pull": setup.pull, "run": range(setup.runs),
        "model_wide": outcome.evaluated_wide.numpy(), "center_wide": outcome.center_wide.numpy()})


def study(cells: list[tuple[float, Setup]], cache: str | os.PathLike | None = None,
          progress: bool = False) -> pd.DataFrame:
    """Every run's outcome in every cell; with ``cache`` each setup's runs are kept in
    ``cache/<setup key>.runs.csv`` and reused (an interrupted study resumes)."""
    from tqdm.auto import tqdm

    frames = []
    for product, setup in tqdm(cells, desc="two basins, control", disable=not progress):
        path = None if cache is None else Path(cache) / f"{setup_key(setup)}.runs.csv"
        frames.append(cached_csv(path, lambda product=product, setup=setup: run_outcomes(product, setup)))
    return pd.concat(frames, ignore_index=True)


CELL = ["dim", "product", "tau"]


def shares(runs: pd.DataFrame, what: str = "model") -> pd.DataFrame:
    """Per method and cell: the share of runs whose ``what`` ends wide, with its Wilson 95 % interval."""
    rows = []
    for (method, dim, product, tau), g in runs.groupby(["method", *CELL], sort=False):
        share = proportion(int(g[f"{what}_wide"].sum()), len(g))
        rows.append({"method": method, "dim": dim, "product": product, "tau": tau, "lr": g["lr"].iloc[0],
                     "runs": len(g), "wide": share.fraction, "low": share.low, "high": share.high})
    return pd.DataFrame(rows)


def contrasts(runs: pd.DataFrame, what: str = "model") -> pd.DataFrame:
    """The declared family in every cell: the difference in wide share, the discordant pairs (``only_a``:
    only the first method ends wide; ``only_b``: only the second), McNemar's exact p, Holm over all rows, and
    ``smallest_detectable``: the difference in wide share McNemar's exact test on this cell's pairs detects with
    80 % power at level 0.05 (``mcnemar_detectable``), with the discordant share observed in the cell,
    (only_a + only_b) / runs, taken as the true one. It is nan when the cell has no discordant pairs or too few
    pairs for even a one-sided split to reach 80 % power."""
    rows = []
    for (dim, product, tau), cell in runs.groupby(CELL, sort=False):
        by_method = {m: g.set_index("run")[f"{what}_wide"].astype(bool) for m, g in cell.groupby("method")}
        for a, b in CONTRASTS:
            if a not in by_method or b not in by_method:
                continue
            xa, xb = by_method[a].align(by_method[b], join="inner")
            test = mcnemar(xa, xb)
            discordant = (test.b01 + test.b10) / test.n if test.n else float("nan")
            rows.append({"dim": dim, "product": product, "tau": tau, "contrast": f"{a} − {b}", "runs": test.n,
                         "difference": float(xa.mean() - xb.mean()), "only_a": test.b10, "only_b": test.b01,
                         "p": test.p, "smallest_detectable": mcnemar_detectable(test.n, discordant)})
    out = pd.DataFrame(rows)
    if len(out):
        out["p_holm"] = holm(out["p"].to_numpy())
        out["significant_holm"] = out["p_holm"] < 0.05
    return out


__all__ = ["BASE", "CONTRASTS", "DIMS", "METHODS", "PRODUCTS", "TAUS", "contrasts", "grid", "lr_for", "run_outcomes",
           "shares", "study"]
