"""The statistics helper against textbook formulas computed independently here."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize
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


# --- paired comparisons, Holm, McNemar -------------------------------------------------------------------------

def _seed_matched(n, shift=0.01, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(0.9, 0.02, n)  # the seed's own luck, shared by both methods
    return base + shift + rng.normal(0, 0.005, n), base + rng.normal(0, 0.005, n)


def test_paired_matches_ttest_rel_wilcoxon_and_t_interval():
    a, b = _seed_matched(8)
    r = stats.paired(a, b)
    d = a - b
    ref = sps.ttest_rel(a, b)
    assert r.n == 8 and r.dropped == 0
    assert r.difference == pytest.approx(d.mean()) and r.std == pytest.approx(d.std(ddof=1))
    assert r.t == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue)
    assert r.wilcoxon_p == pytest.approx(sps.wilcoxon(a, b).pvalue)
    half = sps.t.ppf(0.975, 7) * d.std(ddof=1) / math.sqrt(8)
    assert r.half_width == pytest.approx(half)
    assert (r.low, r.high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert r.significant and r.low > 0
    # the same data unpaired: the seed-to-seed spread (0.02) swamps the 0.01 shift
    assert not stats.welch(a, b).significant
    swapped = stats.paired(b, a)
    assert swapped.difference == pytest.approx(-r.difference) and swapped.p == pytest.approx(r.p)


def test_paired_str():
    r = stats.Paired(difference=0.012, std=0.0048, n=8, half_width=0.004, t=7.1, p=0.003, wilcoxon_p=0.008)
    assert str(r) == "+0.012 ± 0.004 (n=8, p=0.003)"
    assert str(stats.paired([1.0], [2.0])) == "-1.000 (n=1, p=nan)"


def test_paired_drops_nan_pairs_together_and_counts_them():
    a, b = _seed_matched(9, seed=1)
    a[2], b[5] = np.nan, np.nan
    r = stats.paired(a, b)
    keep = [i for i in range(9) if i not in (2, 5)]
    clean = stats.paired(a[keep], b[keep])
    assert r.n == 7 and r.dropped == 2 and clean.dropped == 0
    assert (r.difference, r.std, r.t, r.p, r.wilcoxon_p) == (clean.difference, clean.std, clean.t, clean.p,
                                                              clean.wilcoxon_p)
    assert r.p == pytest.approx(sps.ttest_rel(a[keep], b[keep]).pvalue)


def test_paired_zero_variance_decides_without_crashing():
    up = stats.paired([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    assert up.p == 0.0 and up.t == math.inf and up.std == 0.0 and up.half_width == 0.0 and up.significant
    assert stats.paired([0.5, 1.5, 2.5], [1.0, 2.0, 3.0]).t == -math.inf
    same = stats.paired([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same.p == 1.0 and same.t == 0.0 and same.difference == 0.0 and not same.significant
    # six equal non-zero differences: every sign positive, exact signed-rank p = 2 / 2^6
    assert stats.paired(np.arange(6) + 1.0, np.arange(6) + 0.5).wilcoxon_p == pytest.approx(2 / 64)
    assert stats.paired(np.ones(6), np.ones(6)).wilcoxon_p == 1.0


def test_paired_wilcoxon_needs_six_pairs():
    a, b = _seed_matched(6, seed=2)
    assert math.isnan(stats.paired(a[:5], b[:5]).wilcoxon_p)
    assert not math.isnan(stats.paired(a[:5], b[:5]).p)
    assert stats.paired(a, b).wilcoxon_p == pytest.approx(sps.wilcoxon(a, b).pvalue)
    # hand-worked: differences 1..6 with only the smallest negative, W- = 1: p = 2 · P(W ≤ 1) = 2 · 2/64
    assert stats.paired([-1, 2, 3, 4, 5, 6], [0] * 6).wilcoxon_p == pytest.approx(4 / 64)


def test_paired_small_n_and_mismatched_lengths():
    one = stats.paired([1.0, np.nan], [0.0, 1.0])
    assert one.n == 1 and one.dropped == 1 and one.difference == 1.0
    assert math.isnan(one.p) and math.isnan(one.half_width) and not one.significant
    assert stats.paired([], []).n == 0 and math.isnan(stats.paired([], []).difference)
    with pytest.raises(ValueError, match=r"got 3 and 4") as err:
        stats.paired([1, 2, 3], [1, 2, 3, 4])
    assert "\n" not in str(err.value)


def test_smallest_detectable_has_80_percent_power():
    n, s = 10, 0.02
    delta = stats.smallest_detectable(s, n)
    c, ncp = sps.t.ppf(0.975, n - 1), delta * math.sqrt(n) / s
    power = sps.nct.sf(c, n - 1, ncp) + sps.nct.cdf(-c, n - 1, ncp)
    assert power == pytest.approx(0.8, abs=1e-6)
    assert stats.paired_power(delta, s, n) == pytest.approx(0.8, abs=1e-6)
    assert stats.paired_power(0.0, s, n) == pytest.approx(0.05)  # no effect: both tails give alpha
    # the textbook approximation (t_{0.975} + t_{0.8}) s/√n: a little smaller at n = 5, close from n = 20
    approx = {m: (sps.t.ppf(0.975, m - 1) + sps.t.ppf(0.8, m - 1)) * s / math.sqrt(m) for m in (5, 20)}
    assert approx[5] < stats.smallest_detectable(s, 5) < 1.02 * approx[5]
    assert stats.smallest_detectable(s, 20) == pytest.approx(approx[20], rel=2e-3)
    assert stats.smallest_detectable(2 * s, n) == pytest.approx(2 * delta)
    assert stats.smallest_detectable(s, 2) > 5 * stats.smallest_detectable(s, 5)  # df = 1 works too
    assert math.isnan(stats.smallest_detectable(s, 1)) and stats.smallest_detectable(0.0, n) == 0.0
    with pytest.raises(ValueError, match="power"):
        stats.smallest_detectable(s, n, power=0.01)
    r = stats.paired(*_seed_matched(10))
    assert r.smallest_detectable == pytest.approx(stats.smallest_detectable(r.std, 10))


def test_smallest_detectable_by_simulation():
    n, s = 6, 1.0
    delta = stats.smallest_detectable(s, n)
    d = np.random.default_rng(3).normal(delta, s, (20000, n))
    rejected = sps.ttest_1samp(d, 0.0, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.012)  # binomial SE ≈ 0.003


def test_holm_hand_example_and_shapes():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = stats.holm({"x": 0.01, "skipped": float("nan"), "y": 0.04, "z": 0.03, "w": 0.005})
    assert list(adjusted) == ["x", "skipped", "y", "z", "w"] and math.isnan(adjusted["skipped"])
    assert [adjusted[k] for k in "xyzw"] == pytest.approx([0.03, 0.06, 0.06, 0.02])  # NaN not counted in m
    series = stats.holm(pd.Series([0.5, 0.6], index=["a", "b"]))
    assert list(series.index) == ["a", "b"] and series.tolist() == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == [] and stats.holm([0.2]) == pytest.approx([0.2])
    with pytest.raises(ValueError, match="1.5"):
        stats.holm([0.1, 1.5])


def _step_down_rejections(p, alpha):
    """Holm's procedure as a test: reject p_(1), p_(2), ... while p_(j) ≤ alpha / (m − j + 1)."""
    order, rejected = np.argsort(p), set()
    for j, i in enumerate(order):
        if p[i] > alpha / (len(p) - j):
            break
        rejected.add(int(i))
    return rejected


