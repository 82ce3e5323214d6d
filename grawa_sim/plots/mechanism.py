"""Figures of the flat-basin mechanism: paths on the two-basins landscape, wide-basin shares, and
GRAWA's weights against each worker's sharpness."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from grawa_sim.data.two_basins import basins, landscape
from grawa_sim.experiments.mechanism import Outcome
from grawa_sim.plots.flatness import label
from grawa_sim.plots.runs import COLORS, LINESTYLES, save, shared_legend


def paths_figure(outcomes: dict[str, Outcome], path: str | Path) -> Path:
    """One panel per algorithm: F's contours, run 0's worker paths (thin) and its center's path (thick)."""
    shape = landscape(dim=2)
    where = basins(shape)
    xs, ys = np.linspace(-2.6, 2.8, 220), np.linspace(-1.8, 1.8, 160)
    grid = torch.tensor(np.stack(np.meshgrid(xs, ys), -1))
    values = shape.value(grid).numpy()
    names = list(outcomes)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.1 * rows), squeeze=False, sharex=True, sharey=True)
    for ax, name in zip(axes.flat, names):
        outcome = outcomes[name]
        ax.contour(xs, ys, values, levels=np.linspace(values.min(), values.min() + 1.6, 14), colors="0.75",
                   linewidths=0.6, linestyles="solid")
        trail = outcome.path.numpy()
        for i in range(trail.shape[1]):
            ax.plot(trail[:, i, 0], trail[:, i, 1], lw=0.7, color="0.45", alpha=0.8)
            ax.plot(trail[0, i, 0], trail[0, i, 1], "o", ms=3, color="0.45")
        center = outcome.center_path.numpy()
        ax.plot(center[:, 0], center[:, 1], lw=2.0, color=COLORS.get(name, "k"), ls=LINESTYLES.get(name, "-"))
        ax.plot(*outcome.evaluated[outcome.shown].numpy(), "*", ms=11, color=COLORS.get(name, "k"), mec="k")
        ax.plot(*where.sharp.numpy(), "x", color="tab:red", ms=7)
        ax.plot(*where.wide.numpy(), "x", color="tab:green", ms=7)
        share = float(outcome.evaluated_wide.double().mean())
        ax.set_title(f"{label(name)}: {share:.0%} of {len(outcome.evaluated_wide)} runs end wide", fontsize=9)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("x₁")
    for ax in axes[:, 0]:
        ax.set_ylabel("x₂")
    s = outcomes[names[0]].setup
    fig.text(0.5, -0.02, f"grey: one run's {s.workers} workers (dots: starts, on both sides of the ridge); "
             f"coloured: its center (GRAWA x_C, LSGD leader, EASGD x~, LocalSGD/DP the mean); "
             "star: the evaluated model; "
             f"x: sharp (red) and wide (green) minima of equal depth; τ = {s.tau}, λ = {s.pull}",
             ha="center", fontsize=8, color="0.3")
    out = save(fig, path)
    plt.close(fig)
    return out


