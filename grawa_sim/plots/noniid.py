"""The non-IID figure: accuracy per shard setting, GRAWA − its uniform twin, and the weights' relation to
the shards' label entropy."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from grawa_sim.plots.runs import COLORS, LABELS, LINESTYLES, save


def noniid_figure(accuracy: pd.DataFrame, contrasts: pd.DataFrame, correlations: pd.DataFrame,
                  path: str | Path, critical_rho: float | None = None) -> Path:
    """Three panels over the shard settings (in order of appearance): final test accuracy per method (mean
    ± 95 % interval over finished seeds), GRAWA − twin (paired mean difference ± 95 % interval) and the mean
    Spearman ρ between a worker's weight and its shard's label entropy (± 95 % interval over seeds)."""
    settings = list(dict.fromkeys(accuracy.index.get_level_values("shards")))
    x = np.arange(len(settings))
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2))
    fig.subplots_adjust(wspace=0.3)
    methods = list(dict.fromkeys(accuracy.index.get_level_values("method")))
    for i, method in enumerate(methods):
        rows = accuracy.xs(method, level="method").reindex(settings)
        shift = (i - (len(methods) - 1) / 2) * 0.06
        left.errorbar(x + shift, rows["test_acc_mean_finished"], yerr=rows["test_acc_ci95_finished"], marker="o",
                      ms=3, capsize=2, color=COLORS.get(method), ls=LINESTYLES.get(method, "-"),
                      label=LABELS.get(method, method))
    left.set_title("final test accuracy (finished seeds)")
    left.set_ylabel("test accuracy")
    twin = contrasts[contrasts["contrast"].str.endswith("+uniform")]
    for i, (contrast, rows) in enumerate(twin.groupby("contrast", sort=False)):
        method = contrast.split(" − ")[0]
        rows = rows.set_index("setting").reindex(settings)
        middle.errorbar(x + (i - 0.5) * 0.08, rows["difference"], yerr=rows["difference"] - rows["low"],
                        marker="o", capsize=3, color=COLORS.get(method), label=f"{LABELS.get(method)} − twin")
    middle.axhline(0, color="k", lw=0.8)
    middle.set_title("GRAWA − its uniform twin (paired by seed)")
    middle.set_ylabel("test accuracy difference")
    skewed = [s for s in settings if s.startswith("Dirichlet")]
    for i, (method, rows) in enumerate(correlations.groupby(level="method", sort=False)):
        rows = rows.xs(method, level="method").reindex(skewed)
        xs = np.array([settings.index(s) for s in skewed]) + (i - 0.5) * 0.08
        right.errorbar(xs, rows["rho_mean"], yerr=rows["rho_ci95"], marker="o", capsize=3, color=COLORS.get(method),
                       label=LABELS.get(method, method))
    right.axhline(0, color="k", lw=0.8)
    if critical_rho is not None:
        for sign in (1, -1):
            right.axhline(sign * critical_rho, color="0.5", lw=0.8, ls=":")
    right.set_title("ρ(worker weight, shard label entropy)")
    right.set_ylabel("Spearman ρ, mean over seeds")
    right.set_ylim(-1.05, 1.05)
    for ax in (left, middle, right):
        ax.set_xticks(x, [s.replace("Dirichlet ", "") for s in settings])
        ax.set_xlabel("shards")
        ax.grid(alpha=0.3)
    left.legend(fontsize=7, ncol=2)
    middle.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.text(0.5, -0.03, "bars: 95 % t-intervals over seeds; dotted (right): |ρ| one run needs for p < 0.05",
             ha="center", fontsize=8, color="0.3")
    out = save(fig, path)
    plt.close(fig)
    return out
