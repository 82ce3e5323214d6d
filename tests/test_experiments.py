"""The notebooks' config builders take their knobs as keywords; the notebooks' tables come from stats."""

from __future__ import annotations

import pandas as pd
import pytest

from grawa_sim.experiments import presets as experiments

BUILDERS = [experiments.quickstart_configs, experiments.time_budget_configs]


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_seeds_multiply_the_runs(builder, quick):
    one, two = builder(quick, seeds=1), builder(quick, seeds=2)
    assert len(two) == 2 * len(one)
    assert sorted({c.seed for c in two}) == [0, 1]
    assert {c.seed for c in one} == {0}


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_workers_and_algorithms_reach_every_config(builder):
    configs = builder(True, workers=4, algorithms=("mgrawa", "dp"))
    assert {c.workers for c in configs} == {4}
    assert {c.algorithm for c in configs} == {"mgrawa", "dp"}
    assert len(configs) == 2 * len(builder(True, algorithms=("mgrawa",)))


def test_quickstart_steps_and_tau():
    configs = experiments.quickstart_configs(False, steps=500, tau=8)
    assert {c.steps for c in configs} == {500}
    assert {c.algorithm: c.tau for c in configs} == {"mgrawa": 8, "lgrawa": 8, "localsgd": 8, "dp": None}
    assert {c.steps for c in experiments.quickstart_configs(True)} == {64}
    assert {c.steps for c in experiments.quickstart_configs(False)} == {3000}


def test_time_budget_budget_and_settings():
    configs = experiments.time_budget_configs(False, budget=2.5, settings=(("async", 0.2),))
    assert {c.time_budget for c in configs} == {2.5}
    assert {(c.schedule, c.straggler_prob) for c in configs} == {("async", 0.2)}
    assert len(configs) * 3 == len(experiments.time_budget_configs(False, budget=2.5))
    assert {c.time_budget for c in experiments.time_budget_configs(True)} == {0.3}
    assert {c.time_budget for c in experiments.time_budget_configs(False)} == {6.0}


def finals(rows: list[dict]) -> pd.DataFrame:
    """One history row per run (its final one), with the fields the summaries read."""
    frame = pd.DataFrame(rows)
    frame["run"] = [f"r{i}" for i in range(len(frame))]
    return frame


def test_budget_summary_reports_the_slowest_and_fastest_worker():
    rows = [dict(algorithm="mgrawa", seed=s, schedule="async", straggler_prob=0.1, test_acc=0.7 + 0.1 * s,
                 steps_mean=10.0, steps_min=6.0 + s, steps_max=14.0 + s, round=3, comm_time=1.0, sim_time=4.0)
            for s in range(2)]
    table = experiments.budget_summary(finals(rows))
    row = table.loc[("async, stragglers", "mgrawa")]
    assert (row["steps_min"], row["steps_max"], row["n"]) == (6.5, 14.5, 2)
    assert row["test_acc_mean"] == pytest.approx(0.75)
    assert row["comm_share"] == pytest.approx(0.25)
