"""The experimental protocol's tables: declared families of paired contrasts, Holm, failures counted.

A study declares, before it runs, its `Family`: the metric, the reference method and the contrasts
(method a − method b). Methods that share a seed share the initial model, the shards, the batches
and the probes, so every contrast is paired by seed (`stats.paired`: mean difference, 95 %
t-interval, paired t and Wilcoxon p) and Holm's correction runs over the family. A diverged seed is
never dropped: `outcomes` counts finished / total with the divergence rate's Wilson interval and
labels its mean as the mean over finished seeds; `compare` scores a diverged seed at chance
(1 / classes for accuracy) so that the pairs stay whole, and says how many it scored so.

Method names: ``method_name`` (presets): the algorithm, ``dp+sam``, ``mgrawa+uniform`` (the twin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from grawa_sim.core import stats
from grawa_sim.experiments.presets import finals, method_name

GRAWA = ("mgrawa", "lgrawa")


@dataclass(frozen=True)
class Family:
    """A study's declared comparisons: ``contrasts`` (a, b) read as a − b on ``metric``, ``reference`` the
    method named as the baseline before the study runs."""

    name: str
    reference: str
    contrasts: tuple[tuple[str, str], ...]
    metric: str = "test_acc"
    higher_is_better: bool = True

    def describe(self) -> list[str]:
        """One line per contrast, as a notebook's knob cell shows the declared family."""
        return [f"{a} − {b} on {self.metric}" for a, b in self.contrasts]


def grawa_family(name: str, methods: list[str] | tuple[str, ...], reference: str = "localsgd",
                 metric: str = "test_acc") -> Family:
    """The contrasts every study of GRAWA declares, for each GRAWA in ``methods``: GRAWA − its uniform twin
    (does the weighting help?), GRAWA − DP and GRAWA − LocalSGD (where those methods run)."""
    contrasts = []
    for grawa in (m for m in methods if m in GRAWA):
        for other in (f"{grawa}+uniform", "dp", "localsgd"):
            if other in methods:
                contrasts.append((grawa, other))
    return Family(name, reference, tuple(contrasts), metric)


def with_methods(histories: pd.DataFrame) -> pd.DataFrame:
    """``histories`` with a ``method`` column (dp+sam and the +uniform twins named apart)."""
    sam = histories["sam"] if "sam" in histories else [False] * len(histories)
    weighting = histories["weighting"] if "weighting" in histories else [None] * len(histories)
    return histories.assign(method=[method_name(a, bool(s), w if isinstance(w, str) else None)
                                    for a, s, w in zip(histories["algorithm"], sam, weighting)])


def by_method(histories: pd.DataFrame) -> pd.DataFrame:
    """`with_methods`, and ``algorithm`` replaced by the method name, so that tables and figures that group by
    algorithm show the twins (and DP+SAM) apart."""
    named = with_methods(histories)
    return named.assign(algorithm=named["method"])


def _diverged(last: pd.DataFrame) -> pd.Series:
    if "status" in last:
        return last["status"].eq("diverged")
    return pd.Series(False, index=last.index)


def outcomes(histories: pd.DataFrame, by: str | list[str] = "method", metric: str = "test_acc") -> pd.DataFrame:
    """Per group: ``finished`` / ``total`` seeds, ``diverged``, the divergence rate with its 95 % Wilson
    interval, and the metric's mean ± 95 % half-width over the finished seeds only (``mean_finished``)."""
    last = finals(with_methods(histories))
    last = last.assign(_diverged=_diverged(last))
    rows = []
    for key, group in last.groupby(by, sort=False):
        done = group[~group["_diverged"]]
        rate = stats.proportion(int(group["_diverged"].sum()), len(group))
        ci = stats.interval(done[metric])
        rows.append({**dict(zip([by] if isinstance(by, str) else by, key if isinstance(key, tuple) else (key,))),
                     "finished": len(done), "total": len(group), "diverged": rate.k,
                     "divergence_rate": rate.k / rate.n if rate.n else math.nan,
                     "divergence_low": rate.low, "divergence_high": rate.high,
                     f"{metric}_mean_finished": ci.mean, f"{metric}_ci95_finished": ci.half_width})
    return pd.DataFrame(rows).set_index(by)


def paired_values(histories: pd.DataFrame, method: str, metric: str = "test_acc", chance: float | None = None,
                  pair_on: tuple[str, ...] = ("seed",)) -> pd.Series:
    """The final ``metric`` of ``method`` indexed by ``pair_on`` (default the seed); a diverged run scored at
    ``chance`` (or NaN without one, which `stats.paired` then drops with its partner and counts)."""
    last = finals(with_methods(histories))
    last = last[last["method"] == method]
    values = last[metric].where(~_diverged(last), np.nan if chance is None else chance)
    return pd.Series(values.to_numpy(float), index=pd.MultiIndex.from_frame(last[list(pair_on)]))


def compare(histories: pd.DataFrame, family: Family, classes: int | None = 10,
            pair_on: tuple[str, ...] = ("seed",)) -> pd.DataFrame:
    """The family's contrasts, paired by ``pair_on``, with raw and Holm-adjusted p (`stats.holm_table`) and per
    contrast the pairs, the diverged seeds scored at chance (accuracy: 1 / ``classes``; other metrics: dropped
    with their pair, counted in ``dropped``), and the smallest difference the design detects with 80 % power."""
    chance = 1.0 / classes if classes and family.metric.endswith("acc") else None
    last = finals(with_methods(histories))
    tested, extra = [], {}
    for a, b in family.contrasts:
        va, vb = (paired_values(histories, m, family.metric, chance, pair_on) for m in (a, b))
        common = va.index.intersection(vb.index)
        result = stats.paired(va.loc[common].to_numpy(), vb.loc[common].to_numpy())
        label = f"{a} − {b}"
        tested.append((label, result))
        at_chance = int(sum(_diverged(last[last["method"] == m]).sum() for m in (a, b))) if chance is not None else 0
        extra[label] = {"pairs": len(common), "dropped": result.dropped, "scored_at_chance": at_chance,
                        "smallest_detectable": result.smallest_detectable}
    table = stats.holm_table(tested)
    for column in ("pairs", "dropped", "scored_at_chance", "smallest_detectable"):
        table[column] = [extra[c][column] for c in table["contrast"]]
    return table.assign(family=family.name, reference=family.reference, metric=family.metric)


def compare_by(histories: pd.DataFrame, family: Family, by: str, classes: int | None = 10) -> pd.DataFrame:
    """`compare` within every group of the column ``by`` (a setting: shard skew, latency, M, ...), with
    Holm over the whole study: the family is every contrast in every setting (``p_holm`` recomputed over
    all rows; ``setting`` names the group)."""
    tables = [compare(group, family, classes).assign(setting=key)
              for key, group in histories.groupby(by, sort=False)]
    table = pd.concat(tables, ignore_index=True)
    table["p_holm"] = stats.holm(table["p"].to_numpy(float))
    table["significant_holm"] = table["p_holm"] < stats.ALPHA
    return table
