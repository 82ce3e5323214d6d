"""Statistics over seeds: mean, standard deviation, n, the 95 % t-interval, Welch's t-test.

For n values x_1..x_n with mean m and sample standard deviation s, the 95 % interval of the
mean is m ± t_{0.975, n-1} · s / √n (Student's t). Welch's t-test compares two means without
assuming equal variances: t = (m_a − m_b) / √(s_a²/n_a + s_b²/n_b), with the
Welch–Satterthwaite degrees of freedom. A difference is called significant only when p < 0.05.
Binomial proportions get the Wilson score interval. A trend is the least-squares slope of y on x
with its 95 % t-interval and the two-sided p-value of slope = 0.

Seed-matched comparisons (a[i] and b[i] ran from the same seed) are paired: the paired t-test on the
differences d_i = a_i − b_i, t = mean(d) / (s_d / √n) with n − 1 degrees of freedom, plus Wilcoxon's
signed-rank test; paired pass/fail outcomes get McNemar's exact test, with its exact power and smallest
detectable difference in success share (``mcnemar_power``, ``mcnemar_detectable``). A declared family of tests is
corrected with Holm's step-down adjustment (``holm``, ``holm_table``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as sps

ALPHA = 0.05


@dataclass(frozen=True)
class Interval:
    """Mean ± half-width (95 % t-interval) of ``n`` values with standard deviation ``std``."""

    mean: float
    std: float
    n: int
    half_width: float

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def __str__(self) -> str:
        return format_interval(self.mean, self.half_width, self.n)


def interval(values: Sequence[float] | np.ndarray | pd.Series, confidence: float = 0.95) -> Interval:
    """Mean, sample std, n and the half-width of the t-interval (nan for n < 2); NaNs are dropped."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return Interval(float("nan"), float("nan"), 0, float("nan"))
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, float("nan"), 1, float("nan"))
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))
    return Interval(mean, std, n, half)


def format_interval(mean: float, half_width: float, n: int | None = None, digits: int = 3) -> str:
    """'0.913 ± 0.019 (n=5)'; the ± part is left out when it is undefined."""
    text = f"{mean:.{digits}f}"
    if not math.isnan(half_width):
        text += f" ± {half_width:.{digits}f}"
    return text + (f" (n={n})" if n is not None else "")


class Tested:
    """A test result with a two-sided p-value ``p``: ``significant`` when p < ALPHA."""

    p: float

    @property
    def significant(self) -> bool:
        return bool(self.p < ALPHA)


@dataclass(frozen=True)
class Welch(Tested):
    """Welch's t-test of mean(a) − mean(b): statistic, two-sided p-value, degrees of freedom."""

    difference: float
    t: float
    p: float
    df: float

    def verdict(self, a: str = "a", b: str = "b", higher_is_better: bool = True) -> str:
        """'a beats b (p = 0.003)' or 'a vs b: not significant (p = 0.27)'."""
        if math.isnan(self.p) or not self.significant:
            return f"{a} vs {b}: not significant (p = {self.p:.2g})"
        a_wins = (self.difference > 0) == higher_is_better
        winner, loser = (a, b) if a_wins else (b, a)
        return f"{winner} beats {loser} (p = {self.p:.2g})"


def welch(a: Sequence[float] | np.ndarray | pd.Series, b: Sequence[float] | np.ndarray | pd.Series) -> Welch:
    """Welch's two-sided t-test (scipy.stats.ttest_ind, equal_var=False); p is nan below 2 values a side."""
    xa, xb = (np.asarray(v, dtype=float) for v in (a, b))
    xa, xb = xa[~np.isnan(xa)], xb[~np.isnan(xb)]
    diff = float(xa.mean() - xb.mean()) if len(xa) and len(xb) else float("nan")
    if len(xa) < 2 or len(xb) < 2:
        return Welch(diff, float("nan"), float("nan"), float("nan"))
    va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
    if va + vb == 0:  # both constant: equal means are no difference, unequal ones are certain
        return Welch(diff, 0.0 if diff == 0 else math.copysign(math.inf, diff), 1.0 if diff == 0 else 0.0,
                     float(len(xa) + len(xb) - 2))
    res = sps.ttest_ind(xa, xb, equal_var=False)
    df = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1))
    return Welch(diff, float(res.statistic), float(res.pvalue), float(df))


