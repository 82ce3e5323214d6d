"""Training under a simulated wall-clock budget, the paper's frame, with the latency and the stragglers varied.

Declared before the study runs: MNIST-1D, the 1-D CNN, M = 8, B = 32, each algorithm's reference τ / λ / p,
a 10 ms step and a 1 Gbit/s network; per-message latency α from three clock presets (`CLOCKS`), and three
straggler modes (`STRAGGLERS`): none, per step (each step 4× slower with probability 0.1, independently),
persistent (worker 0 twice as slow for the whole run); the synchronous schedule; a long budget of 6
simulated seconds, read also at a short one of 2 s (the lr is constant, so a run's state at 2 s is that of
a 2 s run); 5 seeds. Methods: DP, LocalSGD, EASGD, LSGD, MGRAWA, LGRAWA and GRAWA's uniform twin.
The family (`family`): in every (clock, stragglers) setting, GRAWA − twin, GRAWA − DP and GRAWA − LocalSGD
for both GRAWA variants, on the test accuracy at each budget, paired by seed, Holm over the whole study.
Time to target: the first simulated second at which a run's test accuracy reaches 90 % / 97 % of the best
method's mean accuracy at the long budget in that setting (read at evaluations, every 32 steps).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from grawa_sim.algorithms import COMPARED
from grawa_sim.config import Config
from grawa_sim.core import stats
from grawa_sim.experiments import protocol
from grawa_sim.experiments.presets import SEEDS, TIME_BUDGET_CLOCK, by_mode, with_twins
from grawa_sim.results.sweep import grid

# name -> (latency in s, what it stands for and where the figure comes from)
CLOCKS = {
    "fabric": (1e-5, "10 µs: an RDMA-class fabric (InfiniBand); the simulator's default latency"),
    "LAN": (1e-4, "0.1 ms: TCP between processes on one host or a LAN; gloo between two processes on this "
                  "machine (bench --calibrate)"),
    "cloud": (5e-4, "0.5 ms: TCP between cloud VMs; the earlier time-budget clock"),
}
STRAGGLERS = ("none", "per step", "persistent")
BUDGETS = (2.0, 6.0)  # short, long (simulated seconds)
LEVELS = (0.9, 0.97)  # time to target: these fractions of the best method's accuracy at the long budget


def straggling(mode: str, workers: int) -> dict:
    """The Config fields of a straggler mode."""
    if mode == "none":
        return {}
    if mode == "per step":
        return {"straggler_prob": 0.1, "straggler_slowdown": 4.0}
    if mode == "persistent":
        return {"speeds": (2.0,) + (1.0,) * (workers - 1)}
    raise ValueError(f"stragglers: must be one of {', '.join(STRAGGLERS)} (got {mode!r})")


def configs(quick: bool, seeds: int | None = None, budget: float | None = None, workers: int = 8,
            algorithms: tuple[str, ...] = COMPARED, clocks: tuple[str, ...] = tuple(CLOCKS),
            stragglers: tuple[str, ...] = STRAGGLERS) -> list[Config]:
    """Every algorithm and GRAWA's twins in every (clock, stragglers) setting (full: 6 s, 5 seeds; quick:
    0.3 s, one seed)."""
    base = Config(dataset="mnist1d", model="cnn", workers=workers, lr=0.05, momentum=0.9, weight_decay=1e-4,
                  batch_size=32, steps=100_000, time_budget=by_mode(budget, quick, 0.3, BUDGETS[-1]),
                  eval_every=8 if quick else 32, step_time=TIME_BUDGET_CLOCK["step_time"],
                  bandwidth=TIME_BUDGET_CLOCK["bandwidth"])
    out = []
    for clock in clocks:
        if clock not in CLOCKS:
            raise ValueError(f"clocks: must be among {', '.join(CLOCKS)} (got {clock!r})")
        for mode in stragglers:
            setting = dataclasses.replace(base, latency=CLOCKS[clock][0], **straggling(mode, workers))
            out += grid(setting, algorithm=list(algorithms), seed=list(range(by_mode(seeds, quick, 1, SEEDS))))
    return with_twins(out)


def family(methods: list[str] | tuple[str, ...]) -> protocol.Family:
    return protocol.grawa_family("time budget", methods, reference="localsgd")


def named(histories: pd.DataFrame) -> pd.DataFrame:
    """``histories`` with ``method``, ``clock`` (the preset of its latency), ``stragglers`` and ``setting``."""
    by_latency = {latency: name for name, (latency, _) in CLOCKS.items()}
    h = protocol.with_methods(histories)
    speeds = h["speeds"] if "speeds" in h else pd.Series(None, index=h.index)
    mode = np.where(h["straggler_prob"] > 0, "per step",
                    np.where(speeds.notna() & speeds.astype(str).ne("None"), "persistent", "none"))
    clock = h["latency"].map(lambda v: by_latency.get(v, f"α = {v:g} s"))
    return h.assign(clock=clock, stragglers=mode, setting=clock + ", " + pd.Series(mode, index=h.index))


def at_budget(histories: pd.DataFrame, budget: float) -> pd.DataFrame:
    """One row per run: its last evaluation at or before ``budget`` simulated seconds (with a final round the
    long budget's last row may pass it by one round: it is taken as the budget's)."""
    h = named(histories)
    last = h.groupby("run", sort=False).tail(1)
    within = h[h["sim_time"] <= budget].groupby("run", sort=False).tail(1)
    rows = within if budget < float(h["time_budget"].max()) else last
    return rows.assign(budget=budget)


def accuracy(histories: pd.DataFrame, budgets: tuple[float, ...] = BUDGETS) -> pd.DataFrame:
    """Test accuracy at each budget per setting and method: mean ± 95 % half-width over finished seeds,
    finished / total, and the local steps per worker reached (mean)."""
    tables = []
    for budget in budgets:
        rows = at_budget(histories, budget)
        table = protocol.outcomes(rows, by=["setting", "method"])
        table["steps"] = rows.groupby(["setting", "method"], sort=False)["steps_mean"].mean().reindex(table.index)
        tables.append(table.assign(budget=budget))
    return pd.concat(tables).set_index("budget", append=True)


def contrasts(histories: pd.DataFrame, budgets: tuple[float, ...] = BUDGETS) -> pd.DataFrame:
    """The declared family in every setting at every budget, paired by seed, Holm over all of them."""
    tables = []
    for budget in budgets:
        rows = at_budget(histories, budget)
        fam = family(list(dict.fromkeys(rows["method"])))
        tables.append(protocol.compare_by(rows, fam, by="setting").assign(budget=budget))
    table = pd.concat(tables, ignore_index=True)
    table["p_holm"] = stats.holm(table["p"].to_numpy(float))
    table["significant_holm"] = table["p_holm"] < stats.ALPHA
    return table


def time_to_target(histories: pd.DataFrame, levels: tuple[float, ...] = LEVELS) -> pd.DataFrame:
    """Per setting, level and method: the target (level × the best method's mean accuracy at the long
    budget), how many runs reached it, and the mean ± 95 % half-width of their first simulated second at
    or above it (over the runs that reached it; a run that never does is counted, not timed)."""
    h = named(histories)
    finals = h.groupby("run", sort=False).tail(1)
    best = finals.groupby(["setting", "method"])["test_acc"].mean().groupby("setting").max()
    rows = []
    for (setting, method), group in h.groupby(["setting", "method"], sort=False):
        for level in levels:
            target = level * float(best[setting])
            times = []
            for _, run in group.groupby("run", sort=False):
                hit = run[run["test_acc"] >= target]
                times.append(float(hit["sim_time"].iloc[0]) if len(hit) else math.nan)
            ci = stats.interval(times)
            rows.append({"setting": setting, "method": method, "level": level, "target": target,
                         "reached": int(np.isfinite(times).sum()), "runs": len(times),
                         "time_mean": ci.mean, "time_ci95": ci.half_width})
    return pd.DataFrame(rows).set_index(["setting", "method", "level"])
