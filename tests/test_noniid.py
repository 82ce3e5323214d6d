"""The non-IID study: its configurations, declared family, drift table and the weight-entropy correlation."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from grawa_sim.experiments import noniid
from grawa_sim.results.storage import load_weights
from grawa_sim.results.sweep import sweep


def test_configs_pair_every_grawa_with_its_twin_in_every_shard_setting():
    configs = noniid.configs(False, seeds=2, steps=100, alphas=(None, 0.3), algorithms=("dp", "mgrawa"))
    assert {c.steps for c in configs} == {100}
    assert {(c.partition, c.alpha) for c in configs} == {("iid", None), ("dirichlet", 0.3)}
    kinds = sorted((c.algorithm, c.weighting or "-") for c in configs if c.seed == 0 and c.partition == "iid")
    assert kinds == [("dp", "-"), ("mgrawa", "-"), ("mgrawa", "uniform")]
    assert len(configs) == 2 * 2 * 3 and {c.seed for c in configs} == {0, 1}
    assert {c.steps for c in noniid.configs(True)} == {64} and {c.seed for c in noniid.configs(True)} == {0}
    assert {c.seed for c in noniid.configs(False, algorithms=("dp",))} == set(range(10))


def test_the_family_is_declared_from_the_methods():
    fam = noniid.family(["dp", "localsgd", "mgrawa", "mgrawa+uniform", "lgrawa", "lgrawa+uniform"])
    assert fam.reference == "localsgd"
    assert fam.contrasts == (("mgrawa", "mgrawa+uniform"), ("mgrawa", "dp"), ("mgrawa", "localsgd"),
                             ("lgrawa", "lgrawa+uniform"), ("lgrawa", "dp"), ("lgrawa", "localsgd"))


def test_label_entropy_and_the_critical_rho():
    assert noniid.label_entropy(np.arange(10)) == pytest.approx(math.log(10))
    assert noniid.label_entropy(np.array([3, 3, 3])) == 0.0
    assert noniid.label_entropy(np.array([0, 0, 1, 1])) == pytest.approx(math.log(2))
    r = noniid.critical_rho(8)
    t = r * math.sqrt(6 / (1 - r * r))  # the t statistic of that rho with M - 2 = 6 degrees of freedom
    assert 2 * sps.t.sf(t, 6) == pytest.approx(0.05)


def test_drift_is_the_mean_accuracy_drop_and_spread():
    rows = []
    for partition, alpha, accs, spread in (("iid", None, (0.9, 0.8), 1.0), ("dirichlet", 0.1, (0.5, 0.6), 3.0)):
        for seed, acc in enumerate(accs):
            rows.append(dict(algorithm="mgrawa", sam=False, weighting="inverse_norm", seed=seed, partition=partition,
                             alpha=alpha, test_acc=acc, spread=spread + seed))
            rows.append(dict(algorithm="dp", sam=False, weighting=None, seed=seed, partition=partition, alpha=alpha,
                             test_acc=0.9, spread=0.0))
    frame = pd.DataFrame(rows).assign(run=[f"r{i}" for i in range(len(rows))])
    table = noniid.drift(frame)
    assert list(table.columns) == ["IID", "Dirichlet α = 0.1", "accuracy_drop"]
    assert list(table.index) == ["dp", "mgrawa"]  # smallest drop first
    assert table.loc["mgrawa", "accuracy_drop"] == pytest.approx(0.85 - 0.55)
    assert table.loc["mgrawa", "Dirichlet α = 0.1"] == pytest.approx(3.5)


def test_weight_entropy_correlation_of_a_real_run(tmp_path):
    configs = noniid.configs(True, seeds=2, steps=32, alphas=(0.1,), algorithms=("mgrawa", "lgrawa"))
    configs = [dataclasses.replace(c, tau=4, eval_every=32) for c in configs]
    histories = sweep(configs, tmp_path, progress=False, batch_runs="auto")
    table = noniid.weight_entropy_correlation(histories, tmp_path)
    assert len(table) == 4  # the GRAWA runs; the twins report weights of 1/M and are left out
    first = table.iloc[0]
    run = histories[(histories["algorithm"] == first["method"]) & (histories["seed"] == first["seed"])
                    & (histories["weighting"] != "uniform")]["run"].iloc[0]
    weights = load_weights(tmp_path / "runs" / run).groupby("worker")["weight"].mean().sort_index()
    config = next(c for c in configs if c.algorithm == first["method"] and c.seed == first["seed"])
    entropy = noniid.shard_entropies(config)
    assert first["rho"] == pytest.approx(sps.spearmanr(weights.to_numpy(), entropy).statistic)
    assert entropy.min() < entropy.max() <= math.log(10)
    summary = noniid.correlation_summary(table)
    assert set(summary.index.get_level_values("method")) == {"mgrawa", "lgrawa"}
    assert (summary["n"] == 2).all()
