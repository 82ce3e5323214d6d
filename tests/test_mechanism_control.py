"""The two-basins control (GRAWA against its twin from the same starts) and the score's reliability in the
weights-against-sharpness study, against hand counts and hand-built tables."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from grawa_sim.config import digest
from grawa_sim.core.stats import holm, mcnemar, mcnemar_detectable
from grawa_sim.data.two_basins import basins, landscape
from grawa_sim.experiments import basins_control as control
from grawa_sim.experiments import weights_sharpness as ws
from grawa_sim.experiments.mechanism import Setup, setup_key, simulate


@pytest.mark.parametrize("dim", [2, 10])
def test_the_lr_puts_lr_times_the_sharp_curvature_at_the_product(dim):
    for product in control.PRODUCTS:
        assert control.lr_for(product, dim) * basins(landscape(dim=dim)).sharp_curvature == pytest.approx(product)
    with pytest.raises(ValueError, match="product"):
        control.lr_for(0.0)


def test_the_default_weighting_keeps_the_old_cache_keys():
    setup = Setup()
    fields = dataclasses.asdict(setup)
    del fields["weighting"]
    assert setup_key(setup) == f"mgrawa-tau8-pull0.5-{digest(fields)}"
    assert setup_key(dataclasses.replace(setup, weighting="uniform")).startswith("mgrawa-uniform-tau8")
    with pytest.raises(ValueError, match="weighting"):
        simulate(Setup(algorithm="localsgd", weighting="uniform", runs=2, steps=2))


def test_the_twin_shares_starts_and_noise_and_differs_only_by_its_weights():
    base = Setup(runs=6, steps=16, tau=4)
    grawa, twin = simulate(base), simulate(dataclasses.replace(base, weighting="uniform"))
    assert np.allclose(grawa.path[0].numpy(), twin.path[0].numpy())  # run 0's starts
    # before the first round the workers have taken the same noisy steps
    assert np.allclose(grawa.path[3].numpy(), twin.path[3].numpy())
    assert not np.allclose(grawa.workers.numpy(), twin.workers.numpy())


def _runs() -> pd.DataFrame:
    a = [True, True, False, True, False, True, True, False]
    b = [False, True, False, False, False, True, False, False]
    c = [True, False, True, True, False, True, True, True]
    rows = []
    for method, wide in (("mgrawa", a), ("mgrawa+uniform", b), ("localsgd", c)):
        rows += [{"method": method, "dim": 2, "product": 0.8, "tau": 8, "lr": 0.05, "pull": 0.5, "run": i,
                  "model_wide": w, "center_wide": w} for i, w in enumerate(wide)]
    return pd.DataFrame(rows), a, b, c


def test_shares_and_paired_contrasts_match_hand_counts():
    runs, a, b, c = _runs()
    shares = control.shares(runs).set_index("method")
    assert shares.loc["mgrawa", "wide"] == pytest.approx(np.mean(a))
    assert shares.loc["mgrawa", "low"] < np.mean(a) < shares.loc["mgrawa", "high"]
    table = control.contrasts(runs).set_index("contrast")
    twin = table.loc["mgrawa − mgrawa+uniform"]
    assert (twin["only_a"], twin["only_b"]) == (3, 0)  # runs 0, 3, 6: only MGRAWA ends wide
    assert twin["difference"] == pytest.approx(np.mean(a) - np.mean(b))
    assert twin["p"] == pytest.approx(mcnemar(a, b).p)
    local = table.loc["mgrawa − localsgd"]
    assert (local["only_a"], local["only_b"]) == (1, 2)
    assert list(table["p_holm"]) == pytest.approx(holm([mcnemar(a, b).p, mcnemar(a, c).p]))
    # 8 pairs are too few for 80 % power whatever the split: the detectable difference is undefined
    assert table["smallest_detectable"].isna().all()


def test_each_contrast_states_the_difference_its_pairs_could_detect():
    rng = np.random.default_rng(11)
    wide = {method: rng.random(300) < share for method, share in (("mgrawa", 0.6), ("mgrawa+uniform", 0.5),
                                                                   ("localsgd", 0.55))}
    wide["mgrawa+uniform"][:150] = wide["mgrawa"][:150]  # the twin agrees more often: fewer discordant pairs
    runs = pd.DataFrame([{"method": method, "dim": 10, "product": 1.5, "tau": 2, "lr": 0.1, "pull": 0.5, "run": i,
                          "model_wide": bool(w), "center_wide": bool(w)}
                         for method, outcomes in wide.items() for i, w in enumerate(outcomes)])
    table = control.contrasts(runs).set_index("contrast")
    for a, b in control.CONTRASTS:
        row = table.loc[f"{a} − {b}"]
        discordant = int(np.sum(wide[a] != wide[b]))
        assert row["only_a"] + row["only_b"] == discordant
        assert row["smallest_detectable"] == pytest.approx(mcnemar_detectable(300, discordant / 300))
        assert 0 < row["smallest_detectable"] < discordant / 300
    twin, local = (table.loc[f"mgrawa − {b}", "smallest_detectable"] for b in ("mgrawa+uniform", "localsgd"))
    assert twin < local  # fewer discordant pairs, a finer detectable difference


def test_a_small_grid_runs_every_method_in_every_cell(tmp_path):
    cells = control.grid((0.8,), (4,), (2,), base=Setup(runs=4, steps=8))
    runs = control.study(cells, cache=tmp_path)
    assert sorted(runs["method"].unique()) == ["localsgd", "mgrawa", "mgrawa+uniform"]
    assert len(list(tmp_path.glob("*.runs.csv"))) == 3
    again = control.study(cells, cache=tmp_path)  # read back from the cache
    pd.testing.assert_frame_equal(runs, again, check_dtype=False)


def _weights_table(score_noise: float, seeds: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(seeds):
        for index in range(20):
            sharp = rng.uniform(1, 2, 8)
            full = rng.uniform(0.1, 1.0, 8)
            score = full + score_noise * rng.normal(size=8)
            weight = (1 / score) / (1 / score).sum() if score_noise == 0 else rng.uniform(0.1, 0.2, 8)
            rows += [{"seed": seed, "pull": 0.5, "round": index, "worker": w, "weight": weight[w], "score": score[w],
                      "full_grad_norm": full[w], "lambda_max": sharp[w]} for w in range(8)]
    return pd.DataFrame(rows)


def test_a_score_that_ranks_like_the_full_gradient_is_fully_reliable():
    summary = ws.reliability_summary(_weights_table(0.0)).iloc[0]
    assert summary["reliability_mean"] == pytest.approx(1.0)
    assert summary["ceiling_mean"] == pytest.approx(1.0)
    assert summary["corrected_mean"] == pytest.approx(summary["rho_mean"])


def test_a_noisy_score_lowers_the_ceiling_and_the_correction_divides_by_it():
    table = _weights_table(0.5)
    summary = ws.reliability_summary(table).iloc[0]
    assert 0 < summary["reliability_mean"] < 0.9
    per_seed = []
    for _, g in table.groupby("seed"):
        rho = ws.round_correlations(g, "weight", "lambda_max")["rho"].mean()
        r = ws.round_correlations(g, "score", "full_grad_norm")["rho"].mean()
        per_seed.append(rho / np.sqrt(r))
    assert summary["corrected_mean"] == pytest.approx(np.mean(per_seed))
    assert summary["ceiling_mean"] < 1


def test_matched_flatness_contrasts_are_paired_by_seed_with_holm_over_the_family():
    from scipy import stats as sps

    from grawa_sim.experiments import flatness_matched as fm

    values = {"mgrawa": [4.0, 5.0, 6.5], "mgrawa+uniform": [4.5, 5.1, 6.0], "lgrawa": [4.2, 5.5, 6.1],
              "dp": [20.0, 25.0, 19.0], "localsgd": [5.0, 5.5, 7.0]}
    rows = [{"model": "average", "net": "cnn", "method": m, "seed": s, "run": f"{m}-{s}", "lambda_max": v,
             "trace": 10 * v, "train_loss": 0.04 + 0.02 * (m == "dp" and s == 2), "steps": 100 * (s + 1),
             "sim_time": 0.1 * (s + 1)}
            for m, vs in values.items() for s, v in enumerate(vs)]
    table = pd.DataFrame(rows)
    out = fm.contrasts(table).set_index(["measure", "contrast"])
    assert len(out) == 2 * len(fm.CONTRASTS)
    twin = out.loc[("lambda_max", "mgrawa − mgrawa+uniform")]
    assert twin["difference"] == pytest.approx(np.mean(np.subtract(values["mgrawa"], values["mgrawa+uniform"])))
    assert twin["p"] == pytest.approx(sps.ttest_rel(values["mgrawa"], values["mgrawa+uniform"]).pvalue)
    lgrawa = out.loc[("lambda_max", "lgrawa − lgrawa+uniform")]  # the one twin serves LGRAWA too
    assert lgrawa["p"] == pytest.approx(sps.ttest_rel(values["lgrawa"], values["mgrawa+uniform"]).pvalue)
    assert list(out["p_holm"]) == pytest.approx(holm(list(out["p"])))
    reached = fm.reached(table, 0.05).set_index("method")
    assert reached.loc["dp", "reached"] == 2 and reached.loc["mgrawa", "reached"] == 3
    assert reached.loc["mgrawa", "steps_mean"] == pytest.approx(200)


def test_flatness_runs_train_every_method_and_the_twin_to_a_cosine_end():
    """The converged setting: 7 methods and GRAWA's twin on both nets, 8 seeds each, lr 0 at the last step;
    the matched setting trains the same runs up to a train-loss target instead."""
    from grawa_sim.engine.lr_schedule import lr_at
    from grawa_sim.engine.problem import validate
    from grawa_sim.experiments import flatness_matched as fm
    from grawa_sim.experiments import flatness_study as fs

    configs = fs.configs(False)
    assert len(configs) == 2 * 8 * (len(fs.METHODS) + 1)
    names = {(c.model, c.algorithm, c.sam, c.weighting) for c in configs}
    assert ("cnn_bn", "mgrawa", False, "uniform") in names and ("cnn", "dp", True, None) in names
    assert {c.seed for c in configs} == set(range(fs.SEEDS))
    for cfg in map(validate, configs[:3]):
        assert cfg.lr_schedule == "cosine" and cfg.steps == fs.STEPS
        assert lr_at(cfg, cfg.steps) == pytest.approx(0.0, abs=1e-12) and lr_at(cfg, 0) == cfg.lr
    matched = fm.configs(False)
    assert [(c.model, c.algorithm, c.sam, c.weighting, c.seed) for c in matched] == \
        [(c.model, c.algorithm, c.sam, c.weighting, c.seed) for c in configs]
    assert all(c.target_train_loss == fm.TARGET and c.lr_schedule is None for c in matched)
    quick = fs.configs(True)
    assert {c.steps for c in quick} == {64} and {c.seed for c in quick} == {0}


def test_designs_differing_in_lr_spread_are_summarised_apart():
    """The reliability table has one row per (pull, lr_spread) design, each from its own rows."""
    exact, noisy = _weights_table(0.0), _weights_table(0.5).assign(lr_spread=8.0)
    both = ws.reliability_summary(pd.concat([exact.assign(lr_spread=1.0), noisy], ignore_index=True))
    assert list(both["lr_spread"]) == [1.0, 8.0]
    assert both.iloc[0]["reliability_mean"] == pytest.approx(1.0)
    assert both.iloc[1]["reliability_mean"] == pytest.approx(ws.reliability_summary(noisy).iloc[0]["reliability_mean"])
    assert ws.reliability_summary(exact).iloc[0]["lr_spread"] == 1.0  # rows without the column: every worker at lr


def test_by_worker_averages_rounds_then_seeds_and_names_each_workers_lr_factor():
    rows = []
    for seed, shift in ((0, 0.0), (1, 2.0)):
        for index in range(3):
            rows += [{"seed": seed, "pull": 0.5, "lr_spread": 4.0, "round": index, "worker": w,
                      "weight": 0.1 * w + index, "score": 1.0, "full_grad_norm": 1.0 + w,
                      "lambda_max": shift + w + index} for w in range(3)]
    out = ws.by_worker(pd.DataFrame(rows), workers=3).set_index("worker")
    assert list(out["lr_factor"]) == pytest.approx([0.5, 1.0, 2.0])
    assert out.loc[2, "lambda_max_mean"] == pytest.approx(np.mean([2 + 1, 2 + 2 + 1]))  # round mean 1, seeds 0/2
    per_seed = [2 + 1, 4 + 1]
    assert out.loc[2, "lambda_max_ci95"] == pytest.approx(
        sps.t.ppf(0.975, 1) * np.std(per_seed, ddof=1) / np.sqrt(2))
    assert out.loc[1, "weight_mean"] == pytest.approx(0.1 + 1) and (out["seeds"] == 2).all()
