"""What the two ablation studies (scalability, communication) share: their setting, sweeping named
groups of configs into one cache, and the cost of reaching a target accuracy.

A run "reaches" a target at its first evaluation with ``test_acc >= target``; what it had spent by
then (local steps, rounds, simulated seconds, bytes) is read from that history row. A run that never
gets there has NaN costs and ``reached = False``; a summary averages only the runs that reached it and
says how many did, and a cost is called defined only when every seed reached the target.
"""

from __future__ import annotations

import os

import pandas as pd

from grawa_sim.config import Config
from grawa_sim.core import stats
from grawa_sim.core.errors import ConfigError
from grawa_sim.engine.problem import validate
from grawa_sim.experiments.presets import TIME_BUDGET_CLOCK
from grawa_sim.results.sweep import run_key, sweep

# MNIST-1D, MLP, B = 16 (a worker's IID shard at M = 128 holds 4000 // 128 = 31 samples, so B = 32
# would not fit), SGD lr 0.05 with Nesterov momentum 0.9, and the time-budget study's clock: a 10 ms
# local step on a 1 Gbit/s network with 0.5 ms latency, so that communication costs simulated time.
BASE = Config(dataset="mnist1d", model="mlp", lr=0.05, momentum=0.9, weight_decay=1e-4, batch_size=16,
              **TIME_BUDGET_CLOCK)
COSTS = ("step", "round", "sim_time", "comm_bytes")  # what a run has spent when it reaches a target


def sweep_groups(groups: dict[str, list[Config]], out: str | os.PathLike, column: str, jobs: int = 1,
                 progress: bool | None = None, batch_runs: int | str = 1) -> pd.DataFrame:
    """One `sweep` of the configs of all groups into the cache ``out`` (a config in several groups runs
    once; ``jobs`` and ``batch_runs`` as in `sweep`); the histories of all groups stacked, each tagged
    with its group's name in ``column``. ``run`` names a run within its group (``<group>/<run key>``), so
    a config shared by two groups counts once in each; ``run_key`` is its folder under ``out/runs``."""
    if not groups:
        raise ConfigError(f"{column}: needs at least one group of configs (got none)")
    keys = {name: list(dict.fromkeys(run_key(validate(c)) for c in configs)) for name, configs in groups.items()}
    union = list({run_key(validate(c)): c for configs in groups.values() for c in configs}.values())
    histories = sweep(union, out, progress=progress, jobs=jobs, batch_runs=batch_runs)
    if histories.empty:
        return pd.DataFrame()
    frames = []
    for name, wanted in keys.items():
        part = histories[histories["run"].isin(wanted)]
        part = part.iloc[part["run"].map({k: i for i, k in enumerate(wanted)}).argsort(kind="stable")]
        frames.append(part.assign(**{column: name, "run_key": part["run"], "run": name + "/" + part["run"]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def check_target(target: float) -> float:
    """``target`` as a float in (0, 1], else a ConfigError naming it."""
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
        raise ConfigError(f"target: must be an accuracy in (0, 1] (got {target!r})")
    return float(target)


def first_reach(history: pd.DataFrame, target: float, metric: str = "test_acc") -> pd.Series:
    """The costs (`COSTS`) of one run's history at its first row with ``metric >= target`` and
    ``reached``; NaN costs and ``reached = False`` when no row gets there."""
    target = check_target(target)
    hits = history.index[history[metric].to_numpy(float) >= target]
    if len(hits) == 0:
        return pd.Series({**{c: float("nan") for c in COSTS}, "reached": False})
    row = history.loc[hits[0]]
    return pd.Series({**{c: float(row[c]) for c in COSTS}, "reached": True})


def reach(histories: pd.DataFrame, target: float, by: list[str]) -> pd.DataFrame:
    """One row per run: the ``by`` columns, ``seed``, `first_reach`'s costs and ``reached``."""
    rows = []
    for _, history in histories.groupby("run", sort=False):
        keys = history.iloc[0][[*by, "seed"]].to_dict()
        rows.append({**keys, **first_reach(history.reset_index(drop=True), target).to_dict()})
    return pd.DataFrame(rows)


def reach_summary(reached: pd.DataFrame, by: list[str], cost: str) -> pd.DataFrame:
    """Per group of ``by``: the mean ± 95 % half-width of ``cost`` over the runs that reached the target,
    ``reached`` (how many did), ``n`` (runs), and ``defined`` (every run reached it)."""
    rows = []
    for key, group in reached.groupby(by, sort=False):
        iv = stats.interval(group.loc[group["reached"], cost])
        keys = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, keys)), "mean": iv.mean, "ci95": iv.half_width,
                     "reached": int(group["reached"].sum()), "n": len(group),
                     "defined": bool(group["reached"].all())})
    return pd.DataFrame(rows).set_index(by)


def format_reach(summary: pd.DataFrame, digits: int = 3) -> pd.Series:
    """'<mean> ± <ci95>' where every run reached the target, '<mean> (k/n reached)' where some did,
    'not reached' where none did."""
    def one(row) -> str:
        if row["reached"] == 0:
            return "not reached"
        text = stats.format_interval(row["mean"], row["ci95"], None, digits)
        return text if row["defined"] else f"{text} ({row['reached']}/{row['n']} reached)"

    return summary.apply(one, axis=1)



def wide(table: pd.DataFrame, value: str = "test_acc", columns: str = "algorithm", digits: int = 3) -> pd.DataFrame:
    """An interval table (``<value>_mean``, ``<value>_ci95``, indexed by ``columns`` and other levels) as
    one '<mean> ± <ci95>' cell per ``columns`` value (in order of appearance), one row per other key."""
    flat = table.reset_index()
    flat["cell"] = [stats.format_interval(m, h, None, digits) for m, h in zip(flat[f"{value}_mean"],
                                                                            flat[f"{value}_ci95"])]
    rows = [name for name in table.index.names if name != columns]
    keys = flat[rows].drop_duplicates()
    order = pd.MultiIndex.from_frame(keys) if len(rows) > 1 else list(keys[rows[0]])
    return flat.pivot(index=rows, columns=columns, values="cell").loc[order, list(dict.fromkeys(flat[columns]))]
