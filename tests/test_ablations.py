"""The budgeted ablation studies' logic (scalability in M, fewer communications) against small hand-computed inputs."""

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
from grawa_sim.experiments import communication, scalability

# ---------------------------------------------------------------- shared: the trend


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


# ---------------------------------------------------------------- scalability


def test_configs_grow_the_data_with_m_and_follow_the_declared_lr_rule():
    configs = scalability.configs(False, seeds=2, budget=3.0, workers=(2, 16), algorithms=("dp", "mgrawa"))
    assert len(configs) == 2 * 2 * 3  # M x seeds x (DP, MGRAWA, its twin)
    assert {c.train_size for c in configs if c.workers == 16} == {8000}
    assert {(c.time_budget, c.latency, c.batch_size) for c in configs} == {(3.0, 1e-4, 32)}
    dp = {c.workers: c for c in configs if c.algorithm == "dp"}
    assert dp[2].lr == pytest.approx(0.05) and dp[16].lr == pytest.approx(0.1)  # 0.05 · max(1, M / 8)
    assert dp[16].warmup == pytest.approx(0.25) and dp[16].lr_decay_unit == "seconds"
    periodic = [c for c in configs if c.algorithm == "mgrawa"]
    assert {c.lr for c in periodic} == {0.05} and {c.warmup for c in periodic} == {0.0}
    assert {c.weighting for c in periodic} == {None, "uniform"}
    assert {c.workers for c in scalability.configs(False)} == set(scalability.WORKERS)
    with pytest.raises(ConfigError, match="^workers: 1024 workers x 500 samples exceed"):
        scalability.train_size(1024)


def budget_runs(accuracy, seeds=(0, 1, 2), workers=(2, 4, 8)) -> pd.DataFrame:
    """One evaluation per run at 1 s: ``accuracy(method, M, seed)``; twins by ``weighting``."""
    rows = []
    for m in workers:
        for method in ("dp", "localsgd", "mgrawa", "mgrawa+uniform"):
            for seed in seeds:
                algorithm, _, twin = method.partition("+")
                rows.append({"algorithm": algorithm, "weighting": twin or None, "workers": m, "seed": seed,
                             "run": f"{method}-M{m}-s{seed}", "sim_time": 1.0, "time_budget": 1.0,
                             "steps_mean": 10.0, "test_acc": accuracy(method, m, seed)})
    return pd.DataFrame(rows)


def test_doubling_trends_fit_a_slope_per_seed_and_test_their_mean():
    # MGRAWA − twin = 0.01 · seed · log2 M: per-seed slopes 0, 0.01, 0.02; − DP: 0.05 at every M (slope 0)
    def accuracy(method, m, seed):
        base = 0.5 + 0.001 * seed
        if method == "mgrawa":
            return base + 0.01 * seed * math.log2(m)
        return base - 0.05 * (method == "dp") + 0.003 * (method == "localsgd") * m
    table = scalability.doubling_trends(budget_runs(accuracy), 1.0).set_index("contrast")
    twin = table.loc["mgrawa − mgrawa+uniform"]
    assert twin["n"] == 3 and twin["difference"] == pytest.approx(0.01)
    assert twin["p"] == pytest.approx(sps.ttest_1samp([0.0, 0.01, 0.02], 0).pvalue)
    assert twin["smallest_detectable"] == pytest.approx(stats.smallest_detectable(np.std([0.0, 0.01, 0.02], ddof=1), 3))
    assert table.loc["mgrawa − dp", "difference"] == pytest.approx(0.01)  # 0.01·seed·log2 M + 0.05: slope 0.01
    # − LocalSGD: LocalSGD gains 0.003 · M, so the slope per seed is the fit of 0.01 s log2 M − 0.003 M on log2 M
    x = np.log2([2, 4, 8])
    expected = np.mean([sps.linregress(x, 0.01 * s * x - 0.003 * np.array([2, 4, 8])).slope for s in (0, 1, 2)])
    assert table.loc["mgrawa − localsgd", "difference"] == pytest.approx(expected)
    assert set(table["p_holm"] >= table["p"]) == {True}


