"""The time-budget study: its settings, the labels read back from runs, accuracy at a budget, time to target."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from grawa_sim.experiments import time_budget as tb
from grawa_sim.results.sweep import sweep


def test_configs_cross_clocks_and_stragglers_with_the_twins():
    configs = tb.configs(False, seeds=2, algorithms=("dp", "mgrawa"))
    # clocks x (none; per step, persistent: sync and async) x (dp, mgrawa, its twin) x seeds
    assert len(configs) == 3 * 5 * 3 * 2
    assert {(c.schedule, c.straggler_prob > 0 or c.speeds is not None) for c in configs} == {
        ("sync", False), ("sync", True), ("async", True)}  # async only with stragglers: without, it is sync
    assert {c.latency for c in configs} == {1e-5, 1e-4, 5e-4}
    assert {c.time_budget for c in configs} == {6.0} and {c.step_time for c in configs} == {0.01}
    persistent = [c for c in configs if c.speeds is not None]
    assert {c.speeds for c in persistent} == {(2.0,) + (1.0,) * 7} and len(persistent) == 2 * len(configs) // 5
    assert {(c.straggler_prob, c.straggler_slowdown) for c in configs if c.straggler_prob} == {(0.1, 4.0)}
    assert {c.weighting for c in configs if c.algorithm == "mgrawa"} == {None, "uniform"}
    with pytest.raises(ValueError, match="^clocks: "):
        tb.configs(True, clocks=("moon",))
    with pytest.raises(ValueError, match="^stragglers: "):
        tb.configs(True, stragglers=("sometimes",))
    with pytest.raises(ValueError, match="^schedules: "):
        tb.configs(True, schedules=("eventually",))


def _history(method: str, seed: int, accs: list[float], latency: float = 1e-4, straggler_prob: float = 0.0,
             speeds=None, schedule: str = "sync") -> pd.DataFrame:
    algorithm, _, variant = method.partition("+")
    times = np.arange(len(accs), dtype=float)  # one evaluation per simulated second
    return pd.DataFrame({"run": f"{method}-{seed}-{latency}-{straggler_prob}-{schedule}", "algorithm": algorithm,
                         "sam": False, "schedule": schedule,
                         "weighting": variant or None, "seed": seed, "latency": latency,
                         "straggler_prob": straggler_prob, "speeds": [speeds] * len(accs), "time_budget": 4.0,
                         "sim_time": times, "test_acc": accs, "steps_mean": times * 10, "status": "finished"})


def test_labels_budgets_and_time_to_target_on_hand_made_runs():
    h = pd.concat([_history("mgrawa", 0, [0.1, 0.5, 0.7, 0.8, 0.9]), _history("mgrawa", 1, [0.1, 0.4, 0.6, 0.7, 0.7]),
                   _history("dp", 0, [0.1, 0.2, 0.3, 0.4, 0.5]), _history("dp", 1, [0.1, 0.2, 0.2, 0.3, 0.4]),
                   _history("dp", 0, [0.1] * 5, latency=1e-5, speeds=(2.0, 1.0)),
                   _history("dp", 0, [0.1] * 5, latency=5e-4, straggler_prob=0.1, schedule="async")],
                  ignore_index=True)
    named = tb.named(h)
    assert set(named["setting"]) == {"LAN, none", "fabric, persistent", "cloud, per step, async"}
    short = tb.at_budget(h, 2.5).set_index("run")["test_acc"]
    assert short["mgrawa-0-0.0001-0.0-sync"] == 0.7 and short["dp-1-0.0001-0.0-sync"] == 0.2  # last <= 2.5 s
    long = tb.at_budget(h, 4.0).set_index("run")["test_acc"]
    assert long["mgrawa-1-0.0001-0.0-sync"] == 0.7
    times = tb.time_to_target(h, levels=(0.9,))
    best = (0.9 + 0.7) / 2  # MGRAWA's mean at the long budget, the best in the LAN setting
    row = times.loc[("LAN, none", "mgrawa", 0.9)]
    assert row["target"] == pytest.approx(0.9 * best) and (row["reached"], row["runs"]) == (1, 2)
    assert row["time_mean"] == 3.0  # seed 0 reaches 0.72 at 3 s; seed 1 never does (counted, not timed)
    dp = times.loc[("LAN, none", "dp", 0.9)]
    assert dp["reached"] == 0 and math.isnan(dp["time_mean"])


def test_a_run_that_diverges_after_the_short_budget_is_finished_there():
    late = _history("mgrawa", 0, [0.1, 0.5, 0.6, 0.7, 0.1]).assign(status="diverged")  # diverges after 3 s
    early = _history("mgrawa", 1, [0.1, 0.5]).assign(status="diverged", time_budget=4.0)  # diverges after 1 s
    h = pd.concat([late, early], ignore_index=True)
    short = tb.at_budget(h, 2.5).set_index("seed")
    assert short.loc[0, "status"] == "finished" and short.loc[0, "test_acc"] == 0.6
    assert short.loc[1, "status"] == "diverged"  # it had stopped before 2.5 s
    assert (tb.at_budget(h, 4.0)["status"] == "diverged").all()  # at the long budget both had diverged
    table = tb.accuracy(h, budgets=(2.5, 4.0)).xs(("LAN, none", "mgrawa"), level=("setting", "method"))
    assert table["finished"].tolist() == [1, 0]


def test_a_quick_study_end_to_end(tmp_path):
    configs = tb.configs(True, seeds=2, budget=0.2, algorithms=("dp", "mgrawa"), clocks=("fabric",),
                         stragglers=("none", "per step"))
    histories = sweep(configs, tmp_path, progress=False, batch_runs="auto", log=io.StringIO())
    accuracy = tb.accuracy(histories, budgets=(0.1, 0.2))
    assert set(accuracy.index.get_level_values("setting")) == {"fabric, none", "fabric, per step",
                                                               "fabric, per step, async"}
    assert (accuracy["total"] == 2).all()
    contrasts = tb.contrasts(histories, budgets=(0.1, 0.2))
    assert len(contrasts) == 2 * 3 * 2  # budgets x settings x (MGRAWA − twin, MGRAWA − DP; no LocalSGD here)
    assert (contrasts["p_holm"].fillna(1) >= contrasts["p"].fillna(1)).all()
