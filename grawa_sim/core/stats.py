"""Statistics over seeds: mean, standard deviation, n, the 95 % t-interval, Welch's t-test.

For n values x_1..x_n with mean m and sample standard deviation s, the 95 % interval of the
mean is m ± t_{0.975, n-1} · s / √n (Student's t). Welch's t-test compares two means without
assuming equal variances: t = (m_a − m_b) / √(s_a²/n_a + s_b²/n_b), with the
Welch–Satterthwaite degrees of freedom. A difference is called significant only when p < 0.05.
Binomial proportions get the Wilson score interval. A trend is the least-squares slope of y on x
with its 95 % t-interval and the two-sided p-value of slope = 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
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