def shares_figure(by_tau: pd.DataFrame, by_pull: pd.DataFrame, path: str | Path, what: str = "model") -> Path:
    """Share of runs whose ``what`` (model or center) ends in the wide basin against tau and against
    lambda, per algorithm; error bars: Wilson 95 % intervals."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, table, x, xlabel in ((axes[0], by_tau, "tau", "τ (local steps between rounds)"),
                                 (axes[1], by_pull, "pull", "λ (pull strength)")):
        for name, g in table.groupby("algorithm", sort=False):
            if g[x].nunique() < 2:
                continue
            g = g.sort_values(x)
            mid = g[f"{what}_wide"]
            ax.errorbar(g[x], mid, yerr=[mid - g[f"{what}_low"], g[f"{what}_high"] - mid], capsize=3,
                        color=COLORS.get(name, "k"), ls=LINESTYLES.get(name, "-"), marker="o", ms=4,
                        label=label(name))
        ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if x == "tau":
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(table[x].unique()), [str(v) for v in sorted(table[x].unique())])
    axes[0].set_ylabel(f"share of runs whose {what} ends wide")
    shared_legend(fig, axes, bbox_to_anchor=(0.5, 1.06))
    fig.text(0.5, -0.04, "error bars: Wilson 95 % interval over independent runs", ha="center", fontsize=8,
             color="0.3")
    out = save(fig, path)
    plt.close(fig)
    return out


def weights_figure(table: pd.DataFrame, rhos: pd.DataFrame, path: str | Path, seed: int = 0) -> Path:
    """Left: one seed's weights (workers x rounds); middle: weight against lambda_max over all rounds;
    right: Spearman's rho per round (every seed)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), gridspec_kw={"wspace": 0.4})
    one = table[table["seed"] == seed].pivot(index="worker", columns="round", values="weight")
    image = axes[0].imshow(one.to_numpy(), aspect="auto", cmap="viridis", interpolation="nearest",
                           extent=(one.columns.min() - 0.5, one.columns.max() + 0.5, one.index.max() + 0.5, -0.5))
    fig.colorbar(image, ax=axes[0], label="weight w_i")
    axes[0].set_xlabel("round")
    axes[0].set_ylabel("worker")
    axes[0].set_title(f"MGRAWA weights (seed {seed})", fontsize=10)
    axes[1].scatter(table["lambda_max"], table["weight"], s=4, alpha=0.35, color=COLORS["mgrawa"])
    axes[1].set_xscale("log")
    axes[1].xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    axes[1].xaxis.set_minor_formatter(plt.NullFormatter())
    axes[1].set_xlabel("worker's λ_max before the round")
    axes[1].set_ylabel("its weight w_i")
    axes[1].set_title("every worker and round, all seeds", fontsize=10)
    for s, g in rhos.groupby("seed"):
        axes[2].plot(g["round"], g["rho"], lw=0.8, alpha=0.8, label=f"seed {s}")
    axes[2].axhline(0, color="0.5", lw=0.8)
    axes[2].set_xlabel("round")
    axes[2].set_ylabel("Spearman ρ(weight, λ_max)")
    axes[2].set_title("per round over the M workers", fontsize=10)
    axes[2].legend(fontsize=7, ncol=2)
    for ax in axes[1:]:
        ax.grid(alpha=0.3)
    out = save(fig, path)
    plt.close(fig)
    return out


def control_figure(shares: pd.DataFrame, contrasts: pd.DataFrame, path: str | Path) -> Path:
    """One panel per dimension (rows) and lr · κ_s (columns): the share of runs whose model ends wide
    against τ for MGRAWA, its twin and LocalSGD (Wilson 95 % bars); a star marks a cell where MGRAWA − twin
    is significant after Holm."""
    dims, products = sorted(shares["dim"].unique()), sorted(shares["product"].unique())
    fig, axes = plt.subplots(len(dims), len(products), figsize=(3.6 * len(products), 3.0 * len(dims)),
                             squeeze=False, sharex=True, sharey=True)
    twin = contrasts[contrasts["contrast"] == "mgrawa − mgrawa+uniform"] if len(contrasts) else contrasts
    for row, dim in enumerate(dims):
        for col, product in enumerate(products):
            ax = axes[row, col]
            cell = shares[(shares["dim"] == dim) & (shares["product"] == product)]
            for method, g in cell.groupby("method", sort=False):
                g = g.sort_values("tau")
                ax.errorbar(g["tau"], g["wide"], yerr=[g["wide"] - g["low"], g["high"] - g["wide"]], capsize=2,
                            color=COLORS.get(method, "k"), ls=LINESTYLES.get(method, "-"), marker="o", ms=3,
                            label=label(method))
            hits = twin[(twin["dim"] == dim) & (twin["product"] == product) & twin["significant_holm"]] \
                if len(twin) else twin
            for tau in (hits["tau"] if len(hits) else []):
                ax.plot(tau, 1.02, "*", color="k", ms=8, clip_on=False)
            ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
            ax.set_xscale("log", base=2)
            taus = sorted(cell["tau"].unique())
            ax.set_xticks(taus, [str(t) for t in taus])
            ax.set_ylim(0, 1.05)
            ax.grid(alpha=0.3)
            ax.set_title(f"{dim}-D, lr·κ_sharp = {product:g} (lr {cell['lr'].iloc[0]:.3f})", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("τ")
    for ax in axes[:, 0]:
        ax.set_ylabel("share of runs ending wide")
    shared_legend(fig, axes, bbox_to_anchor=(0.5, 1.04))
    fig.text(0.5, -0.1 / len(dims), "the same starts for every method; MGRAWA and its twin also share the noise; "
             "bars: Wilson 95 % interval; ★: MGRAWA − twin significant (McNemar, Holm over the grid)", ha="center",
             fontsize=8, color="0.3")
    out = save(fig, path)
    plt.close(fig)
    return out


__all__ = ["control_figure", "paths_figure", "shares_figure", "weights_figure"]
