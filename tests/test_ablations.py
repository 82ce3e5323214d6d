"""The ablation studies' logic (scalability in M, fewer communications) against small hand-computed inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from grawa_sim import algorithms
from grawa_sim.algorithms import COMPARED
from grawa_sim.core import stats
from grawa_sim.core.errors import ConfigError
from grawa_sim.experiments import ablations, communication, scalability


def history(accs, sim_times=None, rounds=None, **tags) -> pd.DataFrame:
    """One run's history: evaluations at steps 0, 10, 20, ... with the given test accuracies."""
    n = len(accs)
    steps = [10 * i for i in range(n)]
    frame = pd.DataFrame({"step": steps, "round": rounds or [s // 5 for s in steps],
                          "sim_time": sim_times or [0.5 * s for s in steps], "comm_bytes": [100 * s for s in steps],
                          "test_acc": accs})
    return frame.assign(**tags)


def finals_frame(rows: list[tuple]) -> pd.DataFrame:
    """Histories of one row per run from (regime, workers, algorithm, seed, test_acc)."""
    frame = pd.DataFrame(rows, columns=["regime", "workers", "algorithm", "seed", "test_acc"])
    frame["run"] = [f"{r}/{a}-M{m}-s{s}" for r, m, a, s, _ in rows]
    return frame


# ---------------------------------------------------------------- shared: target, trend, table


def test_first_reach_reads_the_costs_at_the_first_hit():
    h = history([0.1, 0.4, 0.6, 0.5, 0.7])
    hit = ablations.first_reach(h, 0.5)
    assert hit["reached"] and hit["step"] == 20 and hit["round"] == 4 and hit["sim_time"] == 10.0
    assert hit["comm_bytes"] == 2000
    assert ablations.first_reach(h, 0.4)["step"] == 10  # >= target counts


def test_first_reach_never_reached_is_nan_and_bad_target_fails():
    miss = ablations.first_reach(history([0.1, 0.2, 0.3]), 0.5)
    assert not miss["reached"]
    assert all(math.isnan(miss[c]) for c in ablations.COSTS)
    for bad in (0, 1.5, -0.1, "0.5", True):
        with pytest.raises(ConfigError, match=r"^target: must be an accuracy in \(0, 1\]"):
            ablations.first_reach(history([0.1]), bad)


def test_reach_summary_averages_only_the_runs_that_reached():
    runs = pd.concat([history([0.1, 0.6], algorithm="a", seed=0, run="a0"),
                      history([0.1, 0.2, 0.7], algorithm="a", seed=1, run="a1"),
                      history([0.1, 0.2], algorithm="b", seed=0, run="b0"),
                      history([0.1, 0.9], algorithm="c", seed=0, run="c0"),
                      history([0.1, 0.9], algorithm="c", seed=1, run="c1")], ignore_index=True)
    reached = ablations.reach(runs, 0.5, ["algorithm"])
    assert list(reached["reached"]) == [True, True, False, True, True]
    table = ablations.reach_summary(reached, ["algorithm"], "step")
    assert table.loc["a", "mean"] == 15.0 and table.loc["a", "defined"]
    assert table.loc["a", "ci95"] == pytest.approx(sps.t.ppf(0.975, 1) * np.std([10, 20], ddof=1) / math.sqrt(2))
    assert table.loc["b", "reached"] == 0 and math.isnan(table.loc["b", "mean"]) and not table.loc["b", "defined"]
    text = ablations.format_reach(table, digits=1)
    assert text["b"] == "not reached" and text["a"].startswith("15.0 ± ")
    partial = ablations.reach_summary(reached.assign(algorithm="all"), ["algorithm"], "step")
    assert ablations.format_reach(partial, digits=1)["all"] == f"{12.5:.1f} ± " \
        f"{sps.t.ppf(0.975, 3) * np.std([10, 20, 10, 10], ddof=1) / 2:.1f} (4/5 reached)"


def test_trend_matches_linregress_and_a_hand_slope():
    x, y = [0, 1, 2, 3], [1.0, 3.1, 4.9, 7.0]
    fit, ref = stats.trend(x, y), sps.linregress(x, y)
    xm, ym = np.mean(x), np.mean(y)
    assert fit.slope == pytest.approx(sum((a - xm) * (b - ym) for a, b in zip(x, y)) / sum((a - xm) ** 2 for a in x))
    assert fit.p == pytest.approx(ref.pvalue) and fit.significant
    assert fit.half_width == pytest.approx(sps.t.ppf(0.975, 2) * ref.stderr)
    flat = stats.trend([0, 1, 2, 3, 4], [1.0, 2.0, 1.0, 2.0, 1.5])
    assert not flat.significant
    assert math.isnan(stats.trend([1, 1, 1], [1, 2, 3]).slope)  # x does not vary
    two = stats.trend([0, 1], [0, 2])
    assert two.slope == pytest.approx(2) and math.isnan(two.p)
    with pytest.raises(ValueError, match="same length"):
        stats.trend([0, 1], [0])


def test_wide_puts_one_interval_cell_per_algorithm_in_order():
    table = pd.DataFrame({"workers": [4, 4, 2, 2], "algorithm": ["b", "a", "b", "a"],
                          "test_acc_mean": [0.5, 0.6, 0.7, 0.8], "test_acc_ci95": [0.01, np.nan, 0.02, 0.03]})
    out = ablations.wide(table.set_index(["workers", "algorithm"]))
    assert list(out.columns) == ["b", "a"] and list(out.index) == [4, 2]
    assert out.loc[4, "b"] == "0.500 ± 0.010" and out.loc[4, "a"] == "0.600"


def test_sweep_groups_needs_a_group():
    with pytest.raises(ConfigError, match="^regime: needs at least one group"):
        ablations.sweep_groups({}, "unused", "regime")


# ---------------------------------------------------------------- scalability


def test_fixed_samples_steps_and_its_bad_input():
    assert scalability.fixed_samples_steps(2**17, 8, 16) == 1024
    assert scalability.fixed_samples_steps(2**17, 128, 16) == 64
    assert scalability.fixed_samples_steps(96, 3, 32) == 1
    with pytest.raises(ConfigError, match=r"^total_samples: must be a multiple of workers x batch_size = 48"):
        scalability.fixed_samples_steps(100, 3, 16)
    with pytest.raises(ConfigError, match="^workers: must be an integer >= 1"):
        scalability.fixed_samples_steps(100, 0, 16)
    with pytest.raises(ConfigError, match="^batch_size: must be an integer >= 1"):
        scalability.fixed_samples_steps(100, 2, 1.5)


def test_regime_configs_follow_the_knobs():
    groups = scalability.configs(False, seeds=2, steps=64, total_samples=2**12, workers=(2, 8),
                                 algorithms=("dp", "mgrawa"))
    assert set(groups) == set(scalability.REGIMES)
    assert {(c.workers, c.steps) for c in groups[scalability.FIXED_STEPS]} == {(2, 64), (8, 64)}
    assert {(c.workers, c.steps) for c in groups[scalability.FIXED_SAMPLES]} == {(2, 128), (8, 32)}
    assert all(len(g) == 2 * 2 * 2 for g in groups.values())
    full = scalability.configs(False)
    assert {c.algorithm for c in full[scalability.FIXED_STEPS]} == set(COMPARED)
    assert {c.workers for c in full[scalability.FIXED_SAMPLES]} == set(scalability.WORKERS)


def test_grawa_methods_are_the_grawa_classes_of_the_registry():
    from grawa_sim.algorithms.grawa import GRAWA

    assert scalability.grawa_methods() == tuple(n for n in COMPARED if issubclass(algorithms.get(n), GRAWA))
    assert set(scalability.grawa_methods()) == {"mgrawa", "lgrawa"}
    assert scalability.grawa_methods(("dp", "lsgd")) == ()


GAP_ROWS = [  # regime r, M = 2: baseline b is best; M = 4: baseline c is best
    ("r", 2, "g", 0, 0.60), ("r", 2, "g", 1, 0.62), ("r", 2, "g", 2, 0.64),
    ("r", 2, "b", 0, 0.58), ("r", 2, "b", 1, 0.61), ("r", 2, "b", 2, 0.61),
    ("r", 2, "c", 0, 0.40), ("r", 2, "c", 1, 0.41), ("r", 2, "c", 2, 0.42),
    ("r", 4, "g", 0, 0.70), ("r", 4, "g", 1, 0.69), ("r", 4, "g", 2, 0.74),
    ("r", 4, "b", 0, 0.50), ("r", 4, "b", 1, 0.50), ("r", 4, "b", 2, 0.52),
    ("r", 4, "c", 0, 0.60), ("r", 4, "c", 1, 0.61), ("r", 4, "c", 2, 0.62),
]


def test_gaps_pick_the_best_baseline_per_m_and_run_welch():
    table = scalability.gaps(finals_frame(GAP_ROWS), methods=("g",))
    at2, at4 = table.loc[("r", 2, "g")], table.loc[("r", 4, "g")]
    assert at2["baseline"] == "b" and at4["baseline"] == "c"
    assert at2["difference"] == pytest.approx(0.62 - 0.60)
    assert at4["difference"] == pytest.approx((0.70 + 0.69 + 0.74) / 3 - 0.61)
    assert at4["p"] == pytest.approx(sps.ttest_ind([0.70, 0.69, 0.74], [0.60, 0.61, 0.62], equal_var=False).pvalue)
    assert at4["significant"] and not at2["significant"]


def test_gap_trend_is_the_slope_of_per_seed_gaps_on_log2_m():
    gaps = scalability.seed_gaps(finals_frame(GAP_ROWS), methods=("g",))
    by_seed = gaps.set_index(["workers", "seed"])["gap"]
    assert by_seed[(2, 1)] == pytest.approx(0.62 - 0.61) and by_seed[(4, 2)] == pytest.approx(0.74 - 0.62)
    x = [1, 1, 1, 2, 2, 2]
    y = [0.02, 0.01, 0.03, 0.10, 0.08, 0.12]
    row = scalability.gap_trends(finals_frame(GAP_ROWS), methods=("g",)).loc[("r", "g")]
    ref = sps.linregress(x, y)
    assert row["slope_per_doubling"] == pytest.approx(ref.slope) and row["p"] == pytest.approx(ref.pvalue)
    assert row["n"] == 6 and row["significant"]


def test_gaps_without_a_baseline_fail():
    rows = [r for r in GAP_ROWS if r[2] == "g"]
    with pytest.raises(ConfigError, match="^baselines: none of"):
        scalability.gaps(finals_frame(rows), methods=("g",))


def test_time_to_target_and_speedup_over_the_smallest_m():
    runs = []
    for m, times, accs in ((2, [0, 4, 8, 12], [0.1, 0.3, 0.6, 0.7]), (4, [0, 2, 4, 6], [0.1, 0.6, 0.7, 0.8]),
                           (8, [0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4])):
        for seed in (0, 1):
            runs.append(history(accs, sim_times=times, regime="r", workers=m, algorithm="a", seed=seed,
                                run=f"a-M{m}-s{seed}"))
    table = scalability.time_to_target(pd.concat(runs, ignore_index=True), 0.5)
    assert table.loc[("r", 2, "a"), "mean"] == 8 and table.loc[("r", 4, "a"), "mean"] == 2
    assert table.loc[("r", 4, "a"), "speedup"] == pytest.approx(4.0)
    assert table.loc[("r", 2, "a"), "speedup"] == pytest.approx(1.0)
    assert list(table["ideal"]) == [1.0, 2.0, 4.0]
    assert table.loc[("r", 8, "a"), "reached"] == 0 and math.isnan(table.loc[("r", 8, "a"), "speedup"])


def test_entropy_per_round_hand_values():
    weights = pd.DataFrame({"round": [1, 1, 2, 2, 3, 3, 3, 3], "worker": [0, 1, 0, 1, 0, 1, 0, 1],
                            "layer": ["model"] * 6 + ["w", "w"], "weight": [0.5, 0.5, 1.0, 0.0, 0.5, 0.5, 0.9, 0.1]})
    h = scalability.entropy_per_round(weights).set_index("round")["entropy"]
    assert h[1] == pytest.approx(math.log(2)) and h[2] == 0.0
    assert h[3] == pytest.approx((math.log(2) + (-0.9 * math.log(0.9) - 0.1 * math.log(0.1))) / 2)
    bad = weights.assign(weight=weights["weight"] * 0.9)
    with pytest.raises(ConfigError, match="^weights: must sum to 1 per round and layer"):
        scalability.entropy_per_round(bad)


def test_weight_entropy_reads_the_run_folders(tmp_path):
    four = pd.DataFrame({"round": [1] * 4 + [2] * 4, "worker": list(range(4)) * 2, "layer": "model",
                         "weight": [0.25] * 4 + [0.4, 0.4, 0.1, 0.1]})
    for key, table in (("g-key", four), ("dp-key", four.iloc[:0])):
        (tmp_path / "runs" / key).mkdir(parents=True)
        table.to_csv(tmp_path / "runs" / key / "weights.csv", index=False)
    histories = pd.DataFrame({"regime": ["r", "r"], "workers": [4, 4], "algorithm": ["g", "dp"], "seed": [0, 0],
                              "run": ["r/g-key", "r/dp-key"], "run_key": ["g-key", "dp-key"]})
    out = scalability.weight_entropy(histories, tmp_path)
    assert list(out["algorithm"]) == ["g"]  # DP reports no weights
    second = -(2 * 0.4 * math.log(0.4) + 2 * 0.1 * math.log(0.1))
    assert out["entropy"].iloc[0] == pytest.approx((math.log(4) + second) / 2)
    assert out["ratio"].iloc[0] == pytest.approx(out["entropy"].iloc[0] / math.log(4))
    with pytest.raises(OSError, match="no weights.csv"):
        scalability.weight_entropy(histories.assign(run_key="missing"), tmp_path)


# ---------------------------------------------------------------- communication


def test_algorithm_roles_come_from_the_registry():
    every = communication.every_step()
    assert every == tuple(n for n in COMPARED if algorithms.get(n).communicates_every_step) and "dp" in every
    assert set(communication.periodic()) == set(COMPARED) - set(every)
    assert all(algorithms.get(n).takes_pull for n in communication.pulling())
    assert communication.pulling(("dp", "diloco", "easgd")) == ("easgd",)  # DiLoCo takes no pull


def test_communication_configs_follow_the_knobs():
    groups = communication.configs(False, seeds=2, steps=64, taus=(1, 16), pulls=(0.2,),
                                   algorithms=("dp", "easgd", "mgrawa"))
    taus = {(c.algorithm, c.tau, c.pull) for c in groups[communication.TAU]}
    assert taus == {("easgd", 1, None), ("easgd", 16, None), ("mgrawa", 1, None), ("mgrawa", 16, None)}
    assert {(c.algorithm, c.tau, c.pull) for c in groups[communication.PULL]} == {("easgd", None, 0.2),
                                                                                  ("mgrawa", None, 0.2)}
    assert {c.algorithm for c in groups[communication.REFERENCE]} == {"dp"}
    assert all(len(g) == 2 * n for g, n in ((groups["tau"], 4), (groups["pull"], 2), (groups["reference"], 1)))
    assert {c.workers for g in groups.values() for c in g} == {communication.WORKERS}
    assert all(communication.STEPS % t == 0 for t in communication.TAUS)


def comm_histories() -> pd.DataFrame:
    runs = []
    for tau, accs in ((2, [(0.1, 0.5, 0.8), (0.1, 0.6, 0.82)]), (8, [(0.1, 0.2, 0.6), (0.1, 0.3, 0.64)])):
        for seed, acc in enumerate(accs):
            runs.append(history(list(acc), rounds=[0, 10 // tau, 20 // tau], study="tau", algorithm="a", tau=tau,
                                seed=seed, run=f"tau/a-{tau}-{seed}"))
    for seed, acc in enumerate([(0.1, 0.7, 0.70), (0.1, 0.4, 0.72)]):
        runs.append(history(list(acc), rounds=[0, 10, 20], study="reference", algorithm="dp", tau=1, seed=seed,
                            run=f"ref/dp-{seed}"))
    return pd.concat(runs, ignore_index=True)


def test_accuracy_against_the_reference_and_the_tau_trend():
    h = comm_histories()
    table = communication.accuracy(h, "tau")
    assert table.loc[("a", 2), "test_acc_mean"] == pytest.approx(0.81)
    assert table.loc[("a", 8), "difference"] == pytest.approx(0.62 - 0.71)
    assert table.loc[("a", 8), "p"] == pytest.approx(sps.ttest_ind([0.6, 0.64], [0.70, 0.72], equal_var=False).pvalue)
    assert (table["reference"] == "dp").all()
    trend = communication.tau_trends(h).loc["a"]
    ref = sps.linregress([1, 1, 3, 3], [0.8, 0.82, 0.6, 0.64])
    assert trend["slope_per_doubling"] == pytest.approx(ref.slope) and trend["p"] == pytest.approx(ref.pvalue)


def test_cost_to_target_counts_rounds_and_bytes_with_the_reference():
    table = communication.cost_to_target(comm_histories(), 0.55)
    assert table.loc[("a", 2.0), "rounds_mean"] == pytest.approx((10 + 5) / 2)  # seed 0 at step 20, seed 1 at 10
    assert table.loc[("a", 8.0), "rounds_mean"] == 2 and table.loc[("a", 8.0), "bytes_mean"] == 2000
    dp = table.xs("dp", level="algorithm")
    assert dp.index.isna().all() and dp["rounds_mean"].iloc[0] == pytest.approx(15)
    never = communication.cost_to_target(comm_histories(), 0.9)
    assert (never["reached"] == 0).all() and never["rounds_mean"].isna().all() and not never["defined"].any()
