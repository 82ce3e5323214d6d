"""The simulated clock: α-β costs, sync and async schedules, budgets, accounting."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest

from grawa_sim import Config, run
from grawa_sim.schedule import Collective, collective_bytes, collective_time

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
