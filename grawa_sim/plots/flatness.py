"""Figures of the flatness study (notebooks/05_flatness.ipynb): bars per method, landscapes, scatter."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from grawa_sim.plots.runs import COLORS, LABELS, save

METRIC_LABELS = {"lambda_max": "λ_max (top Hessian eigenvalue)", "ritz_sum": "sum of Ritz values",
                 "trace": "Hessian trace (Hutchinson)", "eps_sharpness": "ε-sharpness (%)",
                 "test_acc": "test accuracy", "gap": "train − test accuracy"}


def label(method: str) -> str:
    return LABELS.get(method, method.upper())


def methods_figure(summary: pd.DataFrame, published: pd.DataFrame, path: str | Path,
                   metrics: tuple[str, ...] = ("lambda_max", "ritz_sum", "eps_sharpness")) -> Path:
    """One panel per metric: bars per method for each net (error bars: 95 % t-interval over seeds),
    and a last panel with the authors' published lambda_max (DenseNet-121, CIFAR-100)."""
    nets = list(dict.fromkeys(summary.index.get_level_values("net")))
    methods = list(dict.fromkeys(summary.index.get_level_values("method")))
    fig, axes = plt.subplots(1, len(metrics) + 1, figsize=(4.2 * (len(metrics) + 1), 3.8))
    width = 0.8 / len(nets)
    for ax, metric in zip(axes, metrics):
        for k, net in enumerate(nets):
            part = summary.loc[net].reindex(methods)
            xs = np.arange(len(methods)) + (k - (len(nets) - 1) / 2) * width
            ax.bar(xs, part[metric], width, yerr=part[f"{metric}_ci95"].fillna(0), capsize=2,
                   color=[COLORS.get(m, "k") for m in methods], alpha=1.0 if k == 0 else 0.55,
                   hatch=None if k == 0 else "//", edgecolor="white")
        ax.set_xticks(range(len(methods)), [label(m) for m in methods], rotation=45, ha="right", fontsize=8)
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    pub = published.reindex([m for m in methods if m in published.index])
    axes[-1].bar(range(len(pub)), pub["lambda_max"], color=[COLORS.get(m, "k") for m in pub.index])
    axes[-1].set_xticks(range(len(pub)), [label(m) for m in pub.index], rotation=45, ha="right", fontsize=8)
    axes[-1].set_ylabel("published λ_max")
    axes[-1].set_title("authors' table: DenseNet-121, CIFAR-100", fontsize=10)
    axes[-1].grid(alpha=0.3, axis="y")
    nets_text = " | ".join(f"{'solid' if k == 0 else 'hatched'}: {net}" for k, net in enumerate(nets))
    fig.text(0.5, -0.1, f"MNIST-1D, M = 8, uniform average of the workers; {nets_text}; "
             "error bars: 95 % t-interval over seeds", ha="center", fontsize=8, color="0.3")
    out = save(fig, path)
    plt.close(fig)
    return out


def landscape_figure(line: pd.DataFrame, surfaces: dict[str, pd.DataFrame], path: str | Path,
                     names: tuple[str, str] = ("DP", "MGRAWA")) -> Path:
    """Left: the loss along the straight line from one solution (alpha = 0) to the other (alpha = 1);
    then one filled contour of the 2-D filter-normalised landscape around each solution."""
    fig, axes = plt.subplots(1, 1 + len(surfaces), figsize=(4.2 * (1 + len(surfaces)), 3.8))
    axes[0].plot(line["alpha"], line["loss"], color="k")
    axes[0].set_yscale("log")
    axes[0].set_xlabel(f"α: (1 − α)·{names[0]} + α·{names[1]}")
    axes[0].set_ylabel("training loss (320 probe samples)")
    axes[0].set_title("straight line between the solutions", fontsize=10)
    axes[0].grid(alpha=0.3)
    top = max(float(np.log10(s["loss"]).max()) for s in surfaces.values())
    low = min(float(np.log10(s["loss"]).min()) for s in surfaces.values())
    levels = np.linspace(low, top, 15)
    for ax, (name, surface) in zip(axes[1:], surfaces.items()):
        grid = surface.pivot(index="beta", columns="alpha", values="loss")
        cs = ax.contourf(grid.columns, grid.index, np.log10(grid.to_numpy()), levels=levels, cmap="viridis")
        ax.set_xlabel("α (filter-normalised direction 1)")
        ax.set_ylabel("β (direction 2)")
        ax.set_title(f"loss around {name}", fontsize=10)
    fig.subplots_adjust(wspace=0.35)
    fig.colorbar(cs, ax=axes[1:], label="log10 training loss")
    out = save(fig, path)
    plt.close(fig)
    return out


def scatter_figure(table: pd.DataFrame, path: str | Path, x: str = "lambda_max",
                   ys: tuple[str, ...] = ("test_acc", "gap"), correlations: dict | None = None) -> Path:
    """Flatness against generalisation, one point per run (colour: method; marker: net)."""
    part = table[table["model"] == "average"]
    fig, axes = plt.subplots(1, len(ys), figsize=(5 * len(ys), 3.8))
    markers = {net: m for net, m in zip(dict.fromkeys(part["net"]), ("o", "s", "^"))}
    for ax, y in zip(np.atleast_1d(axes), ys):
        for (method, net), group in part.groupby(["method", "net"], sort=False):
            ax.scatter(group[x], group[y], color=COLORS.get(method, "k"), marker=markers[net], s=22,
                       label=f"{label(method)}, {net}")
        ax.set_xscale("log")
        ax.set_xlabel(METRIC_LABELS.get(x, x))
        ax.set_ylabel(METRIC_LABELS.get(y, y))
        if correlations and y in correlations:
            rho, p, n = correlations[y]["all"]
            ax.set_title(f"Spearman ρ = {rho:.2f} (p = {p:.2g}, n = {n})", fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels_ = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels_, loc="lower center", ncol=7, fontsize=7, bbox_to_anchor=(0.5, -0.18), frameon=False)
    out = save(fig, path)
    plt.close(fig)
    return out