def test_holm_equals_the_step_down_procedure_and_is_monotone():
    rng = np.random.default_rng(4)
    for _ in range(50):
        p = rng.uniform(0, 0.1, rng.integers(1, 8)) ** rng.uniform(0.5, 2)
        adjusted = np.array(stats.holm(p))
        assert np.all(adjusted >= p - 1e-15) and np.all(adjusted <= 1)
        order = np.argsort(p)
        assert np.all(np.diff(adjusted[order]) >= 0)  # same order as the raw p-values
        for alpha in rng.uniform(0, 0.2, 20):
            assert set(np.flatnonzero(adjusted <= alpha)) == _step_down_rejections(p, alpha)


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(5).uniform(0, 0.2, 9)
    assert stats.holm(p) == pytest.approx(multitest.multipletests(p, method="holm")[1])


def test_mcnemar_hand_examples():
    # 8 starts: a alone succeeds on 6, b alone on 1, both fail on 1. P(X ≤ 1 | 7, ½) = 8/128 → p = 0.125
    a = [1, 1, 1, 1, 1, 1, 0, 0]
    b = [0, 0, 0, 0, 0, 0, 1, 0]
    r = stats.mcnemar(a, b)
    assert (r.b01, r.b10, r.n) == (1, 6, 8) and r.p == pytest.approx(0.125) and not r.significant
    assert r.difference == pytest.approx(5 / 8) and str(r) == "a only 6, b only 1 of 8 pairs (p=0.12)"
    # 6 to 0 plus concordant pairs, which do not count: p = 2 / 2^6
    r = stats.mcnemar([True] * 6 + [True, False] * 5, [False] * 6 + [True, False] * 5)
    assert (r.b01, r.b10) == (0, 6) and r.p == pytest.approx(2 / 64) and r.significant
    assert stats.mcnemar([1, 0, 1], [1, 0, 1]).p == 1.0 and stats.mcnemar([], []).p == 1.0


