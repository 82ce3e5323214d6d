"""Figures of the studies run under a simulated-time budget against a numeric setting (M workers in
notebook 06, the period τ in notebook 07): accuracy at the budgets, GRAWA's declared contrasts with
their intervals, the time to a target, and one study-specific panel.

The tables come from grawa_sim.experiments.budget_tables (through scalability / communication).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from grawa_sim.plots.runs import COLORS, LABELS, LINESTYLES, save, shared_legend

CONTRAST_COLORS = {"uniform": "tab:purple", "dp": "tab:gray", "localsgd": "tab:green"}


def _log2_axis(ax, values) -> None:
    values = sorted(set(values))
    ax.set_xscale("log", base=2)
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.grid(alpha=0.3)


def accuracy_panel(ax, accuracy: pd.DataFrame, by: str) -> None:
    """Test accuracy against ``by`` per method: the long budget filled, the short one hollow and dotted."""
    budgets = sorted(set(accuracy.index.get_level_values("budget")))
    flat = accuracy.reset_index()
    for method, group in flat.groupby("method", sort=False):
        color = COLORS.get(method, "k")
        for budget, filled in ((budgets[-1], True), (budgets[0], False)):
            g = group[group["budget"] == budget].sort_values(by)
            ax.errorbar(g[by], g["test_acc_mean_finished"], yerr=g["test_acc_ci95_finished"].fillna(0), capsize=2,
                        marker="o", ms=4, color=color, mfc=color if filled else "white",
                        ls=LINESTYLES.get(method, "-") if filled else ":",
                        label=LABELS.get(method, method) if filled else None)
    ax.set_ylabel(f"test accuracy at {budgets[-1]:g} s (filled), {budgets[0]:g} s (hollow)")
    _log2_axis(ax, flat[by])


def _contrast_label(contrast: str) -> str:
    """'MGRAWA − twin', 'MGRAWA − DP' from 'mgrawa − mgrawa+uniform', 'mgrawa − dp'."""
    a, b = contrast.split(" − ", 1)
    return f"{LABELS.get(a, a)} − {'its twin' if b.endswith('+uniform') else LABELS.get(b, b)}"


def contrast_panel(ax, contrasts: pd.DataFrame, budget: float, grawa: str = "mgrawa", x: str = "setting") -> None:
    """``grawa`` − twin / − DP / − LocalSGD against the numeric column ``x`` at ``budget``: paired mean
    difference with its 95 % interval; a filled marker where the contrast is significant after Holm."""
    rows = contrasts[(contrasts["budget"] == budget) & contrasts["contrast"].str.startswith(f"{grawa} − ")]
    for contrast, g in rows.groupby("contrast", sort=False):
        other = contrast.split(" − ", 1)[1]
        color = CONTRAST_COLORS.get(other.split("+")[-1], "k")
        g = g.sort_values(x)
        ax.errorbar(g[x], g["difference"], yerr=[g["difference"] - g["low"], g["high"] - g["difference"]],
                    color=color, capsize=2, marker="o", ms=4, mfc="white", label=_contrast_label(contrast))
        hits = g[g["significant_holm"]]
        ax.plot(hits[x], hits["difference"], "o", color=color, ms=5, zorder=3)  # above errorbar's own line
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel(f"paired difference at {budget:g} s")
    ax.legend(fontsize=7, loc="best")
    _log2_axis(ax, rows[x])


def time_panel(ax, times: pd.DataFrame, by: str, level: float) -> None:
    """Simulated seconds to ``level`` × the best accuracy per method (over the runs that reached it)."""
    rows = times.xs(level, level="level").reset_index()
    for method, g in rows.groupby("method", sort=False):
        g = g.sort_values(by)
        ax.errorbar(g[by], g["time_mean"], yerr=g["time_ci95"].fillna(0), capsize=2, marker="o", ms=4,
                    color=COLORS.get(method, "k"), ls=LINESTYLES.get(method, "-"))
    ax.set_ylabel(f"simulated s to {level:.0%} of the best")
    _log2_axis(ax, rows[by])


def budget_figure(accuracy: pd.DataFrame, contrasts: pd.DataFrame, times: pd.DataFrame, by: str, xlabel: str,
                  path: str | Path, extra=None, contrast_x: str = "setting") -> Path:
    """Six panels against ``by``: accuracy at both budgets, MGRAWA's and LGRAWA's declared contrasts at the
    long budget; the time to each level of ``times``; ``extra(ax)`` draws the last (else it stays empty)."""
    budget = max(set(accuracy.index.get_level_values("budget")))
    levels = sorted(set(times.index.get_level_values("level")))[:2]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    accuracy_panel(axes[0, 0], accuracy, by)
    contrast_panel(axes[0, 1], contrasts, budget, "mgrawa", contrast_x)
    contrast_panel(axes[0, 2], contrasts, budget, "lgrawa", contrast_x)
    for ax, level in zip(axes[1], levels):
        time_panel(ax, times, by, level)
    if extra is not None:
        extra(axes[1, 2])
    else:
        axes[1, 2].axis("off")
    for ax in axes[1][:2]:
        ax.set_xlabel(xlabel)
    shared_legend(fig, axes[0, :1], loc="upper center", bbox_to_anchor=(0.5, 1.0))
    fig.text(0.5, -0.01, "bars: 95 % t-intervals over seeds (paired for the differences); filled difference "
             "markers: significant after Holm over the study", ha="center", fontsize=8, color="0.3")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    out = save(fig, path)
    plt.close(fig)
    return out


def entropy_panel(ax, entropy: pd.DataFrame) -> None:
    """H / log M of GRAWA's weights against M (1: equal weights; the twins sit at 1 by construction)."""
    flat = entropy.reset_index()
    for method, g in flat.groupby("algorithm", sort=False):
        g = g.sort_values("workers")
        ax.errorbar(g["workers"], g["ratio_mean"], yerr=g["ratio_ci95"].fillna(0), capsize=2, marker="o", ms=4,
                    color=COLORS.get(method, "k"), ls=LINESTYLES.get(method, "-"), label=LABELS.get(method, method))
    ax.set_ylabel("entropy of the weights / log M")
    ax.set_xlabel("M (workers)")
    _log2_axis(ax, flat["workers"])


def pareto_panel(ax, pareto: pd.DataFrame, cost: str = "rounds") -> None:
    """Test accuracy against ``cost`` (rounds or bytes) for every configuration of every method, the cells on
    the method's front joined by a line."""
    flat = pareto.reset_index()
    for method, g in flat.groupby("method", sort=False):
        color = COLORS.get(method, "k")
        ax.plot(g[cost], g["test_acc_mean_finished"], "o", ms=3, color=color, alpha=0.35)
        front = g[g["front"]].sort_values(cost)
        ax.plot(front[cost], front["test_acc_mean_finished"], marker="o", ms=4, color=color,
                ls=LINESTYLES.get(method, "-"), label=LABELS.get(method, method))
    ax.set_xscale("log")
    ax.set_xlabel(f"{cost.replace('_', ' ')} by the budget")
    ax.set_ylabel("test accuracy (front joined)")
    ax.grid(alpha=0.3)
