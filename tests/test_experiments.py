"""The notebooks' config builders take their knobs as keywords; the notebooks' tables come from stats."""

from __future__ import annotations

import pytest

from grawa_sim.experiments import presets as experiments

BUILDERS = [experiments.quickstart_configs]


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
    assert len(configs) == len(builder(True, algorithms=("mgrawa",))) + len(builder(True, algorithms=("dp",)))


def test_quickstart_shows_mgrawa_beside_its_uniform_twin():
    configs = experiments.quickstart_configs(True)
    assert [(c.algorithm, c.weighting) for c in configs if c.algorithm == "mgrawa"] == [
        ("mgrawa", None), ("mgrawa", "uniform")]
    assert all(c.weighting is None for c in configs if c.algorithm != "mgrawa")


def test_quickstart_steps_and_tau():
    configs = experiments.quickstart_configs(False, steps=500, tau=8)
    assert {c.steps for c in configs} == {500}
    assert {c.algorithm: c.tau for c in configs} == {"mgrawa": 8, "lgrawa": 8, "localsgd": 8, "dp": None}
    assert {c.steps for c in experiments.quickstart_configs(True)} == {64}
    assert {c.steps for c in experiments.quickstart_configs(False)} == {3000}