def test_mcnemar_matches_binomtest_on_discordant_pairs():
    for b01, b10 in [(0, 1), (2, 3), (3, 3), (1, 9), (12, 4), (0, 15), (20, 31)]:
        a = np.r_[np.zeros(b01), np.ones(b10), np.ones(4)].astype(bool)
        b = np.r_[np.ones(b01), np.zeros(b10), np.ones(4)].astype(bool)
        r = stats.mcnemar(a, b)
        assert (r.b01, r.b10) == (b01, b10)
        assert r.p == pytest.approx(sps.binomtest(b10, b01 + b10, 0.5).pvalue)


def test_mcnemar_rejects_bad_input():
    with pytest.raises(ValueError, match="got 2 and 3"):
        stats.mcnemar([True, False], [True, False, True])
    with pytest.raises(ValueError, match="a: outcomes"):
        stats.mcnemar([1, np.nan], [1, 0])
    with pytest.raises(ValueError, match="b: outcomes"):
        stats.mcnemar([1, 0], [2, 0])


def _mcnemar_power_by_enumeration(delta, n, discordant, alpha):
    """Every table (b10, b01, concordant) of n pairs with its multinomial probability; rejected where the exact
    two-sided binomial test of b10 of m = b10 + b01 at 1/2 (scipy's binomtest) gives p <= alpha."""
    probs = [(discordant + delta) / 2, (discordant - delta) / 2, 1 - discordant]
    power = 0.0
    for b10 in range(n + 1):
        for b01 in range(n + 1 - b10):
            if b10 + b01 and sps.binomtest(b10, b10 + b01, 0.5).pvalue <= alpha:
                power += sps.multinomial.pmf([b10, b01, n - b10 - b01], n, probs)
    return power


def test_mcnemar_power_matches_enumerating_every_table():
    for delta, n, discordant, alpha in [(0.0, 12, 0.5, 0.05), (0.2, 12, 0.5, 0.05), (0.3, 15, 0.4, 0.2),
                                        (-0.3, 15, 0.4, 0.2), (0.6, 14, 0.6, 0.05), (0.05, 20, 0.8, 0.1)]:
        expected = _mcnemar_power_by_enumeration(abs(delta), n, discordant, alpha)
        assert stats.mcnemar_power(delta, n, discordant, alpha) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_mcnemar_power_is_the_size_at_zero_and_grows_with_the_difference_and_the_pairs():
    for n in (10, 40, 100, 400, 1500):
        for discordant in (0.05, 0.3, 1.0):
            for alpha in (0.05, 0.01):
                size = stats.mcnemar_power(0.0, n, discordant, alpha)
                assert 0 <= size <= alpha  # the exact test never exceeds its level
    assert stats.mcnemar_power(0.0, 400, 0.3) > 0.03  # and is not far below it with ~120 discordant pairs
    deltas = np.linspace(0, 0.3, 31)
    powers = [stats.mcnemar_power(d, 100, 0.3) for d in deltas]
    assert np.all(np.diff(powers) > 0) and powers[-1] == pytest.approx(1.0)
    # the exact test's power saw-tooths in n, so compare well-separated sizes
    assert stats.mcnemar_power(0.05, 100, 0.2) < stats.mcnemar_power(0.05, 400, 0.2) \
        < stats.mcnemar_power(0.05, 1600, 0.2)
    # all discordant pairs one way: power = P(M >= 6), 2 / 2^6 being the first exact p below 0.05
    assert stats.mcnemar_power(0.5, 20, 0.5) == pytest.approx(sps.binom.sf(5, 20, 0.5))