def describe(frame: pd.DataFrame, by: str | list[str], value: str) -> pd.DataFrame:
    """Per group: mean, std, n, the 95 % half-width and the interval's ends of column ``value``."""
    rows = []
    for key, group in frame.groupby(by, sort=False):
        iv = interval(group[value])
        keys = key if isinstance(key, tuple) else (key,)
        names = by if isinstance(by, list) else [by]
        rows.append({**dict(zip(names, keys)), "mean": iv.mean, "std": iv.std, "n": iv.n,
                     "ci95": iv.half_width, "low": iv.low, "high": iv.high})
    return pd.DataFrame(rows).set_index(by)


def means_with_ci(frame: pd.DataFrame, by: list[str], values: list[str], suffix: str = "",
                  count: str = "n") -> pd.DataFrame:
    """Per group of ``by`` (one row each, groups in order of appearance): for each of ``values`` the mean
    (column ``<value><suffix>``) and its 95 % t half-width (``<value>_ci95``, nan below 2 rows), and the
    group's row count (``count``): a wide `describe` over several columns, the rows being the independent units."""
    rows = []
    for key, group in frame.groupby(by, sort=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,))) | {count: len(group)}
        for value in values:
            ci = interval(group[value])
            row |= {f"{value}{suffix}": ci.mean, f"{value}_ci95": ci.half_width}
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, count, *(c for v in values for c in (f"{v}{suffix}", f"{v}_ci95"))])


def versus(frame: pd.DataFrame, by: str, value: str, reference=None, higher_is_better: bool = True) -> pd.DataFrame:
    """Welch's test of every group of ``by`` against ``reference`` (default: the group with the best mean):
    columns reference, difference (group − reference), t, p, significant (the reference row: False)."""
    groups = {k: g[value].to_numpy(float) for k, g in frame.groupby(by, sort=False)}
    if reference is None:
        means = {k: np.nanmean(v) for k, v in groups.items()}
        reference = (max if higher_is_better else min)(means, key=means.get)
    rows = []
    for k, v in groups.items():
        w = welch(v, groups[reference])
        rows.append({by: k, "reference": reference, "difference": w.difference, "t": w.t, "p": w.p,
                     "significant": w.significant if k != reference else False})
    return pd.DataFrame(rows).set_index(by)


def versus_best(frame: pd.DataFrame, by: str, value: str, higher_is_better: bool = True) -> pd.DataFrame:
    """`versus` the group with the best mean (column ``best`` names it)."""
    return versus(frame, by, value, None, higher_is_better).rename(columns={"reference": "best"})


@dataclass(frozen=True)
class Proportion:
    """k successes of n with the Wilson score 95 % interval."""

    k: int
    n: int
    low: float
    high: float

    @property
    def fraction(self) -> float:
        return self.k / self.n if self.n else float("nan")

    def __str__(self) -> str:
        return f"{self.fraction:.3f} [{self.low:.3f}, {self.high:.3f}] ({self.k}/{self.n})"


def proportion(k: int, n: int, confidence: float = 0.95) -> Proportion:
    """Wilson score interval of a binomial proportion (well behaved at k = 0 and k = n)."""
    if n <= 0:
        return Proportion(k, n, float("nan"), float("nan"))
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return Proportion(k, n, low, high)


