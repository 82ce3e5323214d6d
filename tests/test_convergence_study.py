"""The convergence study's helpers: configs, trajectories against hand formulas, caching, slopes, figures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from grawa_sim import run
from grawa_sim.algorithms import COMPARED as ALGORITHMS
from grawa_sim.data.datasets import load
from grawa_sim.engine.problem import model_and_data
from grawa_sim.experiments import convergence as cv
from grawa_sim.plots import convergence as convergence_plots


def test_convex_configs_cover_every_algorithm_worker_count_and_schedule():
    configs = cv.convex_configs("lstsq", 40, workers=(2, 4))
    assert len(configs) == len(ALGORITHMS) * 2 * (len(cv.CONVEX_PROBLEMS["lstsq"].lrs) + 1)
    assert {c.algorithm for c in configs} == set(ALGORITHMS)
    assert all(c.tau is None for c in configs if c.algorithm == "dp")
    decaying = [c for c in configs if c.lr_schedule == "inverse"]
    assert len(decaying) == len(ALGORITHMS) * 2 and all(c.lr_t0 == cv.CONVEX_PROBLEMS["lstsq"].t0 for c in decaying)
    assert {c.seed for c in configs} == {0}


def test_convex_configs_repeat_every_config_for_each_seed():
    one = cv.convex_configs("lstsq", 40, workers=(2, 4))
    two = cv.convex_configs("lstsq", 40, workers=(2, 4), seeds=2)
    assert len(two) == 2 * len(one) and [c.seed for c in two] == [0] * len(one) + [1] * len(one)
    assert two[:len(one)] == one, "seed 0's configs (and so their run keys and cached runs) are unchanged"
    assert two[len(one):] == [dataclasses.replace(c, seed=1) for c in one]


def test_trajectory_suboptimality_matches_the_least_squares_formula():
    cfg = cv.convex_configs("lstsq", 40, workers=(2,), algorithms=("mgrawa",))[-1]
    best = cv.optimum(cfg)
    frame = cv.convex_trajectory(cfg, best)
    result = run(cfg, progress=False)
    data = load("lstsq", torch.float64)
    w = result.evaluated["linear.weight"].double().numpy().ravel()
    b = float(result.evaluated["linear.bias"])
    x, y = data.x_train.numpy(), data.y_train.numpy()
    by_hand = 0.5 * np.mean((x @ w + b - y) ** 2) - data.optimum_loss
    assert frame["subopt"].iloc[-1] == pytest.approx(by_hand, rel=1e-8, abs=1e-12)
    star = np.concatenate([best.params["linear.weight"].numpy().ravel(), best.params["linear.bias"].numpy()])
    assert frame["dist"].iloc[-1] == pytest.approx(np.linalg.norm(np.append(w, b) - star), rel=1e-10)


def test_convex_study_caches_each_run(tmp_path, monkeypatch):
    configs = cv.convex_configs("lstsq", 16, workers=(2,), algorithms=("localsgd",), seeds=2)
    first = cv.convex_study("lstsq", configs, cache=tmp_path)
    assert len(list(tmp_path.glob("*.csv"))) == len(configs) == 6
    assert first.groupby("seed")["schedule"].nunique().to_dict() == {0: 3, 1: 3}
    decaying = first[first["decaying"]]
    assert not np.allclose(decaying[decaying["seed"] == 0]["subopt"].iloc[1:],
                           decaying[decaying["seed"] == 1]["subopt"].iloc[1:]), "the seeds draw different batches"

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(cv, "run", no_training)
    again = cv.convex_study("lstsq", configs, cache=tmp_path)
    pd.testing.assert_frame_equal(first, again, check_dtype=False)


def test_convex_study_in_processes_equals_one_process(tmp_path):
    """jobs = 2 (spawned processes, one torch thread each) computes the trajectories of jobs = 1."""
    configs = cv.convex_configs("lstsq", 16, workers=(2,), algorithms=("mgrawa",), seeds=1)
    one = cv.convex_study("lstsq", configs, cache=tmp_path / "one")
    two = cv.convex_study("lstsq", configs, cache=tmp_path / "two", jobs=2)
    pd.testing.assert_frame_equal(one, two, check_dtype=False)
    assert len(list((tmp_path / "two").glob("*.csv"))) == len(configs)


def test_slopes_reductions_and_plateaus_on_known_curves():
    t = np.arange(1, 101, dtype=float)
    rows = []
    for algorithm, c in (("dp", 2.0), ("mgrawa", 5.0)):
        rows.append(pd.DataFrame({"step": t, "subopt": c / t, "dist": c / np.sqrt(t), "decaying": True}))
        rows.append(pd.DataFrame({"step": t, "subopt": np.where(t > 50, 0.01 * c, 1.0), "dist": 1.0,
                                  "decaying": False}).assign(lr=0.1))
        for r in rows[-2:]:
            r["problem"], r["algorithm"], r["workers"] = "p", algorithm, 4
    study = pd.concat(rows, ignore_index=True)
    slopes = cv.slopes(study).set_index("algorithm")
    assert slopes.loc["dp", "slope_subopt"] == pytest.approx(-1.0)
    assert slopes.loc["mgrawa", "slope_dist"] == pytest.approx(-0.5)
    red = cv.reductions(study).set_index("algorithm")
    assert red.loc["dp", "reduction"] == pytest.approx(1 / 100)
    floors = cv.plateaus(study).set_index("algorithm")
    assert floors.loc["mgrawa", "floor"] == pytest.approx(0.05)
    assert (slopes["seeds"] == 1).all() and slopes["slope_subopt_ci95"].isna().all(), "one seed: no interval"
    assert red["reduction_ci95"].isna().all() and floors["floor_ci95"].isna().all()


def two_seed_study() -> tuple[pd.DataFrame, dict]:
    """Two seeds of one method: noisy power laws c * t^-a (decaying lr) and noisy floors (constant lr)."""
    rng = np.random.default_rng(3)
    t = np.arange(0, 1001, 10, dtype=float)
    rows, truth = [], {}
    for seed, (a, c, floor) in enumerate(((0.9, 2.0, 1e-3), (1.2, 3.0, 3e-3))):
        noise = np.exp(rng.normal(0, 0.2, len(t)))
        subopt, dist = c * (t + 1) ** -a * noise, np.sqrt(c) * (t + 1) ** (-a / 2) * noise
        rows.append(pd.DataFrame({"step": t, "subopt": subopt, "dist": dist, "decaying": True, "lr": 0.5}))
        flat = floor * np.exp(rng.normal(0, 0.3, len(t)))
        rows.append(pd.DataFrame({"step": t, "subopt": flat, "dist": 1.0, "decaying": False, "lr": 0.1}))
        for r in rows[-2:]:
            r["problem"], r["algorithm"], r["workers"], r["seed"] = "p", "mgrawa", 4, seed
        window = t >= 100  # [T/10, T]
        truth[seed] = {"slope_subopt": np.polyfit(np.log(t[window]), np.log(subopt[window]), 1)[0],
                       "slope_dist": np.polyfit(np.log(t[window]), np.log(dist[window]), 1)[0],
                       "reduction": subopt[-1] / subopt[0], "final_dist": dist[-1],
                       "floor": flat[t >= 750].mean()}
    return pd.concat(rows[::-1], ignore_index=True), truth


def test_slopes_reductions_and_plateaus_are_per_seed_then_averaged_with_a_t_interval():
    study, truth = two_seed_study()
    per_seed = cv.slopes(study, per_seed=True).set_index("seed")
    assert per_seed.loc[1, "slope_subopt"] == pytest.approx(truth[1]["slope_subopt"], rel=1e-10)
    tables = {"slope_subopt": cv.slopes(study), "slope_dist": cv.slopes(study), "reduction": cv.reductions(study),
              "final_dist": cv.reductions(study), "floor": cv.plateaus(study)}
    for value, table in tables.items():
        assert len(table) == 1, "one row per (problem, algorithm, workers[, lr])"
        row = table.iloc[0]
        values = [truth[0][value], truth[1][value]]
        assert row["seeds"] == 2
        assert row[value] == pytest.approx(np.mean(values), rel=1e-10), value
        assert row[f"{value}_ci95"] == pytest.approx(stats_t_half_width(values), rel=1e-10), value
    # t_{0.975, 1} = 12.706: the half-width of two seeds is 12.706 * |a - b| / 2
    row = tables["slope_subopt"].iloc[0]
    spread = abs(truth[0]["slope_subopt"] - truth[1]["slope_subopt"])
    assert row["slope_subopt_ci95"] == pytest.approx(12.7062 * spread / 2, rel=1e-4)
    assert row["slope_subopt"] == pytest.approx(-1.05, abs=0.05)


def test_min_grad_norms_against_a_module_backward():
    base = dataclasses.replace(cv.NONCONVEX, algorithm="localsgd", workers=2, width=8, dtype="float64")
    table = cv.min_grad_norms(base, (16, 32), lr_scale=0.5)
    assert list(table["T"]) == [16, 32] and (table["min_grad_sq"] <= table["final_grad_sq"]).all()
    assert (table["min_grad_sq"] <= table["mean_grad_sq"]).all()
    assert table["lr"].tolist() == pytest.approx([0.5 / 4, 0.5 / np.sqrt(32)])
    cfg = dataclasses.replace(base, steps=32, lr=0.5 / np.sqrt(32), eval_every=8)
    result = run(cfg, progress=False)
    model, data = model_and_data(cfg)
    model.load_state_dict({n: p.double() for n, p in result.evaluated.items()}, strict=False)
    loss = torch.nn.functional.cross_entropy(model(data.x_train), data.y_train)
    loss.backward()
    by_hand = sum(float(p.grad.square().sum()) for p in model.parameters())
    assert table["final_grad_sq"].iloc[1] == pytest.approx(by_hand, rel=1e-9)
    slopes = cv.horizon_slopes(table)
    assert np.isfinite(slopes["slope"]).all()


def test_horizon_slopes_are_fitted_per_seed_with_an_interval_over_seeds():
    t = np.array([10.0, 100.0, 1000.0])
    rows = [pd.DataFrame({"algorithm": "dp", "workers": 4, "T": t, "seed": seed, "min_grad_sq": t ** slope,
                          "mean_grad_sq": 2 * t ** slope, "argmin_is_start": [1, 0, 0]})
            for seed, slope in enumerate((-0.4, -0.5, -0.6))]
    table = pd.concat(rows, ignore_index=True)
    slopes = cv.horizon_slopes(table).iloc[0]
    assert slopes["slope"] == pytest.approx(-0.5) and slopes["seeds"] == 3
    assert slopes["slope_ci95"] == pytest.approx(stats_t_half_width([-0.4, -0.5, -0.6]))
    summary = cv.horizon_summary(table).set_index("T")
    assert summary.loc[10.0, "min_at_start"] == 1 and summary.loc[100.0, "min_at_start"] == 0
    assert summary.loc[10.0, "mean_grad_sq_mean"] == pytest.approx(2 * np.mean([10 ** -0.4, 10 ** -0.5, 10 ** -0.6]))


def stats_t_half_width(values):
    from scipy import stats as sps

    v = np.asarray(values)
    return sps.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))


def test_convergence_figures_write_png_and_pdf(tmp_path):
    t = np.arange(0, 101, 10, dtype=float)
    rows = []
    for algorithm in ("dp", "mgrawa"):
        for schedule, decaying in (("constant η=0.1", False), ("η₀/(1+t/5), η₀=1", True)):
            rows.append(pd.DataFrame({"step": t, "subopt": 1 / (t + 1), "dist": 1 / np.sqrt(t + 1)}).assign(
                problem="p", algorithm=algorithm, workers=4, schedule=schedule, lr=0.1, decaying=decaying))
    path = convergence_plots.convex_figure(pd.concat(rows), tmp_path / "c.png", "test")
    assert path.is_file() and path.with_suffix(".pdf").is_file()
    study, _ = two_seed_study()
    study["schedule"] = np.where(study["decaying"], "η₀/(1+t/5), η₀=1", "constant η=0.1")
    path = convergence_plots.convex_figure(study, tmp_path / "seeds.png", "two seeds")
    assert path.is_file() and path.with_suffix(".pdf").is_file()
    table = pd.DataFrame({"algorithm": ["dp"] * 3, "workers": 4, "T": [10, 20, 40], "min_grad_sq": [1.0, 0.7, 0.5]})
    path = convergence_plots.nonconvex_figure(table, tmp_path / "n.png", "test")
    assert path.is_file() and path.with_suffix(".pdf").is_file()


def test_convex_configs_take_grawas_twin_by_name_and_keep_the_others_keys():
    from grawa_sim.engine.problem import validate
    from grawa_sim.results.sweep import run_key

    plain = cv.convex_configs("lstsq", 40, workers=(2,), algorithms=("mgrawa",))
    both = cv.convex_configs("lstsq", 40, workers=(2,), algorithms=("mgrawa", "mgrawa+uniform"))
    assert [run_key(validate(c)) for c in both[:len(plain)]] == [run_key(validate(c)) for c in plain]
    twins = both[len(plain):]
    assert {c.weighting for c in twins} == {"uniform"} and {c.algorithm for c in twins} == {"mgrawa"}
    assert [(c.lr, c.lr_schedule, c.tau) for c in twins] == [(c.lr, c.lr_schedule, c.tau) for c in plain]