def test_scalability_contrasts_and_times_are_read_per_m():
    def accuracy(method, m, seed):
        return 0.6 + 0.02 * (method == "mgrawa") + 0.001 * seed + 0.0001 * m
    runs = budget_runs(accuracy)
    table = scalability.contrasts(runs, budgets=(1.0,))
    assert len(table) == 3 * 3 and set(table["setting"]) == {2, 4, 8}  # 3 contrasts at 3 M
    twin = table[table["contrast"] == "mgrawa − mgrawa+uniform"]
    assert np.allclose(twin["difference"], 0.02)
    times = scalability.time_to_target(runs, levels=(0.9,))
    assert set(times["reached"]) == {3} and set(times["time_mean"]) == {1.0}
    best = accuracy("mgrawa", 4, 1)  # the best method's mean at M = 4
    assert times.loc[(4, "dp", 0.9), "target"] == pytest.approx(0.9 * best)


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
    histories = pd.DataFrame({"workers": [4, 4], "algorithm": ["g", "dp"], "seed": [0, 0],
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
    configs = communication.configs(False, seeds=2, budget=3.0, taus=(1, 16), pulls=(0.2, 1.0),
                                    algorithms=("dp", "easgd", "mgrawa"))
    keys = {(c.algorithm, c.weighting, c.tau, c.pull) for c in configs}
    grawa = {(w, t, p) for w in (None, "uniform") for t in (1, 16) for p in (0.2, 1.0)}
    assert keys == {("dp", None, None, None), ("easgd", None, 1, None), ("easgd", None, 16, None),
                    *(("mgrawa", *k) for k in grawa)}
    assert len(configs) == 2 * (1 + 2 + 8)
    assert {(c.workers, c.time_budget, c.latency, c.batch_size) for c in configs} == {(8, 3.0, 1e-4, 32)}


def cell_runs(accuracy) -> pd.DataFrame:
    """One evaluation per run at 1 s: MGRAWA and its twin at τ ∈ {2, 8} × λ ∈ {0.5, 1}, LocalSGD at each τ,
    DP once; ``accuracy(method, tau, pull, seed)`` and ``rounds = 8 / τ`` (DP: 8)."""
    rows = []
    for seed in (0, 1, 2):
        for method, taus, pulls in (("mgrawa", (2, 8), (0.5, 1.0)), ("mgrawa+uniform", (2, 8), (0.5, 1.0)),
                                    ("localsgd", (2, 8), (1.0,)), ("dp", (1,), (None,))):
            algorithm, _, twin = method.partition("+")
            for tau in taus:
                for pull in pulls:
                    rows.append({"algorithm": algorithm, "weighting": twin or None, "tau": tau, "pull": pull,
                                 "seed": seed, "run": f"{method}-{tau}-{pull}-{seed}", "sim_time": 1.0,
                                 "time_budget": 1.0, "steps_mean": 8.0, "round": 8 // tau, "comm_bytes": 100 // tau,
                                 "test_acc": accuracy(method, tau, pull, seed)})
    return pd.DataFrame(rows)


def test_cells_pair_every_grawa_cell_with_localsgd_at_its_tau_and_dp():
    def accuracy(method, tau, pull, seed):
        return {"mgrawa": 0.7, "mgrawa+uniform": 0.69, "localsgd": 0.6 + 0.01 * tau, "dp": 0.5}[method] + 0.01 * seed
    runs = cell_runs(accuracy)
    cells = communication.cells(runs)
    assert set(cells["setting"]) == {"τ = 2, λ = 0.5", "τ = 2, λ = 1", "τ = 8, λ = 0.5", "τ = 8, λ = 1"}
    assert (cells.groupby("setting")["method"].value_counts() == 3).all()  # every method, 3 seeds, in every cell
    table = communication.contrasts(runs, 1.0).set_index(["setting", "contrast"])
    assert len(table) == 4 * 3
    assert table.loc[("τ = 8, λ = 0.5", "mgrawa − localsgd"), "difference"] == pytest.approx(0.7 - 0.68)
    assert table.loc[("τ = 2, λ = 0.5", "mgrawa − localsgd"), "difference"] == pytest.approx(0.7 - 0.62)
    assert table.loc[("τ = 8, λ = 1", "mgrawa − mgrawa+uniform"), "difference"] == pytest.approx(0.01)
    assert table.loc[("τ = 2, λ = 1", "mgrawa − dp"), "difference"] == pytest.approx(0.2)
    assert table.loc[("τ = 2, λ = 1", "mgrawa − mgrawa+uniform"), "tau"] == 2
    trends = communication.tau_trends(runs, 1.0, pull=0.5).set_index("contrast")
    assert trends.loc["mgrawa − localsgd", "difference"] == pytest.approx(-0.06 / 2)  # −0.01 τ over log2 τ = 1, 3
    assert trends.loc["mgrawa − mgrawa+uniform", "difference"] == pytest.approx(0.0)
    at = communication.at_pull(communication.accuracy(runs, (1.0,)), 0.5)
    assert at.index.names == ["tau", "method", "budget"] and set(at.index.get_level_values("tau")) == {2, 8}


def test_time_to_target_uses_one_target_and_reads_rounds_and_bytes():
    def accuracy(method, tau, pull, seed):
        return 0.8 if method == "mgrawa" and tau == 8 else 0.5
    times = communication.time_to_target(cell_runs(accuracy), levels=(0.9,))
    assert np.allclose(times["target"], 0.72)  # 0.9 × the best mean of the whole grid
    hit = times.loc[("τ = 8, λ = 0.5", "mgrawa", 0.9)]
    assert hit["reached"] == 3 and hit["rounds_mean"] == 1 and hit["bytes_mean"] == 12
    assert times.loc[("τ = 2, λ = 0.5", "mgrawa", 0.9), "reached"] == 0


def test_pareto_front_keeps_the_configurations_no_other_beats():
    def accuracy(method, tau, pull, seed):  # MGRAWA: τ = 8 as good as τ = 2 with fewer rounds at λ = 1 only
        if method == "mgrawa":
            return {(2, 0.5): 0.7, (2, 1.0): 0.75, (8, 0.5): 0.6, (8, 1.0): 0.75}[(tau, pull)]
        return 0.5
    table = communication.pareto(cell_runs(accuracy), 1.0)
    front = table.xs("mgrawa", level="method")["front"]
    assert front.to_dict() == {(2, 0.5): False, (2, 1.0): False, (8, 0.5): False, (8, 1.0): True}
    assert table.loc[("mgrawa", 2, 1.0), "rounds"] == 4
    runs = cell_runs(accuracy)
    lost = (runs["algorithm"] == "mgrawa") & runs["weighting"].isna() & (runs["tau"] == 8) & (runs["pull"] == 1.0)
    table = communication.pareto(runs.assign(status=runs["status"] if "status" in runs else "finished")
                                 .assign(status=lambda r: r["status"].where(~lost, "diverged")), 1.0)
    front = table.xs("mgrawa", level="method")["front"]  # every seed of τ = 8, λ = 1 diverged: on no front
    assert front.to_dict() == {(2, 0.5): False, (2, 1.0): True, (8, 0.5): True, (8, 1.0): False}
