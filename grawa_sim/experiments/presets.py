"""The named experiments behind `make reproduce` and the notebooks (logic here, plots in plots.py)."""

from __future__ import annotations

import dataclasses

import pandas as pd

from grawa_sim.algorithms import COMPARED
from grawa_sim.config import Config
from grawa_sim.core import stats
from grawa_sim.experiments.places import (  # noqa: F401 - the notebooks read them here too
    FIGURES_ENV,
    QUICK_ENV,
    RESULTS_ENV,
    SCRATCH_ENV,
    figures_dir,
    project_root,
    quick_mode,
    results_dir,
    scratch_dir,
)
from grawa_sim.results.sweep import grid

SEEDS = 5  # seeds per setting of the comparison and the time-budget study


def by_mode(value, quick: bool, quick_value, full_value):
    """``value`` when given, else the mode's default (``quick_value`` in quick mode, else ``full_value``)."""
    return (quick_value if quick else full_value) if value is None else value


def comparison_base(quick: bool, steps: int | None = None, workers: int = 8) -> Config:
    """The comparison's setting: MNIST-1D, 1-D CNN, each algorithm's reference tau/pull/prox
    (steps: 64 quick, 2000 full, unless given)."""
    return Config(dataset="mnist1d", model="cnn", workers=workers, lr=0.05, momentum=0.9,
                  weight_decay=1e-4, batch_size=32, steps=by_mode(steps, quick, 64, 2000),
                  eval_every=32 if quick else None)


def with_twins(configs: list[Config]) -> list[Config]:
    """``configs`` with, after each MGRAWA / LGRAWA run, its uniform-weight twin (the same run with
    ``weighting="uniform"``): the control every study of GRAWA includes."""
    out = []
    for c in configs:
        out.append(c)
        if c.algorithm in ("mgrawa", "lgrawa") and c.weighting in (None, "inverse_norm"):
            out.append(dataclasses.replace(c, weighting="uniform"))
    return out


def comparison_configs(quick: bool, seeds: int = SEEDS, algorithms: tuple[str, ...] = COMPARED,
                       twins: bool = True) -> list[Config]:
    """All algorithms on MNIST-1D with the 1-D CNN, M = 8 workers, each with its reference tau/pull/prox,
    and (``twins``) GRAWA's uniform-weight twins (`with_twins`).

    Full: 2000 local steps per worker, ``seeds`` seeds. Quick: 64 steps, one seed.
    """
    configs = grid(comparison_base(quick), algorithm=list(algorithms), seed=list(range(1 if quick else seeds)))
    return with_twins(configs) if twins else configs


QUICKSTART_ALGORITHMS = ("mgrawa", "lgrawa", "localsgd", "dp")


def method_name(algorithm: str, sam: bool, weighting: str | None = None) -> str:
    """'dp+sam' for DP with SAM, 'mgrawa+uniform' / 'lgrawa+uniform' for GRAWA's uniform-weight twin,
    else the algorithm."""
    if sam:
        return f"{algorithm}+sam"
    return f"{algorithm}+uniform" if weighting == "uniform" else algorithm


def quickstart_configs(quick: bool, seeds: int = 1, steps: int | None = None, workers: int = 8, tau: int = 32,
                       algorithms: tuple[str, ...] = QUICKSTART_ALGORITHMS) -> list[Config]:
    """``algorithms`` (default MGRAWA, LGRAWA, LocalSGD and DP; with MGRAWA, its uniform twin) on MNIST-1D (MLP,
    ``workers`` = 8, ``tau`` = 32 for all but DP, which takes none), ``seeds`` seeds (default one): about a
    minute in full mode.

    ``steps``: local steps per worker, default 3000 (quick: 64).
    """
    base = Config(dataset="mnist1d", model="mlp", workers=workers, tau=tau, lr=0.05, momentum=0.9,
                  batch_size=32, steps=by_mode(steps, quick, 64, 3000), eval_every=32 if quick else None)
    configs = []
    for algorithm in algorithms:
        one = dataclasses.replace(base, algorithm=algorithm, tau=None if algorithm == "dp" else tau)
        configs += grid(one, seed=list(range(seeds)))
        if algorithm == "mgrawa":  # GRAWA's uniform twin (LGRAWA's is the same rule, so one run)
            configs += grid(dataclasses.replace(one, weighting="uniform"), seed=list(range(seeds)))
    return configs


TIME_BUDGET_CLOCK = dict(step_time=0.01, bandwidth=1.25e8, latency=5e-4)  # 10 ms steps, 1 Gbit/s, 0.5 ms
# (the ablations' clock; the time-budget study varies the latency: grawa_sim/experiments/time_budget.py)


def partition_label(histories: pd.DataFrame) -> pd.Series:
    """'IID' or 'Dirichlet α = <alpha>' for every row."""
    names = {"iid": "IID", "iid_fixed": "IID (fixed shards)"}
    return histories.apply(lambda r: names.get(r["partition"]) or f"Dirichlet α = {r['alpha']:g}", axis=1)