def fisher(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """Two-sided p-value of Fisher's exact test that two binomial proportions k_a/n_a and k_b/n_b are equal."""
    return float(sps.fisher_exact([[k_a, n_a - k_a], [k_b, n_b - k_b]]).pvalue)


@dataclass(frozen=True)
class Trend(Tested):
    """Least-squares line y = intercept + slope · x over ``n`` points: the slope's 95 % t-interval
    half-width and the two-sided p-value of the hypothesis slope = 0 (nan below 3 points)."""

    slope: float
    intercept: float
    half_width: float
    p: float
    n: int


def trend(x: Sequence[float] | np.ndarray | pd.Series, y: Sequence[float] | np.ndarray | pd.Series,
          confidence: float = 0.95) -> Trend:
    """The slope of ``y`` on ``x`` (scipy.stats.linregress), pairs with a NaN dropped; slope and p are nan
    when x takes fewer than two distinct values, the interval and p are nan with fewer than three points."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xs.shape != ys.shape:
        raise ValueError(f"x and y: must have the same length (got {len(xs)} and {len(ys)})")
    keep = ~(np.isnan(xs) | np.isnan(ys))
    xs, ys = xs[keep], ys[keep]
    n = len(xs)
    if n < 2 or np.unique(xs).size < 2:
        return Trend(float("nan"), float("nan"), float("nan"), float("nan"), n)
    fit = sps.linregress(xs, ys)
    if n < 3:
        return Trend(float(fit.slope), float(fit.intercept), float("nan"), float("nan"), n)
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 2) * fit.stderr)
    return Trend(float(fit.slope), float(fit.intercept), half, float(fit.pvalue), n)


WILCOXON_MIN_N = 6  # the smallest n whose exact two-sided signed-rank p can fall below 0.05 (2 / 2^6 = 0.031)


@dataclass(frozen=True)
class Paired(Tested):
    """Paired comparison of seed-matched values: the differences d_i = a_i − b_i over ``n`` pairs, their mean
    ``difference`` and sample std ``std``, the half-width of the 95 % t-interval of the mean difference,
    t_{0.975, n−1} · s_d / √n, the paired t statistic t = mean(d) / (s_d / √n) with its two-sided p-value ``p``
    (n − 1 degrees of freedom), the two-sided Wilcoxon signed-rank p-value ``wilcoxon_p`` (nan below
    WILCOXON_MIN_N pairs) and the number of pairs ``dropped`` because a or b was NaN."""

    difference: float
    std: float
    n: int
    half_width: float
    t: float
    p: float
    wilcoxon_p: float
    dropped: int = 0

    @property
    def low(self) -> float:
        return self.difference - self.half_width

    @property
    def high(self) -> float:
        return self.difference + self.half_width

    @property
    def smallest_detectable(self) -> float:
        """The smallest mean difference this design detects with 80 % power (see ``smallest_detectable``)."""
        return smallest_detectable(self.std, self.n)

    def __str__(self) -> str:
        """'+0.012 ± 0.004 (n=8, p=0.003)'; the ± part is left out when it is undefined."""
        text = f"{self.difference:+.3f}"
        if not math.isnan(self.half_width):
            text += f" ± {self.half_width:.3f}"
        return text + f" (n={self.n}, p={self.p:.2g})"


def paired(a: Sequence[float] | np.ndarray | pd.Series, b: Sequence[float] | np.ndarray | pd.Series,
           confidence: float = 0.95) -> Paired:
    """Paired t-test (scipy.stats.ttest_rel semantics) and Wilcoxon signed-rank test (scipy.stats.wilcoxon,
    its defaults: zero differences dropped) of a − b, where a[i] and b[i] come from the same seed.

    A pair with a NaN on either side is dropped whole and counted in ``dropped``. Below 2 pairs std, the
    interval, t and p are nan; Wilcoxon needs at least WILCOXON_MIN_N pairs (else nan). When every difference
    is the same (s_d = 0) the test is decided without scipy: p = 0 (t = ±inf) for a non-zero mean difference,
    p = 1 (t = 0) when it is zero, and the interval's half-width is 0. Lengths must match (ValueError)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.shape != xb.shape:
        raise ValueError(f"a and b: must have the same length (got {len(xa)} and {len(xb)})")
    keep = ~(np.isnan(xa) | np.isnan(xb))
    d = xa[keep] - xb[keep]
    n, dropped, nan = len(d), int((~keep).sum()), float("nan")
    if n < 2:
        return Paired(float(d.mean()) if n else nan, nan, n, nan, nan, nan, nan, dropped)
    diff = float(d.mean())
    if np.all(d == d[0]):  # zero variance: the difference is exactly known
        if diff == 0:
            t, p = 0.0, 1.0
        else:
            t, p = math.copysign(math.inf, diff), 0.0
        return Paired(diff, 0.0, n, 0.0, t, p, _wilcoxon(d), dropped)
    std = float(d.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))
    res = sps.ttest_rel(xa[keep], xb[keep])
    return Paired(diff, std, n, half, float(res.statistic), float(res.pvalue), _wilcoxon(d), dropped)


