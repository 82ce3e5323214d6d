"""Fewer communications under a wall-clock budget: the period τ and the pull λ, GRAWA beside its twin.

Declared before the study runs: MNIST-1D, the MLP, M = 8 workers, B = 32, the data set's 4000 training
samples (500 per worker) in IID shards dealt anew every epoch; a 10 ms local step, 1 Gbit/s and the LAN
latency α = 0.1 ms (`time_budget.CLOCKS`), so a round costs what its collectives cost and a longer τ
buys local steps; every run stops at 6 simulated seconds (read also at 2 s); lr 0.05 constant; 5 seeds,
paired across methods.

The grid: MGRAWA and LGRAWA, each with its uniform twin, at every τ of `TAUS` × λ of `PULLS`; LocalSGD,
EASGD and LSGD at every τ (their reference λ / p); DP once (it communicates every step). A cell (τ, λ)
holds the GRAWA runs of that cell and the runs of the methods that do not take that λ (`cells`), so
that every contrast is paired within a cell.

The family (`family`): in every cell at the long budget, GRAWA − twin, GRAWA − DP and GRAWA − LocalSGD
at the same τ for MGRAWA and LGRAWA, paired by seed, Holm over the whole grid; and at the reference λ
the change of each contrast per doubling of τ (`budget_tables.doubling_trends`). "Fewer communications"
would show as GRAWA keeping its accuracy at a longer τ better than its twin and LocalSGD (a positive
trend), or reaching a target with fewer rounds (`time_to_target`: the simulated seconds, rounds and
bytes at the first evaluation at 90 % / 97 % of the best mean accuracy of the whole grid). `pareto`:
accuracy against the rounds and bytes spent, and the cells no other cell of the same method beats on
both.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from grawa_sim import algorithms
from grawa_sim.algorithms import COMPARED
from grawa_sim.config import Config
from grawa_sim.experiments import budget_tables, protocol
from grawa_sim.experiments.presets import SEEDS, TIME_BUDGET_CLOCK, by_mode, with_twins
from grawa_sim.experiments.scalability import LATENCY
from grawa_sim.results.sweep import grid

TAUS, QUICK_TAUS = (1, 4, 16, 64), (2, 8)
PULLS, QUICK_PULLS = (0.25, 0.5, 1.0), (0.5, 1.0)
REFERENCE_PULL = 0.5  # GRAWA's reference λ: the trends in τ are read at it
BUDGETS, QUICK_BUDGETS = (2.0, 6.0), (0.15, 0.3)
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


def configs(quick: bool, seeds: int | None = None, budget: float | None = None, workers: int = WORKERS,
            taus: tuple[int, ...] | None = None, pulls: tuple[float, ...] | None = None,
            algorithms: tuple[str, ...] = COMPARED, latency: float = LATENCY) -> list[Config]:
    """GRAWA (and its twin) at every τ × λ, the other periodic algorithms at every τ, DP once (full: τ = 1, 4,
    16, 64, λ = 0.25, 0.5, 1, 6 s, 5 seeds; quick: τ = 2, 8, λ = 0.5, 1, 0.3 s, one seed)."""
    base = Config(dataset="mnist1d", model="mlp", workers=workers, lr=0.05, momentum=0.9, weight_decay=1e-4,
                  batch_size=32, steps=100_000, time_budget=by_mode(budget, quick, QUICK_BUDGETS[-1], BUDGETS[-1]),
                  eval_every=8 if quick else 32, **{**TIME_BUDGET_CLOCK, "latency": latency})
    seeds_ = list(range(by_mode(seeds, quick, 1, SEEDS)))
    taus, pulls = by_mode(taus, quick, QUICK_TAUS, TAUS), by_mode(pulls, quick, QUICK_PULLS, PULLS)
    out = []
    for algorithm in algorithms:
        one = dataclasses.replace(base, algorithm=algorithm)
        if algorithm in every_step(algorithms):
            out += grid(one, seed=seeds_)
        elif algorithm in protocol.GRAWA:
            out += grid(one, tau=list(taus), pull=list(pulls), seed=seeds_)
        else:
            out += grid(one, tau=list(taus), seed=seeds_)
    return with_twins(out)


def family(methods: list[str] | tuple[str, ...]) -> protocol.Family:
    return protocol.grawa_family("communication", methods, reference="localsgd")


def cells(histories: pd.DataFrame, taus: tuple[int, ...] | None = None,
          pulls: tuple[float, ...] | None = None) -> pd.DataFrame:
    """The histories with ``method`` and one copy per cell (τ, λ) of the grid for the runs that do not vary
    there: a periodic method without GRAWA's λ sits in every λ of its τ, DP in every cell. Columns ``tau``,
    ``pull`` (the cell's) and ``setting`` ("τ = 4, λ = 0.5"); the grid's τ and λ are read from the GRAWA runs
    unless given."""
    h = protocol.with_methods(histories)
    grawa = h["algorithm"].isin(protocol.GRAWA)
    taus = taus or tuple(sorted(h.loc[grawa, "tau"].dropna().unique()))
    pulls = pulls or tuple(sorted(h.loc[grawa, "pull"].dropna().unique()))
    every = h["algorithm"].isin(every_step(tuple(dict.fromkeys(h["algorithm"]))))
    parts = [h[grawa].assign(tau=h.loc[grawa, "tau"].astype(int), pull=h.loc[grawa, "pull"].astype(float))]
    for pull in pulls:
        others = h[~grawa & ~every]
        parts.append(others.assign(tau=others["tau"].astype(int), pull=float(pull)))
        for tau in taus:
            parts.append(h[every].assign(tau=int(tau), pull=float(pull)))
    out = pd.concat(parts, ignore_index=True)
    out = out[out["tau"].isin(taus) & out["pull"].isin(pulls)]
    setting = "τ = " + out["tau"].astype(str) + ", λ = " + out["pull"].map("{:g}".format)
    return out.assign(setting=setting, run=out["run"] + " @ " + setting)


def _with_cell(table: pd.DataFrame, cells_: pd.DataFrame, settings) -> pd.DataFrame:
    """``table`` with the ``tau`` and ``pull`` of the cell named by each of its ``settings``."""
    keys = cells_.groupby("setting")[["tau", "pull"]].first().reindex(settings)
    return table.assign(tau=keys["tau"].to_numpy(), pull=keys["pull"].to_numpy())


def accuracy(histories: pd.DataFrame, budgets: tuple[float, ...] = BUDGETS) -> pd.DataFrame:
    """Test accuracy at each budget per cell and method (`budget_tables.accuracy`), with ``tau`` and
    ``pull`` columns."""
    h = cells(histories)
    table = budget_tables.accuracy(h, budgets, "setting")
    return _with_cell(table, h, table.index.get_level_values("setting"))


def contrasts(histories: pd.DataFrame, budget: float = BUDGETS[-1]) -> pd.DataFrame:
    """The declared family in every cell at ``budget``, paired by seed, Holm over the whole grid."""
    h = cells(histories)
    table = budget_tables.contrasts(h, (budget,), family(list(dict.fromkeys(h["method"]))), "setting")
    return _with_cell(table, h, table["setting"])


def tau_trends(histories: pd.DataFrame, budget: float = BUDGETS[-1], pull: float = REFERENCE_PULL) -> pd.DataFrame:
    """Per declared contrast at λ = ``pull``: the change of the paired difference per doubling of τ
    (`budget_tables.doubling_trends`)."""
    h = cells(histories)
    h = h[h["pull"] == pull]
    return budget_tables.doubling_trends(h, budget, family(list(dict.fromkeys(h["method"]))), "tau").assign(pull=pull)


def time_to_target(histories: pd.DataFrame, levels: tuple[float, ...] = budget_tables.LEVELS) -> pd.DataFrame:
    """Per cell, method and level: simulated seconds, rounds and bytes to level × the best mean accuracy of the
    whole grid (one target for every cell), over the runs that reached it."""
    h = cells(histories)
    table = budget_tables.time_to_target(h, levels, "setting", one_target=True)
    return _with_cell(table, h, table.index.get_level_values("setting"))


def pareto(histories: pd.DataFrame, budget: float = BUDGETS[-1]) -> pd.DataFrame:
    """Per method and configuration (τ, λ; each run once): test accuracy at ``budget`` (mean ± 95 %), the rounds
    and bytes spent by then (means), and ``front``: no other configuration of the same method has at least its
    accuracy with fewer rounds, or more accuracy with as few; a configuration whose every seed diverged is on
    no front."""
    rows = budget_tables.at_budget(protocol.with_methods(histories), budget)
    config_keys = ["method", "tau", "pull"]
    rows = rows.assign(tau=rows["tau"].fillna(0).astype(int), pull=rows["pull"].fillna(0.0).astype(float))
    table = protocol.outcomes(rows, by=config_keys)
    grouped = rows.groupby(config_keys, sort=False)
    table["rounds"] = grouped["round"].mean().reindex(table.index)
    table["comm_bytes"] = grouped["comm_bytes"].mean().reindex(table.index)
    front = []
    for (method, _, _), row in table.iterrows():
        same = table.xs(method, level="method")
        rounds, acc = same["rounds"], same["test_acc_mean_finished"]
        mine_rounds, mine_acc = row["rounds"], row["test_acc_mean_finished"]
        beaten = (rounds <= mine_rounds) & (acc >= mine_acc) & ((rounds < mine_rounds) | (acc > mine_acc))
        front.append(not beaten.any() and not math.isnan(mine_acc))  # every seed diverged: on no front
    return table.assign(front=front)


def at_pull(table: pd.DataFrame, pull: float = REFERENCE_PULL) -> pd.DataFrame:
    """The rows of a cell table (`accuracy`, `contrasts`, `time_to_target`) at λ = ``pull``, with the index level
    ``setting`` (if any) replaced by ``tau``: the tables the τ panels draw."""
    rows = table[table["pull"] == pull]
    if "setting" not in rows.index.names:
        return rows
    names = ["tau" if n == "setting" else n for n in rows.index.names]
    return rows.reset_index("setting").set_index("tau", append=True).reorder_levels(names)