def test_mcnemar_detectable_solves_the_power_equation():
    for n, discordant, power, alpha in [(100, 0.3, 0.8, 0.05), (400, 0.1, 0.9, 0.05), (2500, 0.05, 0.8, 0.05 / 36)]:
        delta = stats.mcnemar_detectable(n, discordant, power, alpha)
        assert 0 < delta < discordant
        assert stats.mcnemar_power(delta, n, discordant, alpha) == pytest.approx(power, abs=1e-7)
        assert stats.mcnemar_power(0.98 * delta, n, discordant, alpha) < power
    assert stats.mcnemar_detectable(400, 0.3, alpha=0.05 / 36) > stats.mcnemar_detectable(400, 0.3)
    assert stats.mcnemar_detectable(1600, 0.3) < stats.mcnemar_detectable(400, 0.3)


def test_mcnemar_detectable_by_simulation():
    n, discordant = 100, 0.3
    delta = stats.mcnemar_detectable(n, discordant)
    rng = np.random.default_rng(7)
    b10, b01, _ = rng.multinomial(n, [(discordant + delta) / 2, (discordant - delta) / 2, 1 - discordant], 20000).T
    m = b10 + b01
    p = np.where(m == 0, 1.0, np.minimum(1.0, 2 * sps.binom.cdf(np.minimum(b10, b01), m, 0.5)))
    for i in range(100):  # the vectorised p is `mcnemar`'s: rebuild the first designs as outcomes
        a = np.r_[np.ones(b10[i]), np.zeros(b01[i]), np.ones(n - m[i])].astype(bool)
        b = np.r_[np.zeros(b10[i]), np.ones(b01[i]), np.ones(n - m[i])].astype(bool)
        assert stats.mcnemar(a, b).p == pytest.approx(p[i], rel=1e-12)
    assert (p <= 0.05).mean() == pytest.approx(0.8, abs=0.02)  # binomial SE ≈ 0.003


def _connor_delta(n, discordant, power=0.8, alpha=0.05):
    """δ from Connor's (1987) sample size n = (z_{1−α/2} √ψ + z_{power} √(ψ − δ²))² / δ², solved for δ."""
    za, zb = sps.norm.ppf(1 - alpha / 2), sps.norm.ppf(power)

    def size(delta):
        return (za * math.sqrt(discordant) + zb * math.sqrt(discordant - delta**2)) ** 2 / delta**2 - n

    return optimize.brentq(size, 1e-9, discordant)


def test_mcnemar_detectable_approaches_connors_normal_approximation():
    for discordant in (0.05, 0.1, 0.3, 0.6):
        for alpha in (0.05, 0.05 / 36):
            exact = stats.mcnemar_detectable(2000, discordant, alpha=alpha)
            assert exact == pytest.approx(_connor_delta(2000, discordant, alpha=alpha), rel=0.05)


