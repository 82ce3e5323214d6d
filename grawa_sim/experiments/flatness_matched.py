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

import dataclasses

import pandas as pd

from grawa_sim.config import Config
from grawa_sim.core import stats
from grawa_sim.experiments import protocol
from grawa_sim.experiments.flatness_study import METHODS, NETS
from grawa_sim.experiments.presets import comparison_configs, with_twins
from grawa_sim.flatness import Settings

TARGET = 0.05  # train loss of the evaluated model; every method reaches it within MAX_STEPS
MAX_STEPS = 6000
EVAL_EVERY = 50
SEEDS = 8
MEASURES = ("lambda_max", "trace")
CONTRASTS = tuple((g, other) for g in ("mgrawa", "lgrawa") for other in (f"{g}+uniform", "dp", "localsgd"))
# lighter than the across-methods study's (128 runs, three models each): power iteration, 30 Hutchinson
# probes, 40-step Lanczos from one start, 5 ascent steps for epsilon-sharpness
SETTINGS = Settings(power_iters=60, power_tol=1e-3, trace_samples=30, lanczos_steps=40, lanczos_starts=1,
                    eps_steps=5)
QUICK_SETTINGS = Settings(power_iters=5, trace_samples=2, lanczos_steps=4, lanczos_starts=1, eps_steps=2)


def configs(quick: bool, seeds: int = SEEDS, target: float = TARGET, max_steps: int = MAX_STEPS,
            nets: tuple[str, ...] = NETS) -> list[Config]:
    """Every method and GRAWA's uniform twin on every net, stopping at train loss ``target`` (quick: 64 steps).
    One twin serves both GRAWA variants: with uniform weights MGRAWA and LGRAWA are the same rule (tested
    bitwise in tests/test_control.py)."""
    if target <= 0:
        raise ValueError(f"target: must be > 0 (got {target})")
    base = comparison_configs(quick, seeds=seeds, twins=False)
    out = []
    for net in nets:
        for algorithm, sam in METHODS:
            out += [dataclasses.replace(c, model=net, sam=sam, target_train_loss=target,
                                        steps=c.steps if quick else max_steps,
                                        eval_every=c.eval_every if quick else EVAL_EVERY)
                    for c in base if c.algorithm == algorithm]
    return [twin for c in out for twin in (with_twins([c]) if c.algorithm == "mgrawa" else [c])]


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
    """The declared family on the ``row`` model (`protocol.compare_by` per measure, paired by seed), Holm over every
    net, measure and contrast (negative: the first method is flatter). One twin serves both GRAWA variants."""
    part = table[table["model"] == row]
    runs = part.assign(algorithm=part["method"], sam=False, weighting=None)
    twin = runs[runs["method"] == "mgrawa+uniform"]
    runs = pd.concat([runs, twin.assign(algorithm="lgrawa+uniform", run=twin["run"] + "-as-lgrawa-twin")])
    tables = [protocol.compare_by(runs, protocol.Family("matched flatness", "localsgd", CONTRASTS, measure,
                                                        higher_is_better=False), "net", classes=None)
              .assign(measure=measure) for measure in measures]
    out = pd.concat(tables, ignore_index=True).rename(columns={"setting": "net"})
    out["p_holm"] = stats.holm(out["p"].to_numpy(float))
    out["significant_holm"] = out["p_holm"] < stats.ALPHA
    return out


__all__ = ["CONTRASTS", "MEASURES", "SETTINGS", "TARGET", "configs", "contrasts", "reached"]
