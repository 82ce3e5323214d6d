"""Flatness at a matched train loss: every method stops at the same train loss, then its sharpness is measured.

Comparing methods after a fixed number of steps measures how far each got as much as how flat its optimum
is. Here every run (the comparison's setting: MNIST-1D, M = 8, B = 32, each algorithm's reference τ / λ /
p) trains until its evaluated model's train loss first reaches ``target`` (`Config.target_train_loss`,
checked at every evaluation), so all methods are measured at the same loss; the steps and simulated
seconds each took are reported beside. Measured on three models per run (`flatness_study.measure` with
``half``): the workers' uniform average, the algorithm's own center, and the average of the first half
of the workers (what the reference's flatness script measures).

The declared family, per net and measure (λ_max and Hutchinson's trace of the average): GRAWA − its twin
(does the weighting find flatter optima?), GRAWA − DP and GRAWA − LocalSGD for both GRAWA variants,
paired by seed, Holm over every net, measure and contrast.
"""

from __future__ import annotations

import pandas as pd

from grawa_sim.config import Config
from grawa_sim.core import stats
from grawa_sim.experiments import flatness_study
from grawa_sim.experiments.flatness_study import CONTRASTS, MEASURES, NETS, QUICK_SETTINGS, SETTINGS, on_nets

TARGET = 0.05  # train loss of the evaluated model; every method reaches it within MAX_STEPS
MAX_STEPS = 6000
EVAL_EVERY = 50
SEEDS = 8


def configs(quick: bool, seeds: int = SEEDS, target: float = TARGET, max_steps: int = MAX_STEPS,
            nets: tuple[str, ...] = NETS) -> list[Config]:
    """Every method and GRAWA's uniform twin on every net, stopping at train loss ``target`` (quick: 64 steps)."""
    if target <= 0:
        raise ValueError(f"target: must be > 0 (got {target})")
    return on_nets(quick, seeds, nets, target_train_loss=target, steps=max_steps, eval_every=EVAL_EVERY)


def reached(table: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per net and method: runs that reached the target / runs, and the mean ± 95 % half-width of the steps and
    simulated seconds they took (one row per run: the ``average`` rows of the flatness table)."""
    runs = table[table["model"] == "average"]
    rows = []
    for (net, method), g in runs.groupby(["net", "method"], sort=False):
        hit = g[g["train_loss"] <= target]
        steps, seconds = stats.interval(hit["steps"]), stats.interval(hit["sim_time"])
        rows.append({"net": net, "method": method, "reached": len(hit), "runs": len(g),
                     "steps_mean": steps.mean, "steps_ci95": steps.half_width,
                     "seconds_mean": seconds.mean, "seconds_ci95": seconds.half_width,
                     "train_loss_mean": float(g["train_loss"].mean())})
    return pd.DataFrame(rows)


def contrasts(table: pd.DataFrame, row: str = "average", measures: tuple[str, ...] = MEASURES) -> pd.DataFrame:
    """`flatness_study.contrasts`, the family named "matched flatness"."""
    return flatness_study.contrasts(table, row, measures, family="matched flatness")


__all__ = ["CONTRASTS", "MEASURES", "QUICK_SETTINGS", "SETTINGS", "TARGET", "configs", "contrasts", "reached"]
