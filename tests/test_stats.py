"""The statistics helper against textbook formulas computed independently here."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from grawa_sim.core import stats


def test_interval_matches_t_formula():
    x = [0.91, 0.93, 0.89, 0.95, 0.90]
    iv = stats.interval(x)
    m, s = np.mean(x), np.std(x, ddof=1)
    assert iv.mean == pytest.approx(m)
    assert iv.std == pytest.approx(s)
    assert iv.n == 5
    # t_{0.975, 4} = 2.776445
    assert iv.half_width == pytest.approx(2.776445 * s / math.sqrt(5), rel=1e-5)
    assert iv.low < m < iv.high


def test_interval_small_and_nan():
    assert stats.interval([1.0]).n == 1 and math.isnan(stats.interval([1.0]).half_width)
    assert stats.interval([]).n == 0
    assert stats.interval([1.0, float("nan"), 3.0]).n == 2


def test_welch_matches_hand_formula():
    a, b = np.array([0.913, 0.89, 0.936]), np.array([0.898, 0.89, 0.906])
    w = stats.welch(a, b)
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    assert w.t == pytest.approx(t)
    assert w.df == pytest.approx(df)
    assert w.p == pytest.approx(2 * sps.t.sf(abs(t), df))
    assert not w.significant
    assert "not significant" in w.verdict("MGRAWA", "DP")


def test_welch_significant_verdict_names_winner():
    w = stats.welch([1.0, 1.1, 0.9, 1.05], [0.0, 0.1, -0.1, 0.05])
    assert w.significant and w.verdict("A", "B") .startswith("A beats B")
    assert stats.welch([0.0, 0.1, -0.1], [1.0, 1.1, 0.9]).verdict("A", "B").startswith("B beats A")
    assert stats.welch([1, 1], [1, 1]).p == 1.0
    assert stats.welch([1, 1], [2, 2]).p == 0.0


def test_describe_and_versus_best():
    frame = pd.DataFrame({"algorithm": ["a"] * 3 + ["b"] * 3, "acc": [0.9, 0.91, 0.92, 0.5, 0.52, 0.51]})
    d = stats.describe(frame, "algorithm", "acc")
    assert d.loc["a", "n"] == 3 and d.loc["a", "mean"] == pytest.approx(0.91)
    v = stats.versus_best(frame, "algorithm", "acc")
    assert v.loc["b", "best"] == "a" and v.loc["b", "significant"]
    assert not v.loc["a", "significant"]


def test_wilson_interval():
    p = stats.proportion(0, 200)
    assert p.low == 0.0 and 0 < p.high < 0.03
    p = stats.proportion(50, 100)
    # Wilson for 50/100: 0.5 ± 1.96*sqrt(.25/100 + 1.96^2/40000)/(1+1.96^2/100)
    z = 1.959964
    half = z * math.sqrt(0.0025 + z * z / 40000) / (1 + z * z / 100)
    assert p.low == pytest.approx(0.5 - half, rel=1e-5) and p.high == pytest.approx(0.5 + half, rel=1e-5)


def test_versus_a_named_reference_matches_welch_pair_by_pair():
    frame = pd.DataFrame({"m": ["dp"] * 3 + ["a"] * 3 + ["b"] * 3,
                          "v": [5.0, 6.0, 7.0, 1.0, 1.5, 2.0, 5.5, 6.5, 6.0]})
    table = stats.versus(frame, "m", "v", reference="dp")
    assert (table["reference"] == "dp").all() and not table.loc["dp", "significant"]
    for name in ("a", "b"):
        expected = sps.ttest_ind(frame[frame.m == name].v, frame[frame.m == "dp"].v, equal_var=False)
        assert table.loc[name, "p"] == pytest.approx(expected.pvalue)
        assert table.loc[name, "t"] == pytest.approx(expected.statistic)
    assert table.loc["a", "significant"] and not table.loc["b", "significant"]
