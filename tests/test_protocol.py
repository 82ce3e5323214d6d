"""Declared families, paired contrasts with Holm, failures counted: on hand-made final rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from grawa_sim.core import stats
from grawa_sim.experiments import presets, protocol


def _histories(values: dict[str, list[float]], diverged: dict[str, list[int]] | None = None) -> pd.DataFrame:
    """One final row per (method, seed); a method name 'x+uniform' is GRAWA x with uniform weights."""
    rows = []
    for method, accs in values.items():
        algorithm, _, variant = method.partition("+")
        for seed, acc in enumerate(accs):
            bad = seed in (diverged or {}).get(method, [])
            rows.append({"algorithm": algorithm, "sam": variant == "sam", "weighting": variant or None,
                         "seed": seed, "run": f"{method}-{seed}", "step": 100,
                         "test_acc": np.nan if bad else acc, "test_loss": 1.0, "spread": 0.0,
                         "status": "diverged" if bad else "finished"})
    return pd.DataFrame(rows)


VALUES = {"mgrawa": [0.90, 0.92, 0.91, 0.95, 0.93, 0.94],
          "mgrawa+uniform": [0.89, 0.90, 0.90, 0.93, 0.92, 0.92],
          "localsgd": [0.91, 0.90, 0.92, 0.93, 0.94, 0.93],
          "dp": [0.80, 0.85, 0.82, 0.81, 0.84, 0.86]}


def test_the_grawa_family_declares_the_twin_dp_and_localsgd():
    family = protocol.grawa_family("study", list(VALUES), reference="dp")
    assert family.contrasts == (("mgrawa", "mgrawa+uniform"), ("mgrawa", "dp"), ("mgrawa", "localsgd"))
    assert family.reference == "dp" and family.describe()[0] == "mgrawa − mgrawa+uniform on test_acc"
    assert protocol.grawa_family("x", ["dp", "localsgd"]).contrasts == ()


def test_compare_is_paired_by_seed_and_holm_corrected():
    family = protocol.grawa_family("study", list(VALUES))
    table = protocol.compare(_histories(VALUES), family).set_index("contrast")
    raw = []
    for a, b in family.contrasts:
        expected = sps.ttest_rel(VALUES[a], VALUES[b])
        row = table.loc[f"{a} − {b}"]
        assert row["p"] == pytest.approx(expected.pvalue, rel=1e-12)
        assert row["difference"] == pytest.approx(np.mean(np.subtract(VALUES[a], VALUES[b])), abs=1e-12)
        assert row["pairs"] == 6
        raw.append(expected.pvalue)
    assert list(table["p_holm"]) == pytest.approx(stats.holm(raw), rel=1e-12)
    assert (table["p_holm"] >= table["p"]).all()


def test_a_diverged_seed_is_scored_at_chance_and_counted():
    h = _histories(VALUES, diverged={"mgrawa": [3]})
    table = protocol.compare(h, protocol.Family("f", "localsgd", (("mgrawa", "localsgd"),)), classes=10)
    row = table.iloc[0]
    scored = list(VALUES["mgrawa"])
    scored[3] = 0.1
    assert row["p"] == pytest.approx(sps.ttest_rel(scored, VALUES["localsgd"]).pvalue, rel=1e-12)
    assert row["scored_at_chance"] == 1 and row["pairs"] == 6
    lossy = protocol.compare(h, protocol.Family("f", "localsgd", (("mgrawa", "localsgd"),), metric="test_loss"))
    assert lossy.iloc[0]["dropped"] == 1 and lossy.iloc[0]["n"] == 5  # no chance level for a loss: pair dropped


def test_outcomes_count_failures_with_a_wilson_interval():
    h = _histories(VALUES, diverged={"dp": [0, 4]})
    table = protocol.outcomes(h)
    dp = table.loc["dp"]
    assert (dp["finished"], dp["total"], dp["diverged"]) == (4, 6, 2)
    wilson = stats.proportion(2, 6)
    assert (dp["divergence_low"], dp["divergence_high"]) == (wilson.low, wilson.high)
    assert dp["test_acc_mean_finished"] == pytest.approx(np.mean([0.85, 0.82, 0.81, 0.86]))
    assert table.loc["mgrawa", "diverged"] == 0


def test_summary_against_a_declared_reference_is_paired_and_holm_corrected():
    named = protocol.with_methods(_histories(VALUES))
    table = presets.summary(named.assign(algorithm=named["method"]), reference="localsgd")
    raw = {m: sps.ttest_rel(VALUES[m], VALUES["localsgd"]).pvalue for m in VALUES if m != "localsgd"}
    for method, p in raw.items():
        assert table.loc[method, "p_vs_ref"] == pytest.approx(p, rel=1e-12)
    assert dict(zip(raw, stats.holm(list(raw.values())))) == pytest.approx(
        {m: table.loc[m, "p_holm"] for m in raw}, rel=1e-12)
    assert table.loc["localsgd", "diff_vs_ref"] == 0 and np.isnan(table.loc["localsgd", "p_holm"])
    assert "p_vs_best" not in table
    with pytest.raises(ValueError, match="^reference: no runs of 'sgd'"):
        presets.summary(named.assign(algorithm=named["method"]), reference="sgd")
