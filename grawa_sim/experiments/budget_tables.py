"""The tables of a study trained under a simulated-time budget and read at several budgets.

The histories carry a ``method`` column (`protocol.with_methods`) and a setting column ``by`` (a
latency and straggler mode, a worker count M, a period τ, ...). With a constant lr a run's state at
a shorter budget b is that of a run of budget b, so one run is read at several budgets: its last
evaluation at or before b (`at_budget`). Evaluations come every so many local steps, so at a short
budget two methods are read at states up to one evaluation period apart in simulated time.

- `accuracy`: test accuracy at each budget per setting and method over finished seeds, finished /
  total and the local steps reached;
- `contrasts`: a declared `protocol.Family` in every setting at every budget, paired by seed, Holm
  over all of them;
- `time_to_target`: the first simulated second (and the rounds and bytes spent by then) at which test
  accuracy reaches ``level`` × the best method's mean accuracy at the long budget in that setting (or
  in the whole study); a run that never does is counted (``reached`` of ``runs``), not timed, and one that
  reaches it and diverges later counts as having reached it;
- `doubling_trends`: the change of each declared contrast per doubling of a numeric setting (M, τ).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from grawa_sim.core import stats
from grawa_sim.experiments import protocol

LEVELS = (0.9, 0.97)  # time to target: these fractions of the best method's mean accuracy at the long budget


def at_budget(histories: pd.DataFrame, budget: float) -> pd.DataFrame:
    """One row per run: its last evaluation at or before ``budget`` simulated seconds (with a final round the
    long budget's last row may pass it by one round: it is taken as the budget's). A run that diverged later
    than ``budget`` was still training then: its row there counts as finished (its ``status``, a per-run
    column, is relabelled)."""
    last = histories.groupby("run", sort=False).tail(1)
    if budget >= float(histories["time_budget"].max()):
        return last.assign(budget=budget)
    within = histories[histories["sim_time"] <= budget].groupby("run", sort=False).tail(1)
    if "status" in within:
        went_on = histories.groupby("run", sort=False)["sim_time"].max().reindex(within["run"]).to_numpy() > budget
        within = within.assign(status=within["status"].where(~went_on, "finished"))
    return within.assign(budget=budget)


def accuracy(histories: pd.DataFrame, budgets: tuple[float, ...], by: str) -> pd.DataFrame:
    """Test accuracy at each budget per ``by`` and method: mean ± 95 % half-width over finished seeds,
    finished / total, and the local steps per worker reached (mean)."""
    tables = []
    for budget in budgets:
        rows = at_budget(histories, budget)
        table = protocol.outcomes(rows, by=[by, "method"])
        table["steps"] = rows.groupby([by, "method"], sort=False)["steps_mean"].mean().reindex(table.index)
        tables.append(table.assign(budget=budget))
    return pd.concat(tables).set_index("budget", append=True)


def contrasts(histories: pd.DataFrame, budgets: tuple[float, ...], family: protocol.Family, by: str) -> pd.DataFrame:
    """``family`` in every ``by`` setting at every budget, paired by seed, Holm over all of them."""
    tables = [protocol.compare_by(at_budget(histories, budget), family, by=by).assign(budget=budget)
              for budget in budgets]
    table = pd.concat(tables, ignore_index=True)
    table["p_holm"] = stats.holm(table["p"].to_numpy(float))
    table["significant_holm"] = table["p_holm"] < stats.ALPHA
    return table


def time_to_target(histories: pd.DataFrame, levels: tuple[float, ...], by: str,
                   one_target: bool = False) -> pd.DataFrame:
    """Per ``by`` setting, level and method: the target (level × the best method's mean final accuracy in
    that setting, or over all settings with ``one_target``), how many runs reached it, and the mean ± 95 %
    half-width of their first simulated second at or above it, with the rounds and bytes spent by then (means;
    over the runs that reached it: a run that never does is counted, not timed)."""
    finals = histories.groupby("run", sort=False).tail(1)
    means = finals.groupby([by, "method"])["test_acc"].mean()
    best = means.groupby(level=0).max()
    rows = []
    for (setting, method), group in histories.groupby([by, "method"], sort=False):
        for level in levels:
            target = level * float(means.max() if one_target else best[setting])
            hits = [run[run["test_acc"] >= target].head(1) for _, run in group.groupby("run", sort=False)]
            times = [float(hit["sim_time"].iloc[0]) if len(hit) else math.nan for hit in hits]
            reached = [hit for hit in hits if len(hit)]
            ci = stats.interval(times)
            rows.append({by: setting, "method": method, "level": level, "target": target,
                         "reached": len(reached), "runs": len(times), "time_mean": ci.mean, "time_ci95": ci.half_width,
                         "rounds_mean": _mean_at(reached, "round"), "bytes_mean": _mean_at(reached, "comm_bytes")})
    return pd.DataFrame(rows).set_index([by, "method", "level"])


def _mean_at(hits: list[pd.DataFrame], column: str) -> float:
    """The mean of ``column`` over the hit rows (NaN without hits or without the column)."""
    if not hits or column not in hits[0]:
        return math.nan
    return float(np.mean([hit[column].iloc[0] for hit in hits]))


def doubling_trends(histories: pd.DataFrame, budget: float, family: protocol.Family, by: str,
                    classes: int = 10) -> pd.DataFrame:
    """Per contrast a − b of ``family`` at ``budget``: for every seed, the least-squares slope of its paired
    difference on log2 of the numeric setting ``by`` (a diverged run scored at chance, 1 / ``classes``, when the
    metric is an accuracy, else dropped with its pair); the
    mean slope (the change of the contrast per doubling) ± 95 % half-width over the seeds, its paired-t p
    against 0, Holm over the contrasts, and the smallest slope the seeds detect with 80 % power."""
    rows = at_budget(histories, budget)
    tested = []
    for a, b in family.contrasts:
        chance = 1.0 / classes if classes and family.metric.endswith("acc") else None
        va, vb = (protocol.paired_values(rows, m, family.metric, chance, pair_on=("seed", by)) for m in (a, b))
        diff = (va - vb).dropna().rename("difference").reset_index()
        slopes = [stats.trend(np.log2(g[by].to_numpy(float)), g["difference"]).slope for _, g in diff.groupby("seed")]
        tested.append((f"{a} − {b}", stats.paired(slopes, np.zeros(len(slopes)))))
    detectable = [result.smallest_detectable for _, result in tested]
    return stats.holm_table(tested).assign(budget=budget, unit=f"per doubling of {by}",
                                           smallest_detectable=detectable)
