"""run(config) -> Result: its contract, determinism and validation."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch

import grawa_sim
from grawa_sim import Config, run

TINY = Config(algorithm="lgrawa", workers=3, steps=24, tau=8, dataset="digits", model="mlp", batch_size=8, eval_every=8)
COLUMNS = {"step", "round", "wall_time", "train_loss", "test_loss", "test_acc", "spread",
           "worker_loss", "center_test_loss", "center_test_acc", "train_acc"}


def test_result_contract():
    r = run(TINY, progress=False)
    assert COLUMNS <= set(r.history.columns)
    assert list(r.history["step"]) == [0, 8, 16, 24]
    assert list(r.history["round"]) == [0, 1, 2, 3]
    assert r.history["wall_time"].is_monotonic_increasing
    assert all(v.shape[0] == 3 for v in r.workers.values())
    assert set(r.evaluated) == set(r.workers)
    for name, stacked in r.workers.items():  # LGRAWA is evaluated on the uniform average
        torch.testing.assert_close(r.evaluated[name], stacked.mean(0))
    layers = len(r.workers)
    assert len(r.weights) == 3 * 3 * layers
    sums = r.weights.groupby(["round", "layer"])["weight"].sum()
    assert ((sums - 1).abs() < 1e-6).all()


def test_dp_counts_a_round_every_step_and_has_zero_spread():
    r = run(dataclasses.replace(TINY, algorithm="dp"), progress=False)
    assert list(r.history["round"]) == [0, 8, 16, 24]
    assert r.history["spread"].max() < 1e-6
    assert r.weights.empty


def test_easgd_is_evaluated_on_its_center():
    r = run(dataclasses.replace(TINY, algorithm="easgd"), progress=False)
    for name in r.workers:
        torch.testing.assert_close(r.evaluated[name], r.center[name])
        assert not torch.allclose(r.evaluated[name], r.workers[name].mean(0))


@pytest.mark.parametrize("algorithm", ["mgrawa", "easgd", "dp"])
def test_same_seed_same_history_bitwise(algorithm):
    cfg = dataclasses.replace(TINY, algorithm=algorithm, sam=algorithm == "dp")
    a, b = run(cfg, progress=False), run(cfg, progress=False)
    cols = [c for c in a.history.columns if c != "wall_time"]
    pd.testing.assert_frame_equal(a.history[cols], b.history[cols], check_exact=True)
    for name in a.workers:
        assert torch.equal(a.workers[name], b.workers[name])


def test_different_seeds_differ():
    a = run(TINY, progress=False)
    b = run(dataclasses.replace(TINY, seed=1), progress=False)
    assert not a.history["train_loss"].equals(b.history["train_loss"])


def test_run_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run(TINY, progress=False)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("change,field", [
    ({"workers": 0}, "workers"), ({"tau": 0}, "tau"), ({"pull": 1.5}, "pull"), ({"prox": -0.1}, "prox"),
    ({"lr": -1.0}, "lr"), ({"algorithm": "adam"}, "algorithm"), ({"dataset": "cifar"}, "dataset"),
    ({"batch_size": 1000, "workers": 2}, "batch_size"), ({"model": "resnet"}, "model"),
])
def test_api_validation_raises_value_error_naming_the_field(change, field):
    with pytest.raises(ValueError, match=rf"^{field}: .*\(got "):
        run(dataclasses.replace(TINY, **change), progress=False)


def test_public_api_names():
    assert {"Config", "run", "grawa_weights", "Result"} <= set(grawa_sim.__all__)
    w = grawa_sim.grawa_weights(torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(w, torch.tensor([0.75, 0.25]))


def test_auto_execution_unrolls_2d_convolutions_on_cpu_only():
    from torch import nn

    from grawa_sim.config import ConfigError
    from grawa_sim.models.execution import choose_execution
    from grawa_sim.models.registry import build

    conv2d = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    assert choose_execution(conv2d, "auto", torch.device("cpu")) == "unrolled"
    assert choose_execution(conv2d, "auto", torch.device("cuda")) == "vmap"
    assert choose_execution(build("cnn", 40, 10), "auto", torch.device("cpu")) == "vmap"  # 1-D convs win under vmap
    assert choose_execution(conv2d, "vmap", torch.device("cpu")) == "vmap"
    assert choose_execution(None, "auto", "cpu") == "vmap"  # no model to look at (a plain loss closure)
    with pytest.raises(ConfigError, match=r"^execution: must be one of auto, vmap, unrolled \(got 'loop'\)$"):
        choose_execution(conv2d, "loop", torch.device("cpu"))  # "loop" is a backend, not an execution


@pytest.mark.parametrize("algorithm", ["mgrawa", "dp", "easgd"])
def test_the_problems_step_and_round_are_the_runs_training(algorithm):
    """run() trains with Problem.step / Problem.round (the benchmarks time the same two calls): driving
    them by hand for ``steps`` steps, a round every tau, gives the run's final workers bit for bit."""
    from grawa_sim.engine.problem import build_problem

    cfg = dataclasses.replace(TINY, algorithm=algorithm, tau=None if algorithm == "dp" else 4)
    result = run(cfg, progress=False)
    problem = build_problem(cfg)
    for step in range(1, cfg.steps + 1):
        problem.step()
        if not problem.communicates_every_step and step % problem.config.tau == 0:
            problem.round()
    for name, stacked in problem.engine.stacked_params().items():
        assert torch.equal(stacked, result.workers[name]), name


