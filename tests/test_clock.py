"""The simulated clock: α-β costs, sync and async schedules, budgets, accounting."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch

from grawa_sim import Config, run
from grawa_sim.config import ALGORITHMS
from grawa_sim.engine.clock import Clock, ClockModel, Collective, collective_bytes, collective_time

BW, LAT = 1e9, 1e-5
CLOCK = ["sim_time", "compute_time", "comm_time", "comm_bytes", "steps_min", "steps_mean", "steps_max"]


@pytest.mark.parametrize("m", [2, 4, 8])
@pytest.mark.parametrize("p", [1, 1000, 270_000])
def test_cost_formulas_by_hand(m, p):
    n = 4 * p
    assert collective_time(Collective("all_reduce", p), m, BW, LAT) == pytest.approx(
        2 * (m - 1) / m * n / BW + 2 * (m - 1) * LAT, rel=1e-12)
    steps = {2: 1, 4: 2, 8: 3}[m]  # ceil(log2 M)
    for kind in ("broadcast", "reduce"):
        assert collective_time(Collective(kind, p), m, BW, LAT) == pytest.approx(steps * (LAT + n / BW), rel=1e-12)
    assert collective_time(Collective("all_gather", p), m, BW, LAT) == pytest.approx((m - 1) * (LAT + n / BW))
    assert collective_bytes(Collective("all_reduce", p), m) == 2 * (m - 1) * n
    assert collective_bytes(Collective("broadcast", p), m) == (m - 1) * n
    assert collective_bytes(Collective("all_gather", p), m) == m * (m - 1) * n


def test_single_worker_communicates_for_free():
    assert collective_time(Collective("all_reduce", 10**6), 1, BW, LAT) == 0
    assert collective_bytes(Collective("all_reduce", 10**6), 1) == 0


BASE = Config(algorithm="mgrawa", workers=4, tau=8, steps=64, dataset="digits", model="mlp", batch_size=8,
              eval_every=8, step_time=0.01, bandwidth=BW, latency=LAT, dtype="float64")


@pytest.mark.parametrize("algorithm", ["mgrawa", "lsgd", "easgd"])
def test_async_equals_sync_with_equal_speeds(algorithm):
    sync = run(dataclasses.replace(BASE, algorithm=algorithm, tau=8), progress=False)
    asyn = run(dataclasses.replace(BASE, algorithm=algorithm, tau=8, schedule="async"), progress=False)
    cols = [c for c in sync.history.columns if c != "wall_time"]
    pd.testing.assert_frame_equal(sync.history[cols], asyn.history[cols], check_exact=True)


def test_async_lets_a_fast_worker_do_more_steps():
    speeds = (0.5, 1.0, 1.0, 1.0)  # worker 0 twice as fast
    asyn = run(dataclasses.replace(BASE, schedule="async", speeds=speeds, steps=96), progress=False)
    final = asyn.history.iloc[-1]
    rounds = int(final["round"])
    # per round of M*tau = 32 steps: the fast worker does 2x the steps of each slow one (12.8 vs 6.4)
    assert final["steps_max"] / final["steps_min"] == pytest.approx(2.0, rel=0.15)
    assert rounds >= 3
    sync = run(dataclasses.replace(BASE, speeds=speeds, steps=96), progress=False).history.iloc[-1]
    assert sync["steps_min"] == sync["steps_max"] == 96
    # sync waits for the slow workers: 96 steps of 0.01 s plus 12 rounds of communication and probes
    assert sync["sim_time"] > 96 * 0.01
    # async makes the same number of steps in less simulated time
    assert final["sim_time"] < sync["sim_time"] * final["steps_mean"] / 96


def test_dp_pays_one_allreduce_per_step_and_grawa_32x_less():
    dp = run(dataclasses.replace(BASE, algorithm="dp", steps=64, eval_every=64), progress=False).history.iloc[-1]
    params = sum(p[0].numel() for p in run(dataclasses.replace(BASE, steps=8), progress=False).workers.values())
    allreduce = collective_time(Collective("all_reduce", params), 4, BW, LAT)
    assert dp["sim_time"] == pytest.approx(64 * (0.01 + allreduce), rel=1e-9)
    assert dp["comm_bytes"] == 64 * 2 * 3 * 4 * params
    grawa = run(dataclasses.replace(BASE, tau=32, steps=64, eval_every=64), progress=False).history.iloc[-1]
    assert grawa["round"] == 2 and dp["round"] == 64
    per_step_dp = dp["comm_bytes"] / 64
    per_step_grawa = grawa["comm_bytes"] / 64
    assert per_step_grawa == pytest.approx(per_step_dp / 32, rel=1e-3)  # + a tiny normaliser all-reduce
    assert per_step_grawa > per_step_dp / 32


def test_time_budget_stops_at_the_first_evaluation_past_it():
    full = run(BASE, progress=False).history
    budget = float(full["sim_time"].iloc[3]) - 1e-9  # just before the 3rd evaluation after step 0
    cut = run(dataclasses.replace(BASE, time_budget=budget), progress=False).history
    assert cut["sim_time"].iloc[-1] >= budget
    assert cut["sim_time"].iloc[-2] < budget
    assert len(cut) == 4
    pd.testing.assert_frame_equal(cut.drop(columns="wall_time"), full.iloc[:4].drop(columns="wall_time"))


def test_stragglers_are_seeded_and_slow_the_clock():
    cfg = dataclasses.replace(BASE, straggler_prob=0.2, straggler_slowdown=5.0, schedule="async")
    a, b = run(cfg, progress=False).history, run(cfg, progress=False).history
    pd.testing.assert_frame_equal(a.drop(columns="wall_time"), b.drop(columns="wall_time"), check_exact=True)
    other = run(dataclasses.replace(cfg, seed=1), progress=False).history
    assert not math.isclose(other["sim_time"].iloc[-1], a["sim_time"].iloc[-1])
    plain = run(dataclasses.replace(BASE, schedule="async"), progress=False).history
    assert a["sim_time"].iloc[-1] > plain["sim_time"].iloc[-1]


@pytest.mark.parametrize("algorithm", ["mgrawa", "lsgd"])
def test_async_vmap_matches_loop(algorithm):
    cfg = dataclasses.replace(BASE, algorithm=algorithm, schedule="async", speeds=(0.5, 1.0, 1.5, 1.0),
                              straggler_prob=0.1)
    fast = run(cfg, progress=False)
    ref = run(dataclasses.replace(cfg, backend="loop"), progress=False)
    cols = [c for c in fast.history.columns if c != "wall_time"]
    assert (fast.history[cols] - ref.history[cols]).abs().max().max() <= 1e-9
    assert fast.history["steps_max"].iloc[-1] > fast.history["steps_min"].iloc[-1]


def test_lr_decays_at_simulated_seconds():
    history = run(dataclasses.replace(BASE, lr_decay_at=(0.2,), lr_decay_unit="seconds"), progress=False).history
    assert set(history.loc[history["sim_time"] < 0.2, "lr_now"]) == {BASE.lr}
    late = history.loc[history["sim_time"] >= 0.2, "lr_now"]
    assert len(late) and (late - BASE.lr * 0.1).abs().max() < 1e-15


@pytest.mark.parametrize("unit,at", [("steps", (20.0,)), ("seconds", (0.2,))])
def test_lr_decay_changes_training_the_same_way_in_both_backends(unit, at):
    from tests.helpers import max_abs_diff

    cfg = dataclasses.replace(BASE, lr_decay_at=at, lr_decay_unit=unit)
    fast = run(cfg, progress=False)
    ref = run(dataclasses.replace(cfg, backend="loop"), progress=False)
    plain = run(BASE, progress=False)
    assert max_abs_diff(fast.workers, ref.workers) < 1e-10
    assert max_abs_diff(fast.workers, plain.workers) > 1e-3  # the decay really reached the optimizer


def test_wall_budget_stops_early_with_a_final_row():
    history = run(dataclasses.replace(BASE, steps=100_000, wall_budget=1.0), progress=False).history
    assert history["step"].iloc[-1] < 100_000
    assert history["wall_time"].iloc[-1] >= 1.0


def _async_schedule(speeds, tau, straggler_prob=0.0, seed=0):
    from grawa_sim.engine.clock import Clock, ClockModel

    clock = ClockModel(workers=len(speeds), step_time=0.01, speeds=tuple(speeds), straggler_prob=straggler_prob,
                       straggler_slowdown=4.0, bandwidth=BW, latency=LAT, seed=seed)
    return Clock(clock, tau, every_step=False, asynchronous=True, collectives=[], probe=False)


@pytest.mark.parametrize("speeds,tau,prob", [((1, 1.3, 1.7, 2.1), 4, 0.0), ((1, 1.3, 1.7, 2.1), 4, 0.2),
                                             ((0.5, 1, 1, 1, 2, 3, 1.1, 0.9), 4, 0.1), ((1, 5), 3, 0.3)])
def test_async_round_holds_exactly_m_tau_steps(speeds, tau, prob):
    """A worker asks before each step; once M·tau steps of a round were granted, every later request
    waits for the round. So the steps between two rounds sum to M·tau, whatever the speeds."""
    sched = _async_schedule(speeds, tau, prob, seed=3)
    m, counted, rounds, busy_until = len(speeds), 0, 0, None
    for tick in sched.ticks():
        counted += int(tick.stepping.sum())
        if tick.round:
            assert counted == m * tau
            assert int(sched.steps.sum()) == (rounds + 1) * m * tau
            # the round starts when the last granted step finished: every worker is free by then
            busy_until = float(sched.time.max())
            assert bool((sched.time == busy_until).all())
            counted, rounds = 0, rounds + 1
            if rounds == 20:
                break
    assert rounds == 20


def test_async_grants_follow_simulated_time():
    """Speeds 1 and 3, tau = 2 (4 grants a round): at t=0 both ask (2 grants); the fast worker asks
    again at 1 and 2 (grants 3 and 4); at 3 the slow worker finishes and its request waits."""
    sched = _async_schedule((1.0, 3.0), 2)
    ticks = []
    for tick in sched.ticks():
        ticks.append((tick.stepping.tolist(), tick.round, round(sched.totals.sim_time, 6)))
        if tick.round:
            break
    assert ticks == [([True, False], False, 0.01), ([True, False], False, 0.02), ([True, True], True, 0.03)]
    assert sched.steps.tolist() == [3, 1]


def test_async_evaluation_after_round_k_counts_k_m_tau_steps():
    cfg = dataclasses.replace(BASE, schedule="async", speeds=(1.0, 1.3, 1.7, 2.1), straggler_prob=0.1,
                              straggler_slowdown=4.0, steps=64)
    hist = run(cfg, progress=False).history
    m, tau = cfg.workers, cfg.tau
    after_round = hist[hist["step"] > 0]
    exact = after_round["steps_mean"] * m == after_round["round"] * m * tau
    # every evaluation lands right after a round except possibly the last (the step budget)
    assert bool(exact.iloc[:-1].all()) and len(after_round) >= 3


class _RecordingAxis:
    """A StackedAxis that records every collective: (kind, op) -> values per worker, summed over calls."""

    def __init__(self, workers):
        from grawa_sim.core.collectives import StackedAxis

        self.inner, self.calls = StackedAxis(workers), {}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _note(self, key, t):
        self.calls[key] = self.calls.get(key, 0) + t[0].numel()

    def all_reduce_sum(self, t):
        self._note(("all_reduce", "sum"), t)
        return self.inner.all_reduce_sum(t)

    def all_reduce_min(self, t):
        self._note(("all_reduce", "min"), t)
        return self.inner.all_reduce_min(t)

    def all_reduce_mean(self, t):
        return self.all_reduce_sum(t) / self.inner.workers

    def broadcast(self, t, src):
        self._note(("broadcast", "sum"), t)
        return self.inner.broadcast(t, src)

    def all_gather(self, t):
        self._note(("all_gather", "sum"), t)
        return self.inner.all_gather(t)

    def select_min(self, values, params):  # the composite collective, built from the two recorded above
        from grawa_sim.core.collectives import StackedAxis

        return StackedAxis.select_min(self, values, params)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_clock_charges_every_collective_a_round_calls(algorithm):
    import torch

    from grawa_sim import algorithms
    from grawa_sim.algorithms import Hyper, round_collectives

    m = 4
    params = {"w": torch.randn(m, 3, 5, dtype=torch.float64), "b": torch.randn(m, 5, dtype=torch.float64)}
    sizes = sum(p[0].numel() for p in params.values())
    algo = algorithms.build(algorithm, Hyper(pull=0.5, prox=0.0, tau=4))
    axis = _RecordingAxis(m)
    state = algo.init({n: p[:1] for n, p in params.items()}, axis.inner)
    state = algo.observe_losses(state, torch.arange(m, dtype=torch.float64))
    if algo.communicates_every_step:
        algo.reduce_grads(params, axis)
    else:
        algo.round(params, state, axis, {n: torch.rand_like(p) for n, p in params.items()})
    charged = {}
    for c in round_collectives(algorithm, sizes, len(params)):
        charged[(c.kind, c.op)] = charged.get((c.kind, c.op), 0) + c.values
    if algorithm == "easgd":  # the simulation's mean is one all-reduce: a reduce to x~'s holder + a broadcast back
        assert charged.pop(("reduce", "sum")) == charged.pop(("broadcast", "sum")) == sizes
        charged[("all_reduce", "sum")] = sizes
    assert axis.calls == charged


@pytest.mark.parametrize("algorithm", ["dp", "mgrawa"])
def test_time_budget_runs_get_about_twenty_evaluations_by_default(algorithm):
    cfg = dataclasses.replace(BASE, algorithm=algorithm, steps=100_000, time_budget=4.0, eval_every=None)
    hist = run(cfg, progress=False).history
    assert 18 <= len(hist) <= 23  # step 0, ~20 marks of 0.2 s, the end of the budget
    marks = hist["sim_time"].iloc[1:-1].to_numpy()
    assert (marks[1:] - marks[:-1] > 0).all()
    if algorithm == "mgrawa":  # evaluations fall right after a round
        rows = hist.iloc[1:-1]
        assert (rows["steps_mean"] == rows["round"] * cfg.tau).all()


def test_eval_seconds_must_be_positive():
    from grawa_sim.config import ConfigError, resolve

    with pytest.raises(ConfigError, match="eval_seconds: must be > 0"):
        resolve(dataclasses.replace(BASE, eval_seconds=0.0))


@pytest.mark.parametrize("asynchronous,prob", [(False, 0.0), (False, 0.3), (True, 0.0), (True, 0.3)])
def test_the_clock_counts_mean_steps_and_compute_as_the_per_worker_tensors_say(asynchronous, prob):
    """`mean_step` is the mean of the per-worker step counts; the synchronous schedule without stragglers
    (durations computed once) charges compute exactly as a step-by-step sum of its durations does."""
    speeds = (1.0, 1.3, 1.7, 2.1)
    clock = ClockModel(workers=4, step_time=0.01, speeds=speeds, straggler_prob=prob, straggler_slowdown=4.0,
                       bandwidth=BW, latency=LAT, seed=5)
    sched = Clock(clock, 3, every_step=False, asynchronous=asynchronous, collectives=[], probe=False)
    compute = 0.0
    for i, tick in enumerate(sched.ticks()):
        assert sched.mean_step() == float(sched.steps.double().mean())
        assert tick.everyone == (not asynchronous) and (not tick.everyone or bool(tick.stepping.all()))
        if not asynchronous and prob == 0:
            compute += float((0.01 * torch.tensor(speeds, dtype=torch.float64)).sum()) / 4
            assert sched.totals.compute_time == compute
        if i == 40:
            break
    assert sched.mean_step() > 0
