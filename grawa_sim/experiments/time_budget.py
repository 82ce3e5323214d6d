"""Training under a simulated wall-clock budget, the paper's frame, with the latency and the stragglers varied.

Declared before the study runs: MNIST-1D, the 1-D CNN, M = 8, B = 32, each algorithm's reference τ / λ / p,
a 10 ms step and a 1 Gbit/s network; per-message latency α from three clock presets (`CLOCKS`), and three
straggler modes (`STRAGGLERS`): none, per step (each step 4× slower with probability 0.1, independently),
persistent (worker 0 twice as slow for the whole run); the synchronous schedule, and with stragglers also
the asynchronous one (a round holds M·τ granted local steps, fast workers take more of them; without
stragglers it equals sync); a long budget of 6 simulated seconds, read also at a short one of 2 s (the lr
is constant, so a run's state at 2 s is that of a 2 s run); 5 seeds. Methods: DP, LocalSGD, EASGD, LSGD,
MGRAWA, LGRAWA and GRAWA's uniform twin.
The family (`family`): in every (clock, stragglers, schedule) setting, GRAWA − twin, GRAWA − DP and GRAWA − LocalSGD
for both GRAWA variants, on the test accuracy at each budget, paired by seed, Holm over the whole study.
Time to target: the first simulated second at which a run's test accuracy reaches 90 % / 97 % of the best
method's mean accuracy at the long budget in that setting (read at evaluations, every 32 steps).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from grawa_sim.algorithms import COMPARED
from grawa_sim.config import Config
from grawa_sim.experiments import budget_tables, protocol
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
SCHEDULES = ("sync", "async")
BUDGETS = (2.0, 6.0)  # short, long (simulated seconds)
LEVELS = budget_tables.LEVELS


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
            stragglers: tuple[str, ...] = STRAGGLERS, schedules: tuple[str, ...] = SCHEDULES) -> list[Config]:
    """Every algorithm and GRAWA's twins in every (clock, stragglers, schedule) setting (full: 6 s, 5 seeds;
    quick: 0.3 s, one seed). The asynchronous schedule runs only with stragglers: without them every
    worker arrives at once and async is sync exactly."""
    for schedule in schedules:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedules: must be among {', '.join(SCHEDULES)} (got {schedule!r})")
    base = Config(dataset="mnist1d", model="cnn", workers=workers, lr=0.05, momentum=0.9, weight_decay=1e-4,
                  batch_size=32, steps=100_000, time_budget=by_mode(budget, quick, 0.3, BUDGETS[-1]),
                  eval_every=8 if quick else 32, step_time=TIME_BUDGET_CLOCK["step_time"],
                  bandwidth=TIME_BUDGET_CLOCK["bandwidth"])
    out = []
    for clock in clocks:
        if clock not in CLOCKS:
            raise ValueError(f"clocks: must be among {', '.join(CLOCKS)} (got {clock!r})")
        for mode in stragglers:
            for schedule in schedules:
                if schedule == "async" and mode == "none":
                    continue
                setting = dataclasses.replace(base, latency=CLOCKS[clock][0], schedule=schedule,
                                              **straggling(mode, workers))
                out += grid(setting, algorithm=list(algorithms), seed=list(range(by_mode(seeds, quick, 1, SEEDS))))
    return with_twins(out)


def family(methods: list[str] | tuple[str, ...]) -> protocol.Family:
    return protocol.grawa_family("time budget", methods, reference="localsgd")


def named(histories: pd.DataFrame) -> pd.DataFrame:
    """``histories`` with ``method``, ``clock`` (the preset of its latency), ``stragglers`` (the mode, with
    ", async" under the asynchronous schedule) and ``setting`` ("<clock>, <stragglers>")."""
    by_latency = {latency: name for name, (latency, _) in CLOCKS.items()}
    h = protocol.with_methods(histories)
    speeds = h["speeds"] if "speeds" in h else pd.Series(None, index=h.index)
    mode = np.where(h["straggler_prob"] > 0, "per step",
                    np.where(speeds.notna() & speeds.astype(str).ne("None"), "persistent", "none"))
    mode = pd.Series(mode, index=h.index)
    if "schedule" in h:
        mode = mode.where(h["schedule"].ne("async"), mode + ", async")
    clock = h["latency"].map(lambda v: by_latency.get(v, f"α = {v:g} s"))
    return h.assign(clock=clock, stragglers=mode, setting=clock + ", " + mode)


def at_budget(histories: pd.DataFrame, budget: float) -> pd.DataFrame:
    """`budget_tables.at_budget` of the `named` histories."""
    return budget_tables.at_budget(named(histories), budget)


def accuracy(histories: pd.DataFrame, budgets: tuple[float, ...] = BUDGETS) -> pd.DataFrame:
    """Test accuracy at each budget per setting and method (`budget_tables.accuracy`)."""
    return budget_tables.accuracy(named(histories), budgets, "setting")


def contrasts(histories: pd.DataFrame, budgets: tuple[float, ...] = BUDGETS) -> pd.DataFrame:
    """The declared family in every setting at every budget, paired by seed, Holm over all of them."""
    h = named(histories)
    return budget_tables.contrasts(h, budgets, family(list(dict.fromkeys(h["method"]))), "setting")


def time_to_target(histories: pd.DataFrame, levels: tuple[float, ...] = LEVELS) -> pd.DataFrame:
    """Per setting, level and method: the time to level × the best method's mean accuracy at the long budget
    (`budget_tables.time_to_target`)."""
    return budget_tables.time_to_target(named(histories), levels, "setting")
