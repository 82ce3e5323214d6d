"""Fewer communications: the periodic algorithms with a longer period τ and a weaker pull λ.

Which algorithms take part is read from the registry: the ``periodic`` ones (every compared algorithm
that does not communicate every step) sweep τ at their reference λ / p; the ``pulling`` ones (periodic
and taking a pull) sweep λ at their reference τ / p; the algorithms that communicate every step (DP)
run once, as the reference line. All on `ablations.BASE` (MNIST-1D MLP, B = 16), M = 8.

The tables: final test accuracy per τ (and per λ) with Welch's test against the reference, the
slope of the accuracy on log2 τ, and the rounds and bytes spent to reach a target accuracy.
"""

from __future__ import annotations

import dataclasses
import math
import os

import pandas as pd

from grawa_sim import algorithms
from grawa_sim.algorithms import COMPARED
from grawa_sim.config import Config
from grawa_sim.core import stats
from grawa_sim.experiments import ablations
from grawa_sim.experiments.presets import by_mode, finals, interval_table
from grawa_sim.results.sweep import grid

TAU, PULL, REFERENCE = "tau", "pull", "reference"  # the groups of the sweep (column ``study``)
TAUS, QUICK_TAUS = (1, 2, 4, 8, 16, 32, 64, 128), (2, 8)
PULLS, QUICK_PULLS = (0.1, 0.25, 0.5, 0.75, 1.0), (0.5, 1.0)
STEPS, QUICK_STEPS = 768, 32  # a multiple of every τ of the grid: the last evaluation follows a round
SEEDS = 3
WORKERS = 8


def every_step(names: tuple[str, ...] = COMPARED) -> tuple[str, ...]:
    """The algorithms of ``names`` that communicate every step (the reference line)."""
    return tuple(n for n in names if algorithms.get(n).communicates_every_step)


def periodic(names: tuple[str, ...] = COMPARED) -> tuple[str, ...]:
    """The algorithms of ``names`` that communicate in rounds every τ steps."""
    return tuple(n for n in names if not algorithms.get(n).communicates_every_step)


def pulling(names: tuple[str, ...] = COMPARED) -> tuple[str, ...]:
    """The periodic algorithms of ``names`` whose round takes a pull λ."""
    return tuple(n for n in periodic(names) if algorithms.get(n).takes_pull)


def configs(quick: bool, seeds: int | None = None, steps: int | None = None, workers: int = WORKERS,
            taus: tuple[int, ...] | None = None, pulls: tuple[float, ...] | None = None,
            algorithms: tuple[str, ...] = COMPARED) -> dict[str, list[Config]]:
    """Group name -> configs: ``tau`` (every periodic algorithm at every τ of ``taus``, its reference λ / p),
    ``pull`` (every pulling algorithm at every λ of ``pulls``, its reference τ / p) and ``reference``
    (every algorithm that communicates every step), ``seeds`` seeds each.

    Defaults: full, τ = 1 ... 128, λ = 0.1 ... 1, 768 local steps, 3 seeds; quick, τ = 2, 8, λ = 0.5, 1,
    32 steps, one seed.
    """
    base = dataclasses.replace(ablations.BASE, workers=workers, steps=by_mode(steps, quick, QUICK_STEPS, STEPS))
    seeds = list(range(by_mode(seeds, quick, 1, SEEDS)))
    taus, pulls = by_mode(taus, quick, QUICK_TAUS, TAUS), by_mode(pulls, quick, QUICK_PULLS, PULLS)
    return {
        TAU: [c for a in periodic(algorithms) for c in grid(dataclasses.replace(base, algorithm=a),
                                                            tau=list(taus), seed=seeds)],
        PULL: [c for a in pulling(algorithms) for c in grid(dataclasses.replace(base, algorithm=a),
                                                            pull=list(pulls), seed=seeds)],
        REFERENCE: grid(base, algorithm=list(every_step(algorithms)), seed=seeds),
    }


def run(groups: dict[str, list[Config]], out: str | os.PathLike, jobs: int = 1,
        progress: bool | None = None, batch_runs: int | str = 1) -> pd.DataFrame:
    """Every group's runs (cached under ``out``), the histories tagged with a ``study`` column."""
    return ablations.sweep_groups(groups, out, "study", jobs=jobs, progress=progress,
                                  batch_runs=batch_runs)


def _study(histories: pd.DataFrame, field: str) -> pd.DataFrame:
    return finals(histories[histories["study"] == field])


def accuracy(histories: pd.DataFrame, field: str) -> pd.DataFrame:
    """Final test accuracy per algorithm and value of ``field`` (``tau`` or ``pull``) in that study,
    with Welch's test against the runs of the reference study's first algorithm (``reference``,
    ``difference``, ``p``, ``significant``; NaN without a reference)."""
    last = _study(histories, field)
    table = interval_table(last, ["algorithm", field])
    reference = _study(histories, REFERENCE)
    names = tuple(dict.fromkeys(reference["algorithm"]))
    base = reference[reference["algorithm"] == names[0]]["test_acc"] if names else pd.Series(dtype=float)
    rows = []
    for algorithm, value in table.index:
        ours = last[(last["algorithm"] == algorithm) & (last[field] == value)]["test_acc"]
        test = stats.welch(ours, base)
        rows.append({"reference": names[0] if names else None, "difference": test.difference, "p": test.p,
                     "significant": test.significant})
    return table.join(pd.DataFrame(rows, index=table.index))


def reference_accuracy(histories: pd.DataFrame) -> pd.DataFrame:
    """The reference study's final test accuracy per algorithm (interval table)."""
    return interval_table(_study(histories, REFERENCE), "algorithm")


def tau_trends(histories: pd.DataFrame, field: str = TAU) -> pd.DataFrame:
    """Per algorithm: the least-squares slope of the final test accuracy of every run on log2 of ``field``
    (τ; the change per doubling), its 95 % half-width, p-value (slope = 0) and n."""
    last = _study(histories, field)
    rows = []
    for algorithm, group in last.groupby("algorithm", sort=False):
        fit = stats.trend([math.log2(v) for v in group[field]], group["test_acc"])
        rows.append({"algorithm": algorithm, "slope_per_doubling": fit.slope, "ci95": fit.half_width, "p": fit.p,
                     "n": fit.n, "significant": fit.significant})
    return pd.DataFrame(rows).set_index("algorithm")


def cost_to_target(histories: pd.DataFrame, target: float, field: str = TAU) -> pd.DataFrame:
    """Rounds and bytes spent up to the first evaluation at ``target`` test accuracy, per algorithm and
    value of ``field`` (the reference study's runs under ``field`` = NaN): mean ± 95 % half-width over
    the runs that reached it, ``reached`` / ``n`` and ``defined`` (every run reached it), per cost."""
    chosen = histories[histories["study"].isin([field, REFERENCE])]
    chosen = chosen.assign(**{field: chosen[field].where(chosen["study"] == field)})
    reached = ablations.reach(chosen, target, ["algorithm", field])
    reached[field] = reached[field].fillna(-1)  # groupby drops NaN keys: the reference gets -1, then NaN again
    parts = {cost: ablations.reach_summary(reached, ["algorithm", field], cost) for cost in ("round", "comm_bytes")}
    table = parts["round"][["mean", "ci95"]].add_prefix("rounds_").join(
        parts["comm_bytes"][["mean", "ci95", "reached", "n", "defined"]].rename(
            columns={"mean": "bytes_mean", "ci95": "bytes_ci95"}))
    table = table.reset_index()
    table[field] = table[field].where(table[field] >= 0)
    return table.set_index(["algorithm", field])