def test_a_configuration_is_validated_once(monkeypatch):
    """validate() loads the data set once per configuration: again for the same or the validated
    configuration it finds the work done; a different configuration is checked afresh."""
    import grawa_sim.engine.problem as problem

    calls = []
    original = problem.load
    monkeypatch.setattr(problem, "load", lambda *a, **k: calls.append(a) or original(*a, **k))
    cfg = dataclasses.replace(TINY, seed=12345)
    done = problem.validate(cfg)
    assert len(calls) == 1 and done.step_time is not None
    assert problem.validate(cfg) == done and problem.validate(done) == done
    assert len(calls) == 1
    problem.validate(dataclasses.replace(cfg, seed=12346))
    assert len(calls) == 2


def test_recorder_rows_count_every_local_step_loss():
    """The history's worker_loss is the mean of every minibatch loss since the previous row: with a
    constant-zero learning rate it is the mean over steps of the workers' losses at the start."""
    from grawa_sim.engine.problem import build_problem
    from grawa_sim.engine.recorder import Recorder

    cfg = dataclasses.replace(TINY, algorithm="localsgd", lr=1e-12, tau=4)
    problem = build_problem(cfg)
    recorder = Recorder(problem)
    losses = [problem.step() for _ in range(3)]
    for i, l in enumerate(losses):
        recorder.add_losses(i + 1, l)
    row = recorder.evaluate(3)
    expected = float(torch.cat(losses).double().mean())
    assert row["worker_loss"] == pytest.approx(expected, rel=1e-12)
    assert len(recorder.rows) == 1
    assert math.isnan(recorder.evaluate(3)["worker_loss"])  # no local step since the previous row


def test_a_thousand_and_twenty_four_workers_train_on_one_device():
    """M = 1024 MLP workers on MNIST-1D (shards of 3 samples, B = 3): finite history, GRAWA's weights sum
    to 1 over the 1024 workers every round, and the workers moved apart from their common start."""
    cfg = Config(algorithm="mgrawa", workers=1024, tau=2, steps=4, eval_every=4, model="mlp", batch_size=3)
    r = run(cfg, progress=False)
    assert r.history[["train_loss", "test_loss", "spread"]].notna().all().all()
    assert all(v.shape[0] == 1024 for v in r.workers.values())
    sums = r.weights.groupby("round")["weight"].sum()
    assert len(sums) == 2 and ((sums - 1).abs() < 1e-5).all()
    assert r.history["spread"].iloc[-1] > 0