def _wilcoxon(d: np.ndarray) -> float:
    """Two-sided signed-rank p of the differences ``d``: nan below WILCOXON_MIN_N, 1 when all are zero."""
    if len(d) < WILCOXON_MIN_N:
        return float("nan")
    return float(sps.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0


def paired_power(effect: float, std: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` when the true mean difference is ``effect`` and
    the differences' std is ``std``: P(|T| > t_{1−α/2, n−1}) with T ~ noncentral t(n − 1, effect · √n / std)."""
    if n < 2 or not std > 0:
        return float("nan")
    return _t_power(abs(effect) * math.sqrt(n) / std, n - 1, alpha)


def _t_power(ncp: float, df: int, alpha: float) -> float:
    """P(|T| > t_{1−α/2, df}), T ~ noncentral t(df, ncp); the lower tail as sf at −ncp (cdf gives nan there)."""
    crit = float(sps.t.ppf(1 - alpha / 2, df))
    return float(sps.nct.sf(crit, df, ncp) + sps.nct.sf(crit, df, -ncp))


def smallest_detectable(std: float, n: int, power: float = 0.8, alpha: float = ALPHA) -> float:
    """The minimum detectable mean difference of a two-sided paired t-test at level ``alpha`` with ``n`` pairs
    whose differences have std ``std`` (the observed s_d taken as the true one): the δ > 0 with
    ``paired_power(δ, std, n, alpha) == power``, solved exactly on the noncentral t. The textbook approximation
    (t_{1−α/2, n−1} + t_{power, n−1}) · s_d / √n falls short of it at small n (by 16 % at n = 2, 5 % at n = 3,
    1.2 % at n = 5) and agrees within 0.3 % from n = 8. nan below 2 pairs or for an undefined std; 0 when std is 0."""
    if not alpha < power < 1:
        raise ValueError(f"power: must lie between alpha={alpha} and 1 (got {power})")
    if n < 2 or math.isnan(std):
        return float("nan")
    if std == 0:
        return 0.0
    df = n - 1

    def gap(ncp: float) -> float:
        return _t_power(ncp, df, alpha) - power

    high = float(sps.t.ppf(1 - alpha / 2, df) + sps.norm.ppf(power)) + 1.0
    while gap(high) < 0:
        high *= 2
    ncp = optimize.brentq(gap, 0.0, high, xtol=1e-12)
    return float(ncp * std / math.sqrt(n))


@dataclass(frozen=True)
class McNemar(Tested):
    """McNemar's exact test of paired pass/fail outcomes over ``n`` pairs: ``b01`` pairs where only b succeeded,
    ``b10`` where only a did; p = min(1, 2 · P(X ≤ min(b01, b10))), X ~ Binomial(b01 + b10, 1/2)."""

    b01: int
    b10: int
    n: int
    p: float

    @property
    def difference(self) -> float:
        """Success rate of a minus that of b, (b10 − b01) / n."""
        return (self.b10 - self.b01) / self.n if self.n else float("nan")

    def __str__(self) -> str:
        """'a only 9, b only 3 of 40 pairs (p=0.15)'."""
        return f"a only {self.b10}, b only {self.b01} of {self.n} pairs (p={self.p:.2g})"


def mcnemar(a: Sequence[bool] | np.ndarray | pd.Series, b: Sequence[bool] | np.ndarray | pd.Series) -> McNemar:
    """McNemar's exact two-sided test that two methods run from the same starts succeed equally often; a[i] and
    b[i] are the outcomes (True/False or 1/0, anything else is a ValueError) of the same start. Only the
    discordant pairs count: b01 (a false, b true) and b10 (a true, b false); p = 1 when there are none."""
    xa, xb = np.asarray(a), np.asarray(b)
    if xa.shape != xb.shape:
        raise ValueError(f"a and b: must have the same length (got {len(xa)} and {len(xb)})")
    for name, x in (("a", xa), ("b", xb)):
        if not np.isin(x, (0, 1)).all():
            raise ValueError(f"{name}: outcomes must be True/False or 1/0")
    xa, xb = xa.astype(bool), xb.astype(bool)
    b01, b10 = int((~xa & xb).sum()), int((xa & ~xb).sum())
    m = b01 + b10
    p = 1.0 if m == 0 else min(1.0, 2.0 * float(sps.binom.cdf(min(b01, b10), m, 0.5)))
    return McNemar(b01, b10, len(xa), p)


def _mcnemar_design(n: int, discordant: float, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The counts m of discordant pairs that carry weight, their probabilities P(M = m), M ~ Binomial(n, ψ), and
    the critical counts c_m: the exact test rejects when min(b01, b10) <= c_m, i.e. 2 · BinomCDF(c_m; m, 1/2) <=
    alpha (c_m = −1: no outcome of m pairs is significant). Counts m of probability below 1e-18 are left out (their
    mass, under n · 1e-18, is below the float resolution of a power)."""
    m = np.arange(n + 1)
    weight = sps.binom.pmf(m, n, discordant)
    keep = weight > 1e-18
    m, weight = m[keep], weight[keep]
    # the largest c with 2 · F(c; m, 1/2) <= alpha, decided with the same expression as `mcnemar`'s p (ppf is
    # only the starting guess, its neighbours settle float ties)
    guess = sps.binom.ppf(alpha / 2, m, 0.5)
    critical = guess - 2
    for candidate in (guess - 1, guess, guess + 1):
        ok = (candidate >= 0) & (2.0 * sps.binom.cdf(candidate, m, 0.5) <= alpha)
        critical = np.where(ok, candidate, critical)
    return m, weight, np.maximum(critical, -1)


def _mcnemar_power(m: np.ndarray, weight: np.ndarray, critical: np.ndarray, q: float) -> float:
    """Σ_m P(M = m) · [P(X <= c_m) + P(X >= m − c_m)], X ~ Binomial(m, q); the two tails never overlap (c_m < m/2)."""
    reject = sps.binom.cdf(critical, m, q) + sps.binom.sf(m - critical - 1, m, q)
    return float(np.dot(weight, reject))


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: must lie between 0 and 1 (got {alpha})")


def mcnemar_power(delta: float, n: int, discordant: float, alpha: float = ALPHA) -> float:
    """Exact power of McNemar's exact two-sided test (``mcnemar``) at level ``alpha`` with ``n`` pairs whose
    discordant share is ψ = ``discordant`` = P(a only) + P(b only) and whose difference in success share is
    δ = ``delta`` = P(a only) − P(b only):

        power = Σ_{m=0..n} Binom(m; n, ψ) · [P(X <= c_m) + P(X >= m − c_m)],  X ~ Binomial(m, q), q = (1 + δ/ψ) / 2,

    where c_m is the largest c with 2 · BinomCDF(c; m, 1/2) <= alpha, so the sum is over the outcomes whose exact p,
    min(1, 2 · BinomCDF(min(b01, b10); m, 1/2)), is <= alpha (none when c_m = −1, e.g. m = 0). The power depends
    on |δ| only; at δ = 0 it is the test's size, which is <= alpha (the exact test is conservative). nan when
    n < 1, ψ is nan or outside (0, 1], or |δ| > ψ (no such design); alpha outside (0, 1) is a ValueError."""
    _check_alpha(alpha)
    if n < 1 or not 0 < discordant <= 1 or not abs(delta) <= discordant:
        return float("nan")
    q = min(1.0, (1 + abs(delta) / discordant) / 2)
    return _mcnemar_power(*_mcnemar_design(int(n), discordant, alpha), q)


def mcnemar_detectable(n: int, discordant: float, power: float = 0.8, alpha: float = ALPHA) -> float:
    """The minimum detectable difference in success share |P(a only) − P(b only)| of McNemar's exact two-sided
    test (``mcnemar``) at level ``alpha`` with ``n`` pairs whose discordant share P(a only) + P(b only) is
    ``discordant`` (ψ): the δ in (0, ψ] with ``mcnemar_power(δ, n, ψ, alpha) == power``, solved with brentq on the
    exact power (which rises with δ). Connor's (1987) normal approximation, n = (z_{1−α/2} √ψ + z_{power} √(ψ − δ²))²
    / δ², agrees with it at large n. nan when n < 1, when ψ is nan or outside (0, 1], and when even δ = ψ (every
    discordant pair goes to a) falls short of ``power`` (too few pairs: with m discordant pairs all one way the exact
    p is 2 / 2^m, so m must reach log2(2 / alpha) with probability ``power``). ``power`` outside (alpha, 1) and alpha
    outside (0, 1) are a ValueError."""
    _check_alpha(alpha)
    if not alpha < power < 1:
        raise ValueError(f"power: must lie between alpha={alpha} and 1 (got {power})")
    if n < 1 or not 0 < discordant <= 1:
        return float("nan")
    design = _mcnemar_design(int(n), discordant, alpha)

    def gap(delta: float) -> float:
        return _mcnemar_power(*design, min(1.0, (1 + delta / discordant) / 2)) - power

    top = gap(discordant)
    if top < 0:
        return float("nan")
    if top == 0:
        return float(discordant)
    return float(optimize.brentq(gap, 0.0, discordant, xtol=1e-12))


@dataclass(frozen=True)
class Spearman:
    """Spearman's rank correlation of n pairs with its exact two-sided p (every permutation of the ranks,
    n <= 9) and the critical |rho| at ``ALPHA``: the smallest |rho| whose exact p is below it."""

    rho: float
    p: float
    n: int
    critical: float


def _rank_rhos(n: int) -> np.ndarray:
    import itertools

    ranks = np.arange(n, dtype=float)
    d2 = np.array([((ranks - np.array(perm)) ** 2).sum() for perm in itertools.permutations(range(n))])
    return 1 - 6 * d2 / (n * (n * n - 1))


def spearman_exact(x: Sequence[float] | np.ndarray | pd.Series, y: Sequence[float] | np.ndarray | pd.Series,
                   alpha: float = ALPHA) -> Spearman:
    """Spearman's rho with its exact permutation p-value (no ties; 3 <= n <= 9): P(|rho_perm| >= |rho|)
    over all n! orderings, and the critical |rho| of a two-sided test at ``alpha`` (n = 6: 0.886)."""
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    n = len(xa)
    if n != len(ya) or not 3 <= n <= 9:
        raise ValueError(f"x, y: need the same length between 3 and 9 (got {len(xa)} and {len(ya)})")
    rho = float(sps.spearmanr(xa, ya).statistic)
    rhos = np.abs(_rank_rhos(n))
    p = float((rhos >= abs(rho) - 1e-12).mean())
    candidates = np.unique(rhos)
    critical = float(next(c for c in candidates if (rhos >= c - 1e-12).mean() < alpha))
    return Spearman(rho, p, n, critical)


def holm(p_values: Sequence[float] | np.ndarray | pd.Series | Mapping[str, float]
         ) -> list[float] | dict[str, float] | pd.Series:
    """Holm's step-down adjusted p-values of one family of tests, in the input's shape (a list for a sequence,
    a dict for a mapping name → p, a Series for a Series). With the m p-values sorted, p_(1) ≤ … ≤ p_(m):
    adjusted_(i) = max_{j ≤ i} min(1, (m − j + 1) · p_(j)); rejecting adjusted < α controls the family-wise
    error at α. NaN p-values (tests that could not be run) stay NaN and do not count in m."""
    if isinstance(p_values, Mapping):
        return dict(zip(p_values, holm(list(p_values.values()))))
    if isinstance(p_values, pd.Series):
        return pd.Series(holm(p_values.to_numpy(float)), index=p_values.index, name=p_values.name)
    p = np.asarray(p_values, dtype=float).ravel()
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p_values: must lie in [0, 1] (got {p[(p < 0) | (p > 1)].tolist()})")
    adjusted = np.full(len(p), np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])  # (m − j + 1) · p_(j) for j = 1..m
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()


def holm_table(rows: Mapping[str, Tested] | Sequence[tuple[str, Tested]]) -> pd.DataFrame:
    """One declared family of comparisons (name → Paired, Welch, McNemar or any Tested) as a table with columns
    contrast, n, difference, low, high, p, p_holm (``holm`` over the whole family) and significant_holm
    (p_holm < ALPHA); a field a result lacks is NaN."""
    items = list(rows.items()) if isinstance(rows, Mapping) else list(rows)
    nan = float("nan")
    table = pd.DataFrame([{"contrast": name, "n": getattr(r, "n", nan), "difference": getattr(r, "difference", nan),
                           "low": getattr(r, "low", nan), "high": getattr(r, "high", nan), "p": r.p}
                          for name, r in items],
                         columns=["contrast", "n", "difference", "low", "high", "p"])
    table["p_holm"] = holm(table["p"].to_numpy(float))
    table["significant_holm"] = table["p_holm"] < ALPHA
    return table
