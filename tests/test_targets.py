"""Stopping at a matched train loss, time to a test-accuracy target, and the final round of a periodic run."""

from __future__ import annotations

import dataclasses
import math

import pytest

from grawa_sim import Config, run
from grawa_sim.algorithms import get
from grawa_sim.config import ConfigError
from grawa_sim.engine.run_many import run_many
from tests.helpers import max_abs_diff

BASE = Config(algorithm="mgrawa", workers=3, steps=96, tau=8, lr=0.05, momentum=0.9, weight_decay=1e-3,
              dtype="float64", dataset="mnist1d", model="mlp", width=16, batch_size=16, eval_every=8)


@pytest.fixture(scope="module")
def free_run():
    return run(BASE, progress=False)


def test_target_train_loss_stops_at_the_first_evaluation_that_reaches_it(free_run):
    losses = free_run.history["train_loss"]
    target = float(losses.iloc[len(losses) // 2])  # reached about half-way
    first = int((losses <= target).to_numpy().argmax())
    stopped = run(dataclasses.replace(BASE, target_train_loss=target), progress=False)
    assert len(stopped.history) == first + 1
    assert stopped.reached_step == free_run.history["step"].iloc[first]
    assert stopped.reached_time == free_run.history["sim_time"].iloc[first]
    assert stopped.reached("train_loss") == (stopped.reached_step, stopped.reached_time)
    before = stopped.history["train_loss_reached_step"].iloc[:-1]
    assert before.isna().all() and stopped.final["train_loss"] <= target


def test_an_unreached_target_is_not_an_error(free_run):
    never = run(dataclasses.replace(BASE, target_train_loss=1e-9, target_test_acc=1.0), progress=False)
    assert len(never.history) == len(free_run.history)
    assert never.reached_step is None and never.reached("test_acc") is None
    assert math.isnan(never.final["train_loss_reached_time"])


def test_target_test_acc_records_the_time_and_the_run_goes_on_unless_asked(free_run):
    accuracy = free_run.history["test_acc"]
    target = float(accuracy.iloc[len(accuracy) // 3])
    first = int((accuracy >= target).to_numpy().argmax())
    timed = run(dataclasses.replace(BASE, target_test_acc=target), progress=False)
    assert len(timed.history) == len(free_run.history)
    assert timed.reached("test_acc") == (free_run.history["step"].iloc[first], free_run.history["sim_time"].iloc[first])
    assert timed.history["test_acc_reached_step"].iloc[first:].eq(free_run.history["step"].iloc[first]).all()
    stopping = run(dataclasses.replace(BASE, target_test_acc=target, stop_at_target_acc=True), progress=False)
    assert len(stopping.history) == first + 1


def test_target_fields_are_checked():
    with pytest.raises(ConfigError, match="^target_test_acc: must lie in"):
        Config(target_test_acc=1.5)
    with pytest.raises(ConfigError, match="^stop_at_target_acc: needs a target_test_acc"):
        Config(stop_at_target_acc=True)
    with pytest.raises(ConfigError, match="^target_train_loss: must be a number"):
        Config(target_train_loss="low")
    with pytest.raises(ValueError, match="^target_test_acc: the run had no target"):
        run(dataclasses.replace(BASE, steps=8), progress=False).reached("test_acc")


def test_batched_runs_stop_at_their_own_target_like_the_run_alone(free_run):
    target = float(free_run.history["train_loss"].iloc[4])
    cfgs = [dataclasses.replace(BASE, seed=s, target_train_loss=target) for s in range(3)]
    for many, cfg in zip(run_many(cfgs, progress=False), cfgs):
        alone = run(cfg, progress=False)
        assert len(many.history) == len(alone.history)
        assert many.reached_step == alone.reached_step
        assert max_abs_diff(many.workers, alone.workers) <= 1e-10


@pytest.mark.parametrize("algorithm", ["diloco", "easgd", "mgrawa"])
def test_a_run_ending_between_rounds_ends_with_a_round(algorithm):
    """steps % tau != 0: the last evaluation comes after one more round, computed by the loop backend's
    reference from the workers just before it (the round it would miss without it)."""
    cfg = dataclasses.replace(BASE, algorithm=algorithm, steps=20, tau=8, eval_every=8, pull=None, prox=None)
    seen, start = [], {}
    result = run(cfg, progress=False, on_round=lambda k, before, info: seen.append((k, before)),
                 on_evaluate=lambda step, evaluated: start.setdefault("x", evaluated))
    assert [k for k, _ in seen] == [1, 2, 3] and result.final["round"] == 3
    if algorithm == "diloco":  # x_global after the final outer step, by the reference's own arithmetic
        kind = get("diloco")
        hyper = kind.hyper_type(pull=1.0, prox=0.0, tau=8)
        reference = kind.reference(hyper, start["x"], cfg.workers)
        for _, before in seen:
            reference.round([{n: x[i] for n, x in before.items()} for i in range(cfg.workers)], None)
        assert max_abs_diff(result.evaluated, reference.evaluated([])) <= 1e-12
    rounds_only = run(dataclasses.replace(cfg, steps=16), progress=False)
    step_cost = result.history["sim_time"].iloc[-1] - rounds_only.history["sim_time"].iloc[-1]
    round_cost = rounds_only.history["comm_time"].iloc[-1] / 2
    assert result.final["comm_time"] == pytest.approx(3 * round_cost)  # the final round is charged
    assert step_cost > round_cost


def test_a_time_budget_ending_between_rounds_ends_with_a_round():
    cfg = dataclasses.replace(BASE, algorithm="diloco", steps=10_000, tau=8, pull=None, prox=None,
                              step_time=0.01, time_budget=0.205, eval_every=None)
    result = run(cfg, progress=False)
    assert result.final["steps_mean"] == 21  # 0.21 s > budget after 21 steps, between rounds 2 and 3
    assert result.final["round"] == 3
