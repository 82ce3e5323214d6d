"""Figures of the convergence study (notebooks/04_convergence.ipynb)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from grawa_sim.plots.flatness import label
from grawa_sim.plots.runs import COLORS, LABELS, LINESTYLES, save, shared_legend


def _reference(ax, steps: np.ndarray, anchor: float, power: float, text: str, at: float | None = None) -> None:
    """A dashed black line c * t^power through (``at``, ``anchor``) over the range of ``steps`` (log axes);
    ``at`` defaults to the geometric middle of the range."""
    t = np.geomspace(steps.min(), steps.max(), 50)
    at = np.sqrt(steps.min() * steps.max()) if at is None else at
    ax.plot(t, anchor * (t / at) ** power, color="k", lw=1.0, ls=(0, (4, 3)), label=text)


def _over_seeds(runs: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per algorithm and step: the mean of ``value`` over seeds and its min and max (one seed: all three equal)."""
    return (runs.groupby(["algorithm", "step"], sort=False)[value].agg(["mean", "min", "max"])
            .reset_index().sort_values(["algorithm", "step"], kind="stable"))


def convex_figure(study: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Rows: M. Columns: F(x̄_t) − F* under each constant lr and under the decaying lr, then ‖x̄_t − x*‖
    under the decaying lr; every algorithm, log-log, with t^-1 and t^-1/2 reference lines. With several
    seeds (a ``seed`` column) each curve is the mean over seeds with a shaded band from the min to the max."""
    schedules = list(dict.fromkeys(study.sort_values(["decaying", "lr"])["schedule"]))
    workers = sorted(study["workers"].unique())
    seeds = study["seed"].nunique() if "seed" in study else 1
    cols = len(schedules) + 1
    fig, axes = plt.subplots(len(workers), cols, figsize=(3.6 * cols, 3.0 * len(workers)), squeeze=False,
                             sharex=True)
    study = study[study["step"] > 0]  # log axes
    for row, m in enumerate(workers):
        part = study[study["workers"] == m]
        panels = [(s, "subopt") for s in schedules] + [(schedules[-1], "dist")]
        for ax, (schedule, value) in zip(axes[row], panels):
            runs = part[part["schedule"] == schedule]
            curves = _over_seeds(runs, value)
            order = list(dict.fromkeys(runs["algorithm"]))
            for algorithm in order:
                g = curves[(curves["algorithm"] == algorithm) & (curves["mean"] > 0)]
                color = COLORS.get(algorithm, "k")
                ax.plot(g["step"], g["mean"], color=color, ls=LINESTYLES.get(algorithm, "-"), lw=1.2,
                        label=label(algorithm))
                if seeds > 1:
                    low = g["min"].where(g["min"] > 0)  # log axes: no band below zero
                    ax.fill_between(g["step"], low, g["max"], color=color, alpha=0.15, lw=0)
            if runs["decaying"].all() and len(runs):
                steps = runs["step"].to_numpy(dtype=float)
                tail = curves[curves["step"] >= np.sqrt(steps.min() * steps.max())]
                anchor = float(tail.groupby("algorithm")["mean"].first().median())
                power = -1.0 if value == "subopt" else -0.5
                _reference(ax, steps, anchor, power, "O(1/t) and O(1/√t)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
            name = "F(x̄_t) − F*" if value == "subopt" else "‖x̄_t − x*‖"
            ax.set_title(f"M = {m}: {name}, {schedule}", fontsize=8)
            if row == len(workers) - 1:
                ax.set_xlabel("local steps t")
        axes[row, 0].set_ylabel("F(x̄_t) − F*")
    if seeds > 1:  # a legend entry for the bands
        axes[0, 0].fill_between([], [], color="0.5", alpha=0.3, lw=0, label=f"min–max over {seeds} seeds")
    shared_legend(fig, axes)
    curves = ("one seed per curve" if seeds == 1 else
              f"each curve: mean over {seeds} seeds, shaded band: min to max over the seeds")
    fig.text(0.5, -0.03, f"{title}; x̄_t: each algorithm's evaluated model (uniform average; EASGD x~); "
             f"{curves}", ha="center", fontsize=8, color="0.3")
    out = save(fig, path)
    plt.close(fig)
    return out


def nonconvex_figure(table: pd.DataFrame, path: str | Path, title: str) -> Path:
    """The min and (where measured) the mean over the run of ‖∇F(x̄_t)‖² against the horizon T (lr ∝ 1/√T),
    every algorithm, mean over seeds with 95 % bars when there are several, and a T^-1/2 reference line."""
    from grawa_sim.experiments.convergence import horizon_summary

    summary = horizon_summary(table)
    values = [v for v in ("min_grad_sq", "mean_grad_sq") if f"{v}_mean" in summary]
    fig, axes = plt.subplots(1, len(values), figsize=(5.2 * len(values), 3.8), squeeze=False)
    for ax, value in zip(axes[0], values):
        for algorithm, g in summary.groupby("algorithm", sort=False):
            g = g.sort_values("T")
            err = g[f"{value}_ci95"].fillna(0) if (g["n"] > 1).any() else None
            ax.errorbar(g["T"], g[f"{value}_mean"], yerr=err, marker="o", ms=3, capsize=2,
                        color=COLORS.get(algorithm, "k"), ls=LINESTYLES.get(algorithm, "-"), label=label(algorithm))
        horizons = summary["T"].to_numpy(dtype=float)
        first = float(summary.loc[summary["T"] == horizons.min(), f"{value}_mean"].max())
        _reference(ax, horizons, first, -0.5, "O(1/√T) from the smallest T", at=horizons.min())
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("horizon T (local steps; lr = c/√T)")
        ax.set_ylabel(f"{'min' if value.startswith('min') else 'mean'} over t ≤ T of ‖∇F(x̄_t)‖²")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=9)
    out = save(fig, path)
    plt.close(fig)
    return out


__all__ = ["convex_figure", "nonconvex_figure"]


def bias_figure(summary: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Where each method ends on a convex problem with skewed shards: F(x̄_T) − F* and the distances of the
    evaluated model x̄_T (filled) and the algorithm's center x_C (hollow) to x*, mean ± 95 % interval over seeds."""
    methods = list(summary.index)
    x = np.arange(len(methods))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, method in enumerate(methods):
        row, color = summary.loc[method], COLORS.get(method, "k")
        left.errorbar(i, row["subopt_mean"], yerr=row["subopt_ci95"], marker="o", capsize=3, color=color)
        right.errorbar(i - 0.08, row["dist_mean"], yerr=row["dist_ci95"], marker="o", capsize=3, color=color)
        right.errorbar(i + 0.08, row["dist_center_mean"], yerr=row["dist_center_ci95"], marker="o", capsize=3,
                       color=color, mfc="white")
    left.set_title("F(x̄_T) − F*")
    right.set_title("‖x̄_T − x*‖ (filled), ‖x_C − x*‖ (hollow)")
    for ax in (left, right):
        ax.set_xticks(x, [LABELS.get(m, m) for m in methods], rotation=15)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.text(0.5, -0.06, "bars: 95 % t-intervals over seeds", ha="center", fontsize=8, color="0.3")
    out = save(fig, path)
    plt.close(fig)
    return out
