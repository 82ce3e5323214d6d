"""run_many: R runs in one stacked ensemble equal R separate run() calls (float64), for every algorithm."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from grawa_sim import Config, algorithms, run
from grawa_sim.config import ConfigError
from grawa_sim.engine.run_many import batch_key, run_many

BASE = Config(workers=3, steps=16, tau=4, dataset="digits", model="mlp", batch_size=8, eval_every=8, dtype="float64")
# per run: seed, lr, momentum, weight decay, prox
SETTINGS = [(0, 0.05, 0.9, 1e-4, 0.0), (1, 0.1, 0.0, 0.0, 0.1), (2, 0.02, 0.5, 1e-3, 0.05)]


def _configs(algorithm: str, **change) -> list[Config]:
    every_step = algorithms.get(algorithm).communicates_every_step
    base = dataclasses.replace(BASE, algorithm=algorithm, tau=None if every_step else 4, **change)
    return [dataclasses.replace(base, seed=s, lr=lr, momentum=mu, weight_decay=wd, prox=None if every_step else p)
            for s, lr, mu, wd, p in SETTINGS]


def _assert_same(alone, batched, tol: float = 1e-10) -> None:
    assert set(alone.workers) == set(batched.workers)
    for name in alone.workers:
        torch.testing.assert_close(batched.workers[name], alone.workers[name], rtol=0, atol=tol)
        torch.testing.assert_close(batched.evaluated[name], alone.evaluated[name], rtol=0, atol=tol)
        torch.testing.assert_close(batched.center[name], alone.center[name], rtol=0, atol=tol)
    columns = [c for c in alone.history.columns if c != "wall_time"]
    assert list(batched.history.columns) == list(alone.history.columns)
    diff = (batched.history[columns] - alone.history[columns]).abs()
    assert (diff.fillna(0) <= tol).all().all(), diff.max()
    assert batched.history[columns].isna().equals(alone.history[columns].isna())
    assert len(batched.weights) == len(alone.weights)
    if len(alone.weights):
        assert (batched.weights[["round", "worker", "layer"]].values == alone.weights[["round", "worker", "layer"]]
                .values).all()
        assert (batched.weights["weight"] - alone.weights["weight"]).abs().max() <= tol


@pytest.mark.parametrize("algorithm", algorithms.names())
def test_each_run_of_an_ensemble_equals_the_run_alone(algorithm):
    configs = _configs(algorithm)
    results = run_many(configs, progress=False)
    assert [r.config for r in results] == [run(c, progress=False).config for c in configs]
    for config, batched in zip(configs, results):
        _assert_same(run(config, progress=False), batched)


def test_runs_differ_from_each_other():
    """The check above can fail: the three runs of an ensemble really differ (seed, lr, ...)."""
    results = run_many(_configs("mgrawa"), progress=False)
    first = next(iter(results[0].workers))
    assert not torch.allclose(results[0].workers[first], results[1].workers[first])
    assert results[0].history["test_loss"].iloc[-1] != results[2].history["test_loss"].iloc[-1]


@pytest.mark.parametrize("algorithm, change", [("lgrawa", {"model": "cnn_bn", "dataset": "mnist1d"}),
                                               ("dp", {"sam": True}),
                                               ("lgrawa", {"speed_spread": 0.5, "straggler_prob": 0.2}),
                                               ("localsgd", {"lr_spread": 4.0})])
def test_batch_norm_sam_and_slow_workers_in_an_ensemble(algorithm, change):
    """Per-run batch-norm statistics, SAM's second pass, per-run simulated clocks and per-worker lrs."""
    configs = _configs(algorithm, **change)
    for config, batched in zip(configs, run_many(configs, progress=False)):
        _assert_same(run(config, progress=False), batched)


@pytest.mark.parametrize("change, field", [({"workers": 4}, "workers"), ({"tau": 8}, "tau"),
                                           ({"algorithm": "localsgd"}, "algorithm"), ({"steps": 24}, "steps"),
                                           ({"lr_spread": 2.0}, "lr_spread")])
def test_incompatible_runs_are_refused_naming_the_field(change, field):
    configs = _configs("mgrawa")
    configs[1] = dataclasses.replace(configs[1], **change)
    with pytest.raises(ConfigError, match=f"^{field}: runs in one ensemble may differ only in seed"):
        run_many(configs, progress=False)


@pytest.mark.parametrize("change, field", [({"schedule": "async"}, "schedule"), ({"wall_budget": 1.0}, "wall_budget")])
def test_runs_that_must_run_alone_are_refused(change, field):
    configs = [dataclasses.replace(c, **change) for c in _configs("mgrawa")]
    with pytest.raises(ConfigError, match=f"^{field}: runs in one ensemble need"):
        run_many(configs, progress=False)
    assert batch_key(configs[0]) is None


@pytest.mark.parametrize("change, field", [({"straggler_prob": 0.1}, "straggler_prob"),
                                           ({"speed_spread": 0.3}, "speed_spread")])
def test_runs_reading_a_seeded_clock_are_refused(change, field):
    configs = [dataclasses.replace(c, time_budget=0.02, step_time=1e-3, **change) for c in _configs("mgrawa")]
    with pytest.raises(ConfigError, match=f"^{field}: runs that read the simulated clock"):
        run_many(configs, progress=False)
    assert batch_key(configs[0]) is None
    assert batch_key(dataclasses.replace(configs[0], time_budget=None)) is not None  # a step budget may batch


@pytest.mark.parametrize("algorithm", ["mgrawa", "dp", "easgd"])
def test_time_budgeted_runs_with_one_clock_equal_the_runs_alone(algorithm):
    """A time budget ending between rounds, evaluations every eval_seconds and a cosine lr over the budget:
    with no random stragglers every run's clock ticks alike, so the ensemble equals the runs alone."""
    configs = _configs(algorithm, steps=10_000, eval_every=None, step_time=1e-3, time_budget=0.0215,
                       eval_seconds=0.006, lr_schedule="cosine", lr_decay_unit="seconds", speeds=(1.0, 1.5, 1.0))
    for alone, batched in zip((run(c, progress=False) for c in configs), run_many(configs, progress=False)):
        _assert_same(alone, batched)
        assert alone.final["sim_time"] >= 0.0215 and len(alone.history) > 3


def test_batch_keys_group_what_may_share_an_ensemble():
    configs = _configs("mgrawa")
    assert len({batch_key(c) for c in configs}) == 1
    assert batch_key(dataclasses.replace(configs[0], tau=8)) != batch_key(configs[0])
    with pytest.raises(ConfigError, match="^configs: "):
        run_many([])