def test_mcnemar_detectable_nan_cases_and_bad_power():
    nan = math.isnan
    assert nan(stats.mcnemar_detectable(0, 0.3)) and nan(stats.mcnemar_detectable(-5, 0.3))
    assert nan(stats.mcnemar_detectable(100, float("nan"))) and nan(stats.mcnemar_detectable(100, 0.0))
    assert nan(stats.mcnemar_detectable(100, -0.1)) and nan(stats.mcnemar_detectable(100, 1.5))
    # 8 pairs, 3 of them discordant on average: even all of them one way rarely reaches the 6 needed
    assert sps.binom.sf(5, 8, 0.375) < 0.8 and nan(stats.mcnemar_detectable(8, 0.375))
    assert stats.mcnemar_detectable(40, 1.0) < 1.0  # every pair discordant: 40 of them are plenty
    assert nan(stats.mcnemar_power(0.1, 0, 0.3)) and nan(stats.mcnemar_power(0.4, 100, 0.3))
    assert nan(stats.mcnemar_power(0.1, 100, float("nan")))
    for bad in (0.01, 1.0, 1.2, float("nan")):
        with pytest.raises(ValueError, match="power"):
            stats.mcnemar_detectable(100, 0.3, power=bad)
    with pytest.raises(ValueError, match="alpha"):
        stats.mcnemar_power(0.1, 100, 0.3, alpha=0.0)


def test_holm_table_adjusts_the_declared_family():
    family = {"A − DP": stats.paired(*_seed_matched(8, shift=0.01)),
              "B − DP": stats.paired(*_seed_matched(8, shift=0.0, seed=6)),
              "A vs DP success": stats.mcnemar([1] * 6 + [0] * 2, [0] * 7 + [1])}
    table = stats.holm_table(family)
    assert list(table.columns) == ["contrast", "n", "difference", "low", "high", "p", "p_holm", "significant_holm"]
    assert table["contrast"].tolist() == list(family)
    assert table["p"].tolist() == [r.p for r in family.values()]
    assert table["p_holm"].tolist() == pytest.approx(stats.holm([r.p for r in family.values()]))
    assert table["significant_holm"].tolist() == (table["p_holm"] < 0.05).tolist()
    first = family["A − DP"]
    assert table.loc[0, ["n", "difference", "low", "high"]].tolist() == pytest.approx(
        [first.n, first.difference, first.low, first.high])
    assert table.loc[0, "significant_holm"] and not table.loc[1, "significant_holm"]
    assert math.isnan(table.loc[2, "low"])  # McNemar has no interval
    welch = stats.holm_table([("w", stats.welch([1.0, 1.1, 0.9], [0.0, 0.1, -0.1]))])
    assert math.isnan(welch.loc[0, "n"]) and welch.loc[0, "p_holm"] == welch.loc[0, "p"]


def test_spearman_exact_matches_the_permutation_test_and_the_tabled_critical_value():
    from grawa_sim.core.stats import spearman_exact

    x = np.array([33.9, 28.5, 9.5, 10.8, 10.9, 13.3])
    y = np.array([6.8, 1.1, 3.2, 4.1, 2.4, 3.7])
    test = spearman_exact(x, y)
    reference = sps.permutation_test((x,), lambda a: sps.spearmanr(a, y).statistic, permutation_type="pairings",
                                     n_resamples=np.inf)
    assert test.rho == pytest.approx(sps.spearmanr(x, y).statistic)
    assert test.p == pytest.approx(reference.pvalue)
    assert test.critical == pytest.approx(0.886, abs=1e-3)  # the two-sided 5 % value for n = 6 in the tables
    assert spearman_exact(range(6), range(6)).p == pytest.approx(2 / 720)  # only the two extreme orderings
    with pytest.raises(ValueError, match="between 3 and 9"):
        spearman_exact(range(12), range(12))


def test_means_with_ci_is_describe_for_several_columns():
    frame = pd.DataFrame({"g": ["a", "a", "a", "b"], "x": [1.0, 2.0, 4.0, 5.0], "y": [0.0, 1.0, 1.0, 2.0]})
    out = stats.means_with_ci(frame, ["g"], ["x", "y"], suffix="_mean", count="seeds").set_index("g")
    assert list(out.columns) == ["seeds", "x_mean", "x_ci95", "y_mean", "y_ci95"]
    one = stats.describe(frame, "g", "x")
    assert out.loc["a", "x_mean"] == pytest.approx(one.loc["a", "mean"]) == pytest.approx(7 / 3)
    assert out.loc["a", "x_ci95"] == pytest.approx(sps.t.ppf(0.975, 2) * np.std([1, 2, 4], ddof=1) / np.sqrt(3))
    assert out.loc["a", "seeds"] == 3 and np.isnan(out.loc["b", "x_ci95"]) and out.loc["b", "y_mean"] == 2.0