def swept_fields(configs: list[Config]) -> list[str]:
    """The Config fields that differ between ``configs`` other than the seed (['algorithm'] when none do)."""
    fields = [f.name for f in dataclasses.fields(Config) if f.name != "seed"]
    varied = [f for f in fields if len({repr(getattr(c, f)) for c in configs}) > 1]
    return varied or ["algorithm"]


def finals(histories: pd.DataFrame) -> pd.DataFrame:
    """The last history row of every run (the result at the step or time budget)."""
    return histories.groupby("run", sort=False).tail(1)


def interval_table(frame: pd.DataFrame, by: str | list[str], value: str = "test_acc") -> pd.DataFrame:
    """Per group of ``by``: ``<value>_mean``, ``_std``, ``n``, ``_ci95`` (95 % t-interval half-width),
    ``_low``, ``_high`` and ``_worst`` (the lowest seed)."""
    table = stats.describe(frame, by, value)
    table["worst"] = frame.groupby(by, sort=False)[value].min().reindex(table.index).to_numpy()
    return table.rename(columns={c: c if c == "n" else f"{value}_{c}" for c in table.columns})


def summary(histories: pd.DataFrame, by: str | list[str] = "algorithm", reference: str | None = None) -> pd.DataFrame:
    """Final test accuracy per ``by`` (algorithm, model, swept fields, ...), best first.

    Columns: ``test_acc_mean``, ``_std``, ``n`` (finished seeds), ``total`` (runs, diverged ones included),
    ``test_acc_ci95`` (half-width of the 95 % t-interval), ``_low``, ``_high``, ``_worst`` (the lowest seed: a
    collapsed seed shows here), ``test_loss``, ``spread``, ``steps``. The means are over finished seeds.

    With a ``reference`` (a group of ``by`` declared before the study ran): every other group against it,
    paired by seed (``diff_vs_ref`` = group − reference, ``p_vs_ref`` the paired t p-value), Holm over those
    comparisons (``p_holm``, ``significant``: p_holm < 0.05). Without one: Welch's t-test against the group
    with the best mean (``p_vs_best``, ``significant``: p < 0.05), a description, not a declared test.
    """
    last = finals(histories)
    table = interval_table(last, by)
    extra = last.groupby(by, sort=False).agg(test_loss=("test_loss", "mean"), spread=("spread", "mean"),
                                             steps=("step", "max"), total=("test_acc", "size"))
    table = table.join(extra)
    key = "_group"
    keyed = last.assign(**{key: last[by].astype(str).agg(" | ".join, axis=1) if isinstance(by, list) else last[by]})
    labels = table.index.map(lambda k: " | ".join(map(str, k)) if isinstance(k, tuple) else k)
    if reference is None:
        versus = stats.versus_best(keyed, key, "test_acc")
        table["p_vs_best"] = versus["p"].reindex(labels).to_numpy()
        table["significant"] = versus["significant"].reindex(labels).to_numpy()
        return table.sort_values("test_acc_mean", ascending=False)
    base = keyed[keyed[key] == reference].set_index("seed")["test_acc"]
    if base.empty:
        raise ValueError(f"reference: no runs of {reference!r} (got {reference!r}; groups: {', '.join(labels)})")
    tests = {}
    for label, group in keyed.groupby(key, sort=False):
        if label != reference:
            mine = group.set_index("seed")["test_acc"]
            common = mine.index.intersection(base.index)
            tests[label] = stats.paired(mine.loc[common].to_numpy(), base.loc[common].to_numpy())
    adjusted = dict(zip(tests, stats.holm([t.p for t in tests.values()])))
    table["diff_vs_ref"] = [tests[k].difference if k in tests else 0.0 for k in labels]
    table["p_vs_ref"] = [tests[k].p if k in tests else float("nan") for k in labels]
    table["p_holm"] = [adjusted.get(k, float("nan")) for k in labels]
    table["significant"] = table["p_holm"] < stats.ALPHA
    return table.sort_values("test_acc_mean", ascending=False)


def format_table(table: pd.DataFrame, value: str = "test_acc", digits: int = 3) -> pd.DataFrame:
    """A printable copy: '<mean> ± <ci95> (n=<n>)' in one column ``value``, the worst seed, the rest."""
    out = pd.DataFrame(index=table.index)
    out[value] = [stats.format_interval(m, h, int(n), digits)
                  for m, h, n in zip(table[f"{value}_mean"], table[f"{value}_ci95"], table["n"])]
    out["worst seed"] = table[f"{value}_worst"].round(digits)
    own = {"n", *(f"{value}_{c}" for c in ("mean", "std", "ci95", "low", "high", "worst"))}
    for col in table.columns:
        if col not in own:
            out[col] = table[col]
    return out
